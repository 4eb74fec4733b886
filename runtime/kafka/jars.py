"""The pinned Apache Kafka release, as jars fetched from Maven Central, and the tools it needs.

The broker runs from a class path of jars rather than the release tarball because
Maven is the one route to the outside this project may rely on (CI machines reach
package registries only); Maven also verifies each artefact's checksum.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from runtime.kafka.filelock import exclusive
from runtime.settings import cache_dir

KAFKA_VERSION = "4.4.0"
SCALA_VERSION = "2.13"
# The log4j2 release Kafka 4.4.0 itself depends on; the binding must match its API.
LOG4J_VERSION = "2.25.5"
MIN_JAVA = 17
# Pinned so the fetch does not depend on whichever plugin version Maven would pick.
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"

# kafka_2.13 brings the server, raft, storage and coordinators; Kafka's published pom
# resolves slf4j 1.7, so the matching log4j2 binding is log4j-slf4j-impl (not -slf4j2-).
_POM = f"""<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>fiscobridge.local</groupId>
  <artifactId>kafka-runtime</artifactId>
  <version>{KAFKA_VERSION}</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_{SCALA_VERSION}</artifactId>
      <version>{KAFKA_VERSION}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId>
      <version>{LOG4J_VERSION}</version>
    </dependency>
  </dependencies>
</project>
"""


class MissingTool(RuntimeError):
    """A program the local broker needs (Java, Maven) is absent or too old."""


def java_executable() -> str:
    """The `java` to run the broker with (JAVA_HOME first, then PATH), checked to be 17+."""
    java_home = os.environ.get("JAVA_HOME")
    candidate = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
    if not candidate or not Path(candidate).exists():
        raise MissingTool(
            f"Java {MIN_JAVA}+ is needed to run the local Kafka broker and was not found "
            "(set JAVA_HOME or put `java` on PATH; Debian: apt-get install openjdk-17-jre-headless)"
        )
    result = subprocess.run([candidate, "-version"], capture_output=True, text=True, check=False)
    major = java_major_version(result.stderr + result.stdout)
    if major is None or major < MIN_JAVA:
        raise MissingTool(
            f"Java {MIN_JAVA}+ is needed to run Kafka {KAFKA_VERSION}; {candidate} reports "
            f"{(result.stderr or result.stdout).strip().splitlines()[:1]}"
        )
    return candidate


def java_major_version(version_output: str) -> int | None:
    """Major version from `java -version` output: '1.8.0_392' is 8, '17.0.15' is 17."""
    match = re.search(r'version "(\d+)(?:\.(\d+))?', version_output)
    if not match:
        return None
    first, second = int(match.group(1)), match.group(2)
    return int(second) if first == 1 and second is not None else first


def maven_executable() -> str:
    mvn = shutil.which("mvn")
    if not mvn:
        raise MissingTool(
            f"Maven is needed once to fetch the Kafka {KAFKA_VERSION} jars from Maven Central and "
            "was not found on PATH (Debian: apt-get install maven); after that the cache is used"
        )
    return mvn


def jars_dir(cache: Path | None = None) -> Path:
    """Where the jars of the pinned release live (they may not be fetched yet)."""
    return (cache or cache_dir()) / f"kafka-{KAFKA_VERSION}" / "libs"


def jars_present(cache: Path | None = None) -> bool:
    return (jars_dir(cache) / f"kafka_{SCALA_VERSION}-{KAFKA_VERSION}.jar").is_file()


def fetch_jars(cache: Path | None = None) -> Path:
    """Make the pinned release's jars available under the cache; network only on first call.

    Safe to call from several processes at once: one fetches, the others wait and reuse.
    """
    target = jars_dir(cache)
    if jars_present(cache):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with exclusive(target.parent / ".fetch.lock"):
        if jars_present(cache):
            return target
        mvn = maven_executable()
        java_executable()  # Maven itself runs on Java; say so plainly rather than via mvn
        with tempfile.TemporaryDirectory(dir=target.parent, prefix=".fetch-") as work:
            pom = Path(work) / "pom.xml"
            pom.write_text(_POM, encoding="utf-8")
            staging = Path(work) / "libs"
            command = [
                mvn,
                "-B",
                "-q",
                "--strict-checksums",
                "-f",
                str(pom),
                f"{DEPENDENCY_PLUGIN}:copy-dependencies",
                "-DincludeScope=runtime",
                f"-DoutputDirectory={staging}",
            ]
            result = subprocess.run(command, capture_output=True, text=True, check=False)
            if result.returncode != 0:
                raise MissingTool(
                    f"fetching Kafka {KAFKA_VERSION} from Maven Central failed "
                    f"(exit {result.returncode}):\n{_tail(result.stdout + result.stderr)}"
                )
            if target.exists():
                shutil.rmtree(target)  # a partial copy left by an interrupted older fetch
            # The rename is atomic, so nobody ever sees half a class path.
            staging.rename(target)
    if not jars_present(cache):
        raise MissingTool(f"Maven finished but {target} lacks the Kafka server jar")
    return target


def _tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])

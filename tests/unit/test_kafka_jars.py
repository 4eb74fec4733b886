"""The tool checks behind `fiscobridge kafka fetch|up`: a missing or old Java, a missing
Maven, each said plainly, with PATH and JAVA_HOME pointing at directories made here."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from runtime.kafka import jars
from runtime.kafka.jars import MissingTool, fetch_jars, java_executable, maven_executable

NOT_FOUND = "Java 17+ is needed to run the local Kafka broker and was not found"
TOO_OLD = "Java 17+ is needed to run Kafka 4.4.0; "
NO_MAVEN = "Maven is needed once to fetch the Kafka 4.4.0 jars from Maven Central"


def _program(directory: Path, name: str, body: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return path


def _fake_java(directory: Path, version_line: str) -> Path:
    # `java -version` writes to stderr, as the real one does.
    return _program(directory, "java", f"echo '{version_line}' >&2")


@pytest.fixture
def empty_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """PATH is one empty directory and JAVA_HOME unset: no java, no mvn."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    return bin_dir


def test_no_java_on_path_is_named(empty_path: Path) -> None:
    with pytest.raises(MissingTool, match=re.escape(NOT_FOUND)) as caught:
        java_executable()
    assert "JAVA_HOME" in str(caught.value) and "openjdk-17-jre-headless" in str(caught.value)


def test_java_home_without_java_is_named(
    empty_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "jdk" / "bin").mkdir(parents=True)
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "jdk"))
    with pytest.raises(MissingTool, match=re.escape(NOT_FOUND)):
        java_executable()


def test_java_8_from_java_home_is_too_old(
    empty_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    java = _fake_java(tmp_path / "jdk8" / "bin", 'openjdk version "1.8.0_392"')
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "jdk8"))
    with pytest.raises(MissingTool, match=re.escape(TOO_OLD)) as caught:
        java_executable()
    assert str(java) in str(caught.value) and "1.8.0_392" in str(caught.value)


def test_java_11_on_path_is_too_old(empty_path: Path) -> None:
    java = _fake_java(empty_path, 'openjdk version "11.0.22" 2024-01-16')
    with pytest.raises(MissingTool, match=re.escape(TOO_OLD)) as caught:
        java_executable()
    assert str(java) in str(caught.value) and "11.0.22" in str(caught.value)


def test_java_without_a_version_is_refused(empty_path: Path) -> None:
    _fake_java(empty_path, "Error: could not open jvm.cfg")
    with pytest.raises(MissingTool, match=re.escape(TOO_OLD)) as caught:
        java_executable()
    assert "could not open jvm.cfg" in str(caught.value)


def test_java_17_on_path_is_accepted(empty_path: Path) -> None:
    java = _fake_java(empty_path, 'openjdk version "17.0.15" 2025-04-15')
    assert java_executable() == str(java)


def test_no_maven_is_named(empty_path: Path) -> None:
    with pytest.raises(MissingTool, match=re.escape(NO_MAVEN)) as caught:
        maven_executable()
    assert "apt-get install maven" in str(caught.value)


def test_fetch_without_maven_says_so_and_fetches_nothing(
    empty_path: Path, tmp_path: Path
) -> None:
    _fake_java(empty_path, 'openjdk version "17.0.15" 2025-04-15')
    cache = tmp_path / "cache"
    with pytest.raises(MissingTool, match=re.escape(NO_MAVEN)):
        fetch_jars(cache)
    assert not jars.jars_present(cache)


def test_fetch_with_an_old_java_says_so_before_running_maven(
    empty_path: Path, tmp_path: Path
) -> None:
    ran = tmp_path / "mvn-ran"
    _program(empty_path, "mvn", f"echo ran > '{ran}'; exit 1")
    _fake_java(empty_path, 'java version "1.8.0_392"')
    with pytest.raises(MissingTool, match=re.escape(TOO_OLD)):
        fetch_jars(tmp_path / "cache")
    assert not ran.exists()

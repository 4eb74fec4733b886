"""Extract the portal's common-password list from a Django wheel (PyPI).

    .venv/bin/pip download --no-deps 'django==5.2.19' -d /tmp/dj
    .venv/bin/python scripts/common_passwords.py /tmp/dj/django-5.2.19-py3-none-any.whl

The list is Django's `django/contrib/auth/common-passwords.txt.gz`: the 20,000 most
common passwords of Royce Williams' list (compiled from breach corpora; unhexed,
lowercased, deduplicated: 19,640 lines), copied byte for byte to
`services/portal/web/data/common-passwords.txt.gz`. The digest below pins the copy the
portal ships; a different one is refused, so an update is a deliberate change here.
"""

from __future__ import annotations

import gzip
import hashlib
import sys
import zipfile
from pathlib import Path

MEMBER = "django/contrib/auth/common-passwords.txt.gz"
SHA256 = "3c1baed62596de36860824eb3f436d5932d37ca8b06e59df78f5a44ec175afe4"
TARGET = Path(__file__).resolve().parent.parent / "services/portal/web/data/common-passwords.txt.gz"


def main(wheel: str) -> None:
    data = zipfile.ZipFile(wheel).read(MEMBER)
    digest = hashlib.sha256(data).hexdigest()
    if digest != SHA256:
        sys.exit(f"{MEMBER} in {wheel} has SHA-256 {digest}, not the pinned {SHA256}")
    lines = gzip.decompress(data).decode().splitlines()
    TARGET.write_bytes(data)
    print(f"wrote {TARGET} ({len(lines)} passwords)")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])

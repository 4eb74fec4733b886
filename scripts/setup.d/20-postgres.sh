# PostgreSQL server binaries for the store tests (tests/fixtures/store.py starts a
# throwaway cluster from /usr/lib/postgresql/<ver>/bin on a free port). Sourced by the
# setup script as root; idempotent. The Debian package's own cluster is left stopped.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql
fi
# initdb refuses to run as root; the fixture runs it as this user.
id -u postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres

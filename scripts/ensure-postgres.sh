#!/usr/bin/env bash
# Installs Debian's PostgreSQL server when it is missing (CI and a fresh machine): the
# production topology (scripts/prod.sh, make prod-up) and its end-to-end test (prod/) run
# their own PostgreSQL instance with it, as the postgres system user the package makes.
# The package's own cluster (port 5432, if the installation starts it) is not used.
# Debian's packages only; nothing else is fetched.
set -euo pipefail

if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && id postgres >/dev/null 2>&1; then
  exit 0
fi
if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1 && [ "$(id -u)" != 0 ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "ensure-postgres: no PostgreSQL server (initdb, pg_ctl): install it (Debian: apt-get install -y postgresql)" >&2
  exit 1
fi
echo "ensure-postgres: installing postgresql"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null

#!/usr/bin/env bash
# Makes sure the PostgreSQL server the tests use is up at $SHOPGRAPH_TEST_POSTGRES_URL
# (default postgres://postgres@127.0.0.1:5432/test): starts the local cluster if it is
# down, and installs and configures one with apt-get on a machine that has none.
set -euo pipefail

url="${SHOPGRAPH_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}"
ready() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
can_connect() { psql "$url" -Atqc 'SELECT 1' >/dev/null 2>&1; }

if ! command -v pg_ctlcluster >/dev/null 2>&1; then
    echo "ensure-postgres: installing PostgreSQL with apt-get" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi

if ! ready; then
    version="$(ls /etc/postgresql | sort -V | tail -n 1)"
    echo "ensure-postgres: starting PostgreSQL $version" >&2
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    for _ in $(seq 60); do ready && break; sleep 1; done
    ready || { echo "ensure-postgres: PostgreSQL did not come up on 127.0.0.1:5432" >&2; exit 1; }
fi

if ! can_connect; then
    # A fresh Debian cluster wants passwords on TCP. Tests connect as postgres over
    # loopback without one: trust loopback, as the machines of this project do.
    version="$(ls /etc/postgresql | sort -V | tail -n 1)"
    hba="/etc/postgresql/$version/main/pg_hba.conf"
    if ! grep -q '^host all all 127.0.0.1/32 trust' "$hba"; then
        echo "ensure-postgres: trusting loopback connections in $hba" >&2
        sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
        pg_ctlcluster --skip-systemctl-redirect "$version" main reload
    fi
    su postgres -c "psql -Atqc \"SELECT 1 FROM pg_database WHERE datname = 'test'\"" | grep -q 1 \
        || su postgres -c "createdb test"
    can_connect || { echo "ensure-postgres: cannot connect to $url" >&2; exit 1; }
fi

#!/usr/bin/env bash
# Makes sure the servers the tests use are up on loopback, installing and configuring them
# when they are missing (as root, with apt-get):
#   PostgreSQL on 127.0.0.1:5432 with trust authentication for local TCP connections
#              (tests create and drop their own databases as the `postgres` role);
#   Redis      on 127.0.0.1:6379, no persistence.
# Called by scripts/test.sh and .ci/run; safe to run again (does nothing when both answer).
# Set TOLLGATE_TEST_POSTGRES_URL to use another PostgreSQL server instead: then none is
# installed or started here.
set -euo pipefail

log() { echo "== services: $*"; }
fail() { echo "services: $*" >&2; exit 1; }

is_root() { [ "$(id -u)" = 0 ]; }

apt_updated=0
apt_install() {
  is_root && command -v apt-get >/dev/null \
    || fail "missing $*; install as root: apt-get update && apt-get install -y $*"
  if [ "$apt_updated" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
    apt_updated=1
  fi
  log "installing $* (apt-get)"
  # Debian's maintainer scripts may try to start the services themselves; whether or not
  # that works here, they are started below the way the tests need them.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# --- PostgreSQL -------------------------------------------------------------------------
pg_trusts_us() {
  command -v psql >/dev/null \
    && PGCONNECT_TIMEOUT=3 psql -X -w -q -h 127.0.0.1 -p 5432 -U postgres -d postgres \
      -c 'select 1' >/dev/null 2>&1
}

# The newest PostgreSQL with a server binary, or nothing. NB: never fails (under
# `set -e -o pipefail` a failing `ls` in a command substitution would end the script
# silently on exactly the machine that needs the install).
pg_version() {
  local v
  for v in $(ls /usr/lib/postgresql 2>/dev/null | sort -rV || true); do
    if [ -x "/usr/lib/postgresql/$v/bin/postgres" ]; then
      echo "$v"
      return 0
    fi
  done
}

start_postgres() {
  local v
  v="$(pg_version)"
  if [ -z "$v" ]; then
    apt_install postgresql
    v="$(pg_version)"
    [ -n "$v" ] || fail "apt-get installed postgresql but no server binary is in /usr/lib/postgresql/*/bin"
  fi
  is_root || fail "PostgreSQL $v is installed but not serving 127.0.0.1:5432 with trust auth; as root run: bash scripts/services.sh"
  if [ ! -f "/etc/postgresql/$v/main/postgresql.conf" ]; then
    log "creating PostgreSQL $v cluster 'main'"
    pg_createcluster "$v" main >/dev/null
  fi
  local conf="/etc/postgresql/$v/main"
  # Trust local TCP connections (Debian's default asks for a password on TCP). The first
  # matching line wins, so ours go first; written once.
  if ! grep -q '^# tollgate-tests' "$conf/pg_hba.conf"; then
    log "PostgreSQL: trust authentication on 127.0.0.1 and ::1"
    {
      echo "# tollgate-tests: local TCP connections need no password (test server)"
      echo "host    all    all    127.0.0.1/32    trust"
      echo "host    all    all    ::1/128         trust"
      cat "$conf/pg_hba.conf"
    } >"$conf/pg_hba.conf.new"
    mv "$conf/pg_hba.conf.new" "$conf/pg_hba.conf"
    chown postgres:postgres "$conf/pg_hba.conf"
  fi
  mkdir -p "$conf/conf.d"
  # A test server: loopback only, room for the suites' pools, no fsync (only a crash of the
  # whole machine loses data; the tests kill Tollgate, never PostgreSQL).
  cat >"$conf/conf.d/tollgate-tests.conf" <<'EOF'
listen_addresses = '127.0.0.1,::1'
port = 5432
max_connections = 400
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
  chown postgres:postgres "$conf/conf.d/tollgate-tests.conf"
  if pg_ctlcluster "$v" main status >/dev/null 2>&1; then
    log "restarting PostgreSQL $v (configuration changed)"
    pg_ctlcluster --skip-systemctl-redirect "$v" main restart
  else
    log "starting PostgreSQL $v"
    pg_ctlcluster --skip-systemctl-redirect "$v" main start
  fi
  for _ in $(seq 100); do pg_trusts_us && return 0; sleep 0.2; done
  fail "PostgreSQL did not come up on 127.0.0.1:5432 (see /var/log/postgresql/postgresql-$v-main.log)"
}

# --- Redis ------------------------------------------------------------------------------
redis_answers() {
  command -v redis-cli >/dev/null && [ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = PONG ]
}

start_redis() {
  command -v redis-server >/dev/null || apt_install redis-server
  # The package's own service may have started meanwhile.
  redis_answers && return 0
  port_open 6379 && fail "something that is not Redis listens on 127.0.0.1:6379"
  log "starting Redis"
  local dir="${TMPDIR:-/tmp}/tollgate-redis"
  mkdir -p "$dir"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir "$dir" --logfile "$dir/redis.log" --maxclients 4000
  for _ in $(seq 50); do redis_answers && return 0; sleep 0.1; done
  fail "Redis did not come up on 127.0.0.1:6379 (see $dir/redis.log)"
}

if [ -z "${TOLLGATE_TEST_POSTGRES_URL:-}" ]; then
  pg_trusts_us || start_postgres
fi
redis_answers || start_redis
log "PostgreSQL and Redis are up"

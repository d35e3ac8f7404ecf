#!/usr/bin/env bash
# Make sure the real services that the tests use are reachable on 127.0.0.1:
# PostgreSQL (with the hll extension package), MariaDB and Redis; and Debian's Chromium for the
# browser tests.
#
# Found running: nothing is touched. Installed but stopped: started with the same commands the
# machine image uses. Missing and we are root: installed from Debian's packages, then started.
# A service that still cannot be reached is reported; under CI=true that fails the run, otherwise
# the tests that need it are skipped (and say so).
set -u

log() { printf 'ensure-services: %s\n' "$*"; }
missing=()

port_open() { # host port
  (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null && exec 3>&- 3<&-
}

wait_port() { # port seconds
  local i
  for ((i = 0; i < $2 * 10; i++)); do
    port_open 127.0.0.1 "$1" && return 0
    sleep 0.1
  done
  return 1
}

apt_updated=0
apt_install() {
  if [ "$(id -u)" != 0 ]; then
    log "cannot install $* (not root)"
    return 1
  fi
  if [ $apt_updated = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null 2>&1 || true
    apt_updated=1
  fi
  log "installing $* from Debian's packages"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null 2>&1
}

pg_version() { ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1; }

ensure_postgres() {
  if ! command -v pg_ctlcluster >/dev/null 2>&1 || [ -z "$(pg_version)" ]; then
    apt_install postgresql postgresql-client || return 1
  fi
  local v
  v=$(pg_version)
  # The hll extension makes estimate_distinct_count take its fast path; tests cover both paths.
  if [ ! -f "/usr/share/postgresql/$v/extension/hll.control" ]; then
    apt_install "postgresql-$v-hll" || log "postgresql-$v-hll not installed: the hll-path tests will skip"
  fi
  if ! port_open 127.0.0.1 5432; then
    log "starting PostgreSQL $v"
    local hba="/etc/postgresql/$v/main/pg_hba.conf"
    # A cluster installed here for tests trusts loopback connections, like the project's machines.
    if [ -f "$hba" ] && ! grep -q '^host all all 127.0.0.1/32 trust' "$hba"; then
      sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
    fi
    pg_ctlcluster --skip-systemctl-redirect "$v" main start >/dev/null 2>&1 || true
    wait_port 5432 30 || return 1
  fi
  # The tests connect as postgres to database test and create their own databases from there.
  if command -v psql >/dev/null 2>&1; then
    psql -h 127.0.0.1 -U postgres -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname='test'" 2>/dev/null \
      | grep -q 1 || psql -h 127.0.0.1 -U postgres -d postgres -c "CREATE DATABASE test" >/dev/null 2>&1 || true
  fi
}

ensure_mariadb() {
  if ! command -v mariadbd >/dev/null 2>&1 && [ ! -x /usr/sbin/mariadbd ]; then
    apt_install mariadb-server mariadb-client || return 1
  fi
  if ! port_open 127.0.0.1 3306; then
    log "starting MariaDB"
    mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld 2>/dev/null || true
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd >/dev/null 2>&1 || true
    wait_port 3306 30 || return 1
  fi
}

ensure_redis() {
  if ! command -v redis-server >/dev/null 2>&1; then
    apt_install redis-server redis-tools || return 1
  fi
  if ! port_open 127.0.0.1 6379; then
    log "starting Redis"
    mkdir -p /var/lib/redis /var/log/redis
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
      --dir /var/lib/redis --logfile /var/log/redis/ci.log >/dev/null 2>&1 || true
    wait_port 6379 15 || return 1
  fi
}

# The browser tests drive Debian's Chromium with Playwright (which never downloads a browser).
ensure_chromium() {
  [ -x /usr/bin/chromium ] && return 0
  apt_install chromium || return 1
  [ -x /usr/bin/chromium ]
}

# Prometheus and node_exporter for the topology tests. Installed only: the tests start their own
# on free loopback ports with a generated configuration, so the Debian services are not started
# here (and if the package's post-install started them under systemd, they are stopped again).
ensure_prometheus() {
  local want=()
  [ -x /usr/bin/prometheus ] || want+=(prometheus)
  [ -x /usr/bin/prometheus-node-exporter ] || want+=(prometheus-node-exporter)
  [ ${#want[@]} -eq 0 ] && return 0
  apt_install "${want[@]}" || return 1
  if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    local unit
    for unit in "${want[@]}"; do
      systemctl disable --now "$unit" >/dev/null 2>&1 || true
    done
  fi
  [ -x /usr/bin/prometheus ] && [ -x /usr/bin/prometheus-node-exporter ]
}

# `make js` bundles the browser tracking module with esbuild from npm.
ensure_node() {
  command -v npm >/dev/null 2>&1 && return 0
  apt_install nodejs npm || return 1
}

ensure_postgres || missing+=("PostgreSQL (127.0.0.1:5432)")
ensure_mariadb || missing+=("MariaDB (127.0.0.1:3306)")
ensure_redis || missing+=("Redis (127.0.0.1:6379)")
ensure_chromium || missing+=("Chromium (/usr/bin/chromium)")
ensure_node || missing+=("Node.js and npm")
ensure_prometheus || missing+=("Prometheus and node_exporter (/usr/bin/prometheus, /usr/bin/prometheus-node-exporter)")

if [ ${#missing[@]} -gt 0 ]; then
  for m in "${missing[@]}"; do log "NOT reachable: $m"; done
  if [ "${CI:-}" = "true" ]; then
    log "CI=true: a missing service fails the run"
    exit 1
  fi
  log "tests that need these services will be skipped"
  exit 0
fi
log "PostgreSQL, MariaDB and Redis are reachable; Chromium, Node.js, Prometheus and node_exporter are installed"

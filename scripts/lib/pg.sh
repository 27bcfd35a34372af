# Shared by scripts/test and scripts/bench: finds (or installs with apt-get) PostgreSQL and starts
# a throwaway cluster on a free loopback port, as the postgres user when run as root (PostgreSQL
# refuses to run as root). Source it, then: pg_start [extra postgres -c options...]; it sets
# PG_URL and stops the cluster on exit.

log() { printf '==> %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    log "need root to run: $*"; exit 1; fi
}

find_pg_bin() {
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && { echo "$d"; return 0; }
  done
  if command -v initdb >/dev/null && command -v pg_ctl >/dev/null; then
    dirname "$(command -v pg_ctl)"; return 0
  fi
  return 1
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

pg_start() {
  PG_BIN=$(find_pg_bin || true)
  if [ -z "$PG_BIN" ]; then
    log "PostgreSQL not found: installing it with apt-get"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    PG_BIN=$(find_pg_bin) || { log "PostgreSQL still missing after apt-get"; exit 1; }
  fi
  if [ "$(id -u)" -eq 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql postgres
    pg() { runuser -u postgres -- "$@"; }
  else
    pg() { "$@"; }
  fi
  PGDIR=$(mktemp -d /tmp/confab-pg.XXXXXX)
  [ "$(id -u)" -eq 0 ] && chown postgres "$PGDIR"
  PG_PORT=$(free_port 2>/dev/null || echo 54329)
  trap pg_stop EXIT
  local opts="-p $PG_PORT -k $PGDIR -c listen_addresses=127.0.0.1 -c max_connections=300"
  for o in "$@"; do opts="$opts -c $o"; done
  log "starting a throwaway PostgreSQL ($PG_BIN) on 127.0.0.1:$PG_PORT"
  pg "$PG_BIN/initdb" -D "$PGDIR/data" -A trust -U postgres --no-sync >/dev/null
  pg "$PG_BIN/pg_ctl" -D "$PGDIR/data" -l "$PGDIR/postgres.log" -w -o "$opts" start >/dev/null
  PG_URL="postgres://postgres@127.0.0.1:$PG_PORT/postgres"
}

pg_stop() {
  [ -n "${PGDIR:-}" ] || return 0
  pg "$PG_BIN/pg_ctl" -D "$PGDIR/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$PGDIR"
  PGDIR=
}

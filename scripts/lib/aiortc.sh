# Shared by scripts/test (and any script running tests/tests/aiortc.rs): makes a Python with the
# aiortc peer's packages (tests/peers/requirements.txt: aiortc, websockets, protobuf, grpcio-tools,
# all pinned) available and exports its path as CONFAB_TEST_AIORTC_PYTHON. The tests start their
# own peers (tests/src/aiortc.rs); the peer generates its protobuf classes at start-up.
# Source it, then: aiortc_ensure.
#
# Where the interpreter comes from, first found wins:
#   1. CONFAB_TEST_AIORTC_PYTHON, when already set to an executable;
#   2. a virtualenv under ~/.cache/confab/aiortc-venv (CONFAB_AIORTC_VENV overrides), made with
#      python3 -m venv and filled with pip from PyPI on first use, and again whenever
#      tests/peers/requirements.txt changes (its hash is kept in the venv).

declare -F log >/dev/null || log() { printf '==> %s\n' "$*" >&2; }

aiortc_ensure() {
  if [ -n "${CONFAB_TEST_AIORTC_PYTHON:-}" ] && [ -x "$CONFAB_TEST_AIORTC_PYTHON" ]; then
    log "aiortc peer python: $CONFAB_TEST_AIORTC_PYTHON (from CONFAB_TEST_AIORTC_PYTHON)"
    return 0
  fi
  local venv="${CONFAB_AIORTC_VENV:-$HOME/.cache/confab/aiortc-venv}"
  local req
  req="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/tests/peers/requirements.txt"
  local want
  want=$(sha256sum "$req" | cut -d' ' -f1)
  if [ ! -x "$venv/bin/python" ] || [ "$(cat "$venv/.confab-requirements" 2>/dev/null)" != "$want" ]; then
    log "installing the aiortc peer's packages (tests/peers/requirements.txt) with pip into $venv"
    { [ -x "$venv/bin/pip" ] || python3 -m venv "$venv"; } >/dev/null 2>&1 &&
      "$venv/bin/pip" install -q --disable-pip-version-check -r "$req" >&2 &&
      echo "$want" >"$venv/.confab-requirements" ||
      { log "pip could not install tests/peers/requirements.txt into $venv (python3 -m venv needs Debian's python3-venv)"; return 1; }
  fi
  export CONFAB_TEST_AIORTC_PYTHON="$venv/bin/python"
  log "aiortc peer python: $CONFAB_TEST_AIORTC_PYTHON (aiortc $("$CONFAB_TEST_AIORTC_PYTHON" -c 'import aiortc; print(aiortc.__version__)' 2>&1))"
}

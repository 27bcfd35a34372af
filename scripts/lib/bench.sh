# Shared by scripts/bench, scripts/bench-ab and scripts/bench-cluster: start and stop
# confab-servers on free loopback ports, and run one confab-bench scenario. Needs BIN (the
# directory of the binaries, or set CONFAB_SERVER to a server binary), OUT, and the PIDS array;
# source scripts/lib/pg.sh first. PIN_SERVER and PIN_GEN (arrays, e.g. (taskset -c 0)) prefix the
# servers' and the generator's command lines when set.

wait_http() { # URL: waits up to 60 s for a 200
  for _ in $(seq 600); do
    curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  log "no answer from $1"; exit 1
}

PIN_SERVER=("${PIN_SERVER[@]}") PIN_GEN=("${PIN_GEN[@]}")
SERVER_PID="" SERVER_DATA=""
# start_confab NAME [--database-url URL]: a fresh server on free ports; sets WS, QUIC, SERVER_PID.
# Its SFU takes up to 1,000 participants in a call, two UDP ports each (one per connection).
start_confab() {
  stop_confab
  local name="$1"; shift
  local http quic data
  http=$(free_port) quic=$(free_port) data=$(mktemp -d /tmp/confab-bench.XXXXXX)
  "${PIN_SERVER[@]}" "${CONFAB_SERVER:-$BIN/confab-server}" --data-dir "$data" --ws-listen "127.0.0.1:$http" --quic-listen "127.0.0.1:$quic" \
    --rate-register-per-ip 100000/1ms --max-connections-per-ip 100000 --log-filter warn \
    --udp-port-min 50000 --udp-port-max 51999 --max-participants 1000 "$@" \
    >"$OUT/server-$name.log" 2>&1 &
  SERVER_PID=$! SERVER_DATA=$data
  PIDS+=("$SERVER_PID")
  wait_http "http://127.0.0.1:$http/healthz"
  WS="ws://127.0.0.1:$http/v1/ws" QUIC="quic://127.0.0.1:$quic"
}
stop_confab() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  [ -z "$SERVER_DATA" ] || rm -rf "$SERVER_DATA"
  PIN_SERVER=("${PIN_SERVER[@]}") PIN_GEN=("${PIN_GEN[@]}")
SERVER_PID="" SERVER_DATA=""
}

# run NAME ARGS...: one confab-bench run, its table on stdout, its JSON in OUT/NAME.json.
run() {
  local name="$1"; shift
  log "$name"
  "${PIN_GEN[@]}" "$BIN/confab-bench" --json "$OUT/$name.json" "$@" | tee "$OUT/$name.txt"
}


# Several servers at once (the nodes of a cluster, or one node alone): start_node NAME ARGS...
# starts one more server on free ports, leaving the others running, with the flags of
# start_confab, and appends its pid, WebSocket and QUIC URLs and metrics URL to NODE_PIDS,
# NODE_WS, NODE_QUIC and NODE_METRICS; stop_nodes stops them all and removes their data dirs.
NODE_PIDS=() NODE_WS=() NODE_QUIC=() NODE_METRICS=() NODE_DATA=()
start_node() {
  local name="$1"; shift
  local http quic data udp
  http=$(free_port) quic=$(free_port) data=$(mktemp -d /tmp/confab-bench.XXXXXX)
  udp=$((53000 + 1000 * ${#NODE_PIDS[@]}))
  "${CONFAB_SERVER:-$BIN/confab-server}" --data-dir "$data" --ws-listen "127.0.0.1:$http" --quic-listen "127.0.0.1:$quic" \
    --rate-register-per-ip 100000/1ms --max-connections-per-ip 100000 --log-filter warn \
    --udp-port-min "$udp" --udp-port-max "$((udp + 999))" --max-participants 500 "$@" \
    >"$OUT/server-$name.log" 2>&1 &
  NODE_PIDS+=($!) NODE_DATA+=("$data")
  PIDS+=($!)
  wait_http "http://127.0.0.1:$http/healthz"
  NODE_WS+=("ws://127.0.0.1:$http/v1/ws") NODE_QUIC+=("quic://127.0.0.1:$quic")
  NODE_METRICS+=("http://127.0.0.1:$http/metrics")
}
stop_nodes() {
  local p
  for p in "${NODE_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${NODE_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  [ ${#NODE_DATA[@]} -eq 0 ] || rm -rf "${NODE_DATA[@]}"
  NODE_PIDS=() NODE_WS=() NODE_QUIC=() NODE_METRICS=() NODE_DATA=()
}

"""The core table of a scripts/bench run (W1-W5 beside the peers and the ceilings), as Markdown.

    python3 scripts/lib/bench_summary.py OUT_DIR

For W2 and W3, per system: the best step with p99 <= 50 ms and every delivery (deliveries/s, p99,
deliveries per server CPU-second there) and the ramp's top step (deliveries/s, p99, delivered
ratio); deliveries per server CPU-second over the whole ramp; Confab's figures as a ratio of the
Bun peer's and the ceiling's. W5: completed per second. W4: acknowledged sends per second beside
the PostgreSQL ceiling. W1: bytes per idle connection.
"""
import json
import pathlib
import sys

out = pathlib.Path(sys.argv[1])


def load(name):
    p = out / f"{name}.json"
    return json.loads(p.read_text()) if p.exists() else None


def fmt(v, digits=0):
    if v is None:
        return "-"
    return f"{v:,.{digits}f}"


def ramp(name):
    r = load(name)
    if not r:
        return None
    best = r.get("best_step_with_p99_le_50ms_and_all_delivered") or {}
    steps = r.get("steps") or [{}]
    top = max(steps, key=lambda s: s.get("deliveries_per_second", 0))
    over = r.get("costs_over_ramp") or {}
    return {
        "best": best.get("deliveries_per_second"),
        "best_p99": best.get("latency_ms_p99"),
        "best_per_cpu": best.get("deliveries_per_cpu_second"),
        "top": top.get("deliveries_per_second"),
        "top_p99": top.get("latency_ms_p99"),
        "top_ratio": top.get("delivered_ratio"),
        "ramp_per_cpu": over.get("deliveries_per_cpu_second"),
        "server_cores": over.get("server_cores"),
        "generator_cores": over.get("generator_cores"),
        "load": over.get("load_average_1m"),
    }


for w in ("w2", "w3"):
    rows = {p: ramp(f"{w}-{p}") for p in ("websocket", "quic", "socketio", "bun", "ceiling")}
    print(f"\n#### {w.upper()}\n")
    print("| system | best step ≤ 50 ms: deliveries/s | its p99 ms | its deliveries per server CPU-s | top step: deliveries/s | its p99 ms | delivered | over the ramp: deliveries per server CPU-s | server cores | generator cores |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for p, r in rows.items():
        if not r:
            continue
        print(f"| {p} | {fmt(r['best'])} | {fmt(r['best_p99'], 1)} | {fmt(r['best_per_cpu'])} | {fmt(r['top'])} | "
              f"{fmt(r['top_p99'], 1)} | {fmt((r['top_ratio'] or 0) * 100, 1)}% | {fmt(r['ramp_per_cpu'])} | "
              f"{fmt(r['server_cores'], 2)} | {fmt(r['generator_cores'], 2)} |")
    for c in ("websocket", "quic"):
        me = rows.get(c)
        for other in ("bun", "ceiling", "socketio"):
            o = rows.get(other)
            if me and o and me["ramp_per_cpu"] and o["ramp_per_cpu"]:
                best = (me["best"] / o["best"]) if me["best"] and o["best"] else None
                print(f"- Confab {c} ÷ {other}: deliveries per server CPU-second over the ramp "
                      f"{me['ramp_per_cpu'] / o['ramp_per_cpu']:.2f}; best step ≤ 50 ms "
                      f"{'-' if best is None else f'{best:.2f}'}")

print("\n#### W5 (connect + authenticate + subscribe + close)\n")
print("| system | per second | p50 ms | p99 ms | errors |")
print("| --- | ---: | ---: | ---: | ---: |")
for p in ("websocket", "quic", "socketio", "bun", "ceiling"):
    r = load(f"w5-{p}")
    if r:
        print(f"| {p} | {fmt(r.get('per_second'))} | {fmt(r.get('ms_p50'), 2)} | {fmt(r.get('ms_p99'), 2)} | {r.get('errors')} |")

print("\n#### W4 (acknowledged durable sends)\n")
print("| run | sends/s | p50 ms | p99 ms |")
print("| --- | ---: | ---: | ---: |")
for name in ("w4-sqlite-websocket", "w4-sqlite-quic", "w4-postgres-websocket", "w4-postgres-quic"):
    r = load(name)
    if r:
        print(f"| {name} | {fmt(r.get('sends_per_second'))} | {fmt(r.get('ack_ms_p50'), 2)} | {fmt(r.get('ack_ms_p99'), 2)} |")
c = load("ceiling-w4-postgres")
if c:
    print(f"| ceiling (PostgreSQL, group-committed inserts) | {fmt(c['acked_per_second'])} | {fmt(c['latency_ms_p50'], 2)} | "
          f"{fmt(c['latency_ms_p99'], 2)} |")
    pg = load("w4-postgres-websocket")
    if pg and pg.get("sends_per_second"):
        print(f"\nConfab on PostgreSQL (WebSocket) = {pg['sends_per_second'] / c['acked_per_second']:.2f} of the ceiling "
              f"({fmt(c['rows_per_commit'], 1)} rows per ceiling commit).")

print("\n#### W1 (idle connections)\n")
for name in ("w1-websocket", "w1-quic", "w1-websocket-max"):
    r = load(name)
    if r:
        print(f"- {name}: {fmt(r['bytes_per_connection'])} bytes per connection over {r['connections']} connections "
              f"(RSS {fmt(r['server_rss_before_kib'])} → {fmt(r['server_rss_after_kib'])} KiB)")

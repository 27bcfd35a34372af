#!/usr/bin/env python3
"""Runs the Autobahn|Testsuite fuzzing-client cases (kosoku) against Confab's WebSocket layer.

Confab refuses an upgrade that does not offer the subprotocol `confab.v1` (docs/protocol.md §2.1)
and kosoku offers none, so the cases go through a relay: it accepts kosoku's connection, adds
`Sec-WebSocket-Protocol: confab.v1` to the upgrade request (and points it at /v1/ws), removes the
selected subprotocol from the 101 answer (kosoku did not offer one), and from then on copies bytes
both ways untouched. The relay never parses a WebSocket frame, so every frame kosoku sends,
malformed or not, reaches Confab's WebSocket stack as sent, and Confab's answer reaches kosoku as
sent.

Cases listed in exclusions.toml do not apply (each entry says why) and are not run. Every other
case must pass (OK, NON-STRICT or INFORMATIONAL in both behaviour and close); the script exits 1
otherwise, printing each failing case with what was expected and what happened.

Usage: run.py --server HOST:PORT [--exclusions FILE] [--report FILE.json]
"""

import argparse
import asyncio
import json
import sys
import time
import tomllib
from pathlib import Path

import kosoku

SUBPROTOCOL = b"confab.v1"
WS_PATH = b"/v1/ws"
MAX_HEAD = 16 * 1024


async def read_head(reader: asyncio.StreamReader) -> bytes:
    """An HTTP head, up to and including the blank line."""
    head = await reader.readuntil(b"\r\n\r\n")
    if len(head) > MAX_HEAD:
        raise ValueError("HTTP head too long")
    return head


def rewrite_request(head: bytes) -> bytes:
    """Points the upgrade at /v1/ws and offers confab.v1 (replacing any offer kosoku made)."""
    lines = head.split(b"\r\n")
    method, _target, version = lines[0].split(b" ", 2)
    kept = [l for l in lines[1:] if l and not l.lower().startswith(b"sec-websocket-protocol:")]
    out = [b" ".join([method, WS_PATH, version]), *kept, b"Sec-WebSocket-Protocol: " + SUBPROTOCOL]
    return b"\r\n".join(out) + b"\r\n\r\n"


def rewrite_response(head: bytes) -> bytes:
    """Removes the subprotocol Confab selected: the client under test did not offer it."""
    lines = [l for l in head.split(b"\r\n") if not l.lower().startswith(b"sec-websocket-protocol:")]
    return b"\r\n".join(lines[:-2]) + b"\r\n\r\n"


async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copies bytes until EOF, then half-closes, so a TCP close travels like the bytes do."""
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        writer.close()


async def relay(host: str, port: int, client_r, client_w) -> None:
    server_w = None
    try:
        server_r, server_w = await asyncio.open_connection(host, port)
        server_w.write(rewrite_request(await read_head(client_r)))
        client_w.write(rewrite_response(await read_head(server_r)))
        await asyncio.gather(pump(client_r, server_w), pump(server_r, client_w))
    except (ConnectionError, OSError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        pass
    finally:
        for w in (client_w, server_w):
            if w is not None:
                w.close()


def load_exclusions(path: Path) -> list[dict]:
    entries = tomllib.loads(path.read_text())["exclude"]
    for e in entries:
        if not e.get("cases") or not e.get("reason"):
            raise SystemExit(f"{path}: every [[exclude]] needs `cases` and `reason`: {e}")
    return entries


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--server", required=True, help="Confab's WebSocket listener, HOST:PORT")
    ap.add_argument("--exclusions", type=Path, default=Path(__file__).with_name("exclusions.toml"))
    ap.add_argument("--report", type=Path, help="write every case's result here as JSON")
    ap.add_argument("--concurrency", type=int, default=4)
    args = ap.parse_args()
    host, port = args.server.rsplit(":", 1)
    exclusions = load_exclusions(args.exclusions)
    excluded = [c for e in exclusions for c in e["cases"]]

    # Connections the server under test still lingers on (docs/protocol.md §2.1: up to 2 s after
    # its close frame) when the run ends are cancelled then, not left to the interpreter.
    relays: set[asyncio.Task] = set()

    def accept(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        task = asyncio.ensure_future(relay(host, int(port), r, w))
        relays.add(task)
        task.add_done_callback(relays.discard)

    srv = await asyncio.start_server(accept, "127.0.0.1", 0)
    relay_port = srv.sockets[0].getsockname()[1]
    started = time.monotonic()
    try:
        results = await kosoku.run_fuzzingclient(
            f"ws://127.0.0.1:{relay_port}", exclude_cases=excluded, concurrency=args.concurrency
        )
    except kosoku.FailureError as e:
        results = e.results
    finally:
        srv.close()
        for task in list(relays):
            task.cancel()
        await asyncio.gather(*relays, return_exceptions=True)
    elapsed = time.monotonic() - started

    failed = [r for r in results if not r.passed]
    counts: dict[str, int] = {}
    for r in results:
        key = f"{r.behavior.value}/{r.behavior_close.value}"
        counts[key] = counts.get(key, 0) + 1
    if args.report:
        args.report.write_text(json.dumps([
            {"case": r.case_id, "behavior": r.behavior.value, "close": r.behavior_close.value,
             "remote_close_code": r.remote_close_code, "result": r.result, "result_close": r.result_close}
            for r in results], indent=1))
    for r in failed:
        print(f"FAILED {r.case_id}: {r.description}\n  expected: {r.expectation}\n"
              f"  behaviour {r.behavior.value}: {r.result}\n  close {r.behavior_close.value}: {r.result_close}"
              f" (server sent {r.remote_close_code} {r.remote_close_reason!r})", file=sys.stderr)
    print(f"autobahn: {len(results)} cases run in {elapsed:.1f} s ({len(failed)} failed), "
          f"{len(excluded)} case patterns excluded as not applicable; verdicts: "
          + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    if not results:
        print("autobahn: no case ran", file=sys.stderr)
        return 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))

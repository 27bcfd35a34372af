"""Bytes live at the heap's peak per allocation site, from a dhat-heap.json (scripts/heap-profile).

    python3 dhat_summary.py dhat-heap.json CONNECTIONS

A site is named by its first frame in Confab's, tokio's, hyper's, tungstenite's or quinn's code
(allocator and standard-library frames skipped) and the frame that called it; bytes are divided by
CONNECTIONS to read as bytes per idle connection.
"""
import json
import re
import sys

path, n = sys.argv[1], int(sys.argv[2])
d = json.load(open(path))
frames = d["ftbl"]
SKIP = re.compile(r"(alloc::|core::|std::|dhat::|hashbrown::|<alloc|<core|<std|__rust|bytes::bytes_mut::BytesMut::reserve|smallvec::|\[root\])")


def name(i):
    f = frames[i]
    f = re.sub(r"^0x[0-9a-f]+: ", "", f)
    f = re.sub(r" \(.*\)$", "", f)
    f = re.sub(r"::h[0-9a-f]{16}$", "", f)
    return f


sites = {}
total = 0
for pp in d["pps"]:
    b = pp.get("gb", pp.get("tgmb", 0))
    if not b:
        continue
    total += b
    chain = [name(i) for i in pp["fs"]]
    useful = [c for c in chain if not SKIP.match(c)]
    key = " <- ".join(useful[:2]) if useful else chain[0]
    s = sites.setdefault(key, [0, 0])
    s[0] += b
    s[1] += pp.get("gbk", pp.get("tgmbk", 0))

print(f"heap at its peak: {total} bytes = {total / n:.0f} bytes per connection ({n} connections)")
print(f"{'bytes/conn':>10} {'blocks/conn':>11}  site")
for key, (b, blocks) in sorted(sites.items(), key=lambda kv: -kv[1][0])[:30]:
    print(f"{b / n:>10.0f} {blocks / n:>11.2f}  {key[:150]}")

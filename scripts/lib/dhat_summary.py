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
# Frames of the allocator, dhat and the standard library's collections: skipped, so a site is
# named by the first frames of the code that asked for the memory.
SKIP_FILE = re.compile(
    r"^(alloc/|core/|std/|dhat-|src/raw_vec/|src/vec/|src/boxed|src/alloc|src/sync\.rs|src/string\.rs|"
    r"src/collections/|src/slice|src/str|src/fmt|src/rc\.rs|bytes-[0-9.]+/src/bytes_mut|hashbrown-)"
)


def parse(i):
    m = re.match(r"^0x[0-9a-f]+: (.*) \((.*?)(:\d+)?(:\d+)?\)$", frames[i])
    if not m:
        return frames[i], ""
    func = re.sub(r"<.*>", "", m.group(1))
    return func, m.group(2) + (m.group(3) or "")


sites = {}
total = 0
for pp in d["pps"]:
    b = pp.get("gb", pp.get("tgmb", 0))
    if not b:
        continue
    total += b
    chain = [parse(i) for i in pp["fs"]]
    useful = [f"{fn} ({file})" for fn, file in chain if file and not SKIP_FILE.match(file)]
    key = " <- ".join(useful[:3]) if useful else frames[pp["fs"][0]]
    s = sites.setdefault(key, [0, 0])
    s[0] += b
    s[1] += pp.get("gbk", pp.get("tgmbk", 0))

print(f"heap at its peak: {total} bytes = {total / n:.0f} bytes per connection ({n} connections)")
print(f"{'bytes/conn':>10} {'blocks/conn':>11}  site")
for key, (b, blocks) in sorted(sites.items(), key=lambda kv: -kv[1][0])[:20]:
    if b / n < 8:
        break
    print(f"{b / n:>10.0f} {blocks / n:>11.2f}  {key[:240]}")

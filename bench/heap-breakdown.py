#!/usr/bin/env python3
"""What is live in a heap profile, by call site, per held connection.

    bench/heap-breakdown.py dhat-heap.json SOCKETS [BASELINE.json]

Reads the `dhat-heap.json` that `chat-engine` built with `--features heap-profile` writes on
SIGUSR1 (its `eb` figures: bytes live at that moment), groups the live blocks by where they were
allocated (the innermost frame outside the allocator, and the engine's own function that led
there), and prints bytes and blocks per socket, largest first. With BASELINE (a profile of the
same engine with no reader connected) its figures are subtracted first.
"""
import json
import re
import sys
from collections import defaultdict

# Frames of the allocator, the standard library and the profiler: not where memory is decided.
ALLOCATOR = re.compile(r"\((dhat-|engine/src/main.rs|alloc/|core/|std/|src/raw_vec/|src/vec/|src/boxed|src/alloc|bytes-[0-9.]+/src/bytes_mut)")
# The engine's own source files, as the profile names them.
ENGINE = re.compile(r"\(src/(room|ws|http|store|bus|spam|webhooks|jobs|app|chat|server|clients|client_ip|rate|heap|metrics|config|write_deadline|lib)[/.]")


def label(frame):
    """ "0x55d...: name<generics> (dir/file.rs:12:5)" -> "name (dir/file.rs:12)" """
    m = re.match(r"^0x[0-9a-f]+: (.*?) \((.*?)(?::\d+)?\)$", frame)
    if not m:
        return frame
    name = m.group(1)
    while re.search(r"<[^<>]*>", name):
        name = re.sub(r"<[^<>]*>", "", name)
    return f"{name[:60]} ({m.group(2)})"


def sites(path):
    data = json.load(open(path))
    ftbl = data["ftbl"]
    out = defaultdict(lambda: [0, 0])
    for pp in data["pps"]:
        if pp["eb"] == 0:
            continue
        frames = [ftbl[i] for i in pp["fs"]]
        inner = next((label(f) for f in frames if not ALLOCATOR.search(f)), "?")
        ours = next((label(f) for f in frames if ENGINE.search(f)), "(outside the engine)")
        out[(inner, ours)][0] += pp["eb"]
        out[(inner, ours)][1] += pp["ebk"]
    return out


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    live, sockets = sites(sys.argv[1]), int(sys.argv[2])
    if len(sys.argv) == 4:
        for key, (b, k) in sites(sys.argv[3]).items():
            live[key][0] -= b
            live[key][1] -= k
    total = sum(b for b, _ in live.values())
    print(f"live heap {total / 1024:.0f} KiB, {total / sockets:.0f} B per socket over {sockets} sockets\n")
    print("| B/socket | blocks/socket | allocated in | reached from |")
    print("| ---: | ---: | --- | --- |")
    for (inner, ours), (b, k) in sorted(live.items(), key=lambda kv: -kv[1][0]):
        if b / sockets < 8:
            continue
        print(f"| {b / sockets:.0f} | {k / sockets:.2f} | `{inner}` | `{ours}` |")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Loads N distinct generated facts into a running `mann serve` through POST /memories, over a
few keep-alive connections at once (so the server's group commit shares fsyncs), and prints one
JSON object: how many requests were sent, how long it took, the write head's statuses and the
errors.

Usage: load_memories.py --port PORT --count N [--connections C] [--timeout SECONDS]

Facts come from bench/http/words.txt with a fixed seed, so two runs load the same bank. The
write head merges a fact into a stored one that is worded almost the same ("updated"); such
requests do not count, and the loader goes on until exactly N facts were "created". Every
request is bounded by the socket timeout and the whole load by --timeout; exit status 1 when a
request failed or the load ran out of time.
"""

import argparse
import collections
import http.client
import json
import os
import random
import sys
import threading
import time

WORDS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "words.txt")
SECTIONS = ("names", "verbs", "objects", "places", "times")


def read_words(path):
    """{section: [items]} from words.txt."""
    sections = collections.defaultdict(list)
    current = None
    with open(path, encoding="utf-8") as f:
        for raw in f:
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("[") and line.endswith("]"):
                current = line[1:-1]
            elif current is None:
                raise ValueError(f"{path}: item {line!r} before any [section]")
            else:
                sections[current].append(line)
    missing = [s for s in SECTIONS if not sections.get(s)]
    if missing:
        raise ValueError(f"{path}: no items in section(s) {', '.join(missing)}")
    return sections


def facts(words, seed=20261203):
    """Distinct facts without end, the same sequence for the same seed."""
    rng = random.Random(seed)
    seen = set()
    while True:
        name, verb, obj, place, when = (rng.choice(words[s]) for s in SECTIONS)
        text = f"{name[0].upper()}{name[1:]} {verb} {obj} {place} {when}."
        if text not in seen:
            seen.add(text)
            yield text


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--timeout", type=float, default=600, help="bound on the whole load")
    args = parser.parse_args()

    texts = facts(read_words(WORDS))
    deadline = time.monotonic() + args.timeout
    lock = threading.Lock()  # guards everything below and `texts`
    statuses = collections.Counter()
    errors = []
    in_flight = [0]

    def worker():
        conn = http.client.HTTPConnection(args.host, args.port, timeout=30)
        try:
            while time.monotonic() < deadline:
                # Never more requests out than could still be "created", so the count is exact.
                with lock:
                    if statuses["created"] + in_flight[0] >= args.count or len(errors) > 20:
                        return
                    in_flight[0] += 1
                    text = next(texts)
                body = json.dumps({"content": text})
                try:
                    conn.request("POST", "/memories", body=body,
                                 headers={"Content-Type": "application/json"})
                    resp = conn.getresponse()
                    data = resp.read()
                except (OSError, http.client.HTTPException) as e:
                    with lock:
                        in_flight[0] -= 1
                        errors.append(f"{text!r}: {type(e).__name__}: {e}")
                    conn.close()
                    conn = http.client.HTTPConnection(args.host, args.port, timeout=30)
                    continue
                with lock:
                    in_flight[0] -= 1
                    if 200 <= resp.status < 300:
                        statuses[json.loads(data).get("status", "?")] += 1
                    else:
                        errors.append(f"{text!r}: HTTP {resp.status}: {data[:200]!r}")
        finally:
            conn.close()

    start = time.monotonic()
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(args.connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()) + 35)
    seconds = time.monotonic() - start
    done = sum(statuses.values())
    timed_out = statuses["created"] < args.count and not errors
    print(json.dumps({"count": args.count, "requests_2xx": done, "errors": len(errors),
                      "first_errors": errors[:5], "timed_out": timed_out,
                      "statuses": dict(statuses), "connections": args.connections,
                      "seconds": round(seconds, 2), "per_second": round(done / seconds, 1)}))
    return 1 if errors or timed_out else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Replicas on PostgreSQL and Redis behind nginx, all on 127.0.0.1 (tests/integration/cluster.py):
throughput through nginx with one and with three replicas, side by side in one run, and the time
from a write acknowledged by one replica to its being found by a search on every other.

  bench/replicas_bench.py [--mann build/mann] [--duration 10] [--memories 1000] [--writes 200]

For each replica count: a fresh cluster (its own PostgreSQL and Redis), --memories facts loaded
through nginx, then wrk (bench/http/search.lua and get.lua, 32 connections, 2 threads) for
--duration seconds on POST /search and GET /health through nginx. Then, on the three-replica
cluster, --writes writes through nginx, each searched for on every replica until found. Prints
one markdown table for docs/benchmarks.md. The hashed encoder keeps the replicas' start quick;
the search cache is off, so every search is scored (a cached answer would measure Redis).
Needs wrk, nginx, PostgreSQL 15 and redis-server (scripts/setup.sh installs them).
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

import cluster  # noqa: E402
import harness  # noqa: E402


def wrk(url, script, duration):
    """The RESULT fields that bench/http/common.lua prints."""
    out = subprocess.run(
        ["wrk", "--latency", "--timeout", "5s", "-t", "2", "-c", "32", "-d", f"{duration}s",
         "-s", os.path.join(ROOT, "bench", "http", script), url],
        capture_output=True, text=True, timeout=duration + 60)
    line = next((x for x in out.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no RESULT line: {out.stdout[-500:]} {out.stderr[-500:]}")
    return dict(kv.split("=", 1) for kv in line.split()[1:])


def load(c, count):
    for i in range(count):
        status, body = c.request("POST", "/memories",
                                 {"content": f"Benchmark fact {i}: item {i * 7919 % 10007} is "
                                             f"stored in box {i % 97} on shelf {i % 13}"})
        if status != 200:
            raise RuntimeError(f"load write {i}: {status} {body}")


def throughput(mann, replicas, args):
    root = tempfile.mkdtemp(prefix=f"mann-replicas-bench-{replicas}-")
    c = cluster.Cluster(mann, root, replicas=replicas, extra=["--set", "cache.enabled=false"])
    try:
        load(c, args.memories)
        base = f"http://127.0.0.1:{c.nginx.port}"
        rows = {}
        for label, path, script in (("POST /search", "/search", "search.lua"),
                                    ("GET /health", "/health", "get.lua")):
            r = wrk(base + path, script, args.duration)
            errors = int(r["non2xx"]) + int(r["socket_errors"])
            rows[label] = (float(r["rps"]), int(r["p99_us"]) / 1000, errors)
        return rows
    finally:
        c.stop()
        harness.clean_up(harness.Checks(), root)


def visibility(mann, args):
    root = tempfile.mkdtemp(prefix="mann-replicas-bench-visibility-")
    c = cluster.Cluster(mann, root, replicas=3)
    try:
        delays = []
        for i in range(args.writes):
            content = f"Visibility probe {i}: the parcel for locker {i} waits at gate {i % 17}"
            status, body = c.request("POST", "/memories", {"content": content})
            if status != 200:
                raise RuntimeError(f"write {i}: {status} {body}")
            acked = time.monotonic()
            for replica in c.replicas:
                def found(r=replica):
                    s, _, hits = r.server.request("POST", "/search",
                                                  {"query": content, "top_k": 3})
                    return s == 200 and any(h["memory_id"] == body["memory_id"] for h in hits)
                # Polled every 2 ms (harness.wait_for sleeps 200 ms, too coarse to measure this).
                deadline = acked + harness.TIMEOUT
                while not found():
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"write {i} not found on replica {replica.index}")
                    time.sleep(0.002)
                delays.append(time.monotonic() - acked)
        return sorted(delays)
    finally:
        c.stop()
        harness.clean_up(harness.Checks(), root)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mann", default=os.path.join(ROOT, "build", "mann"))
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--memories", type=int, default=1000)
    parser.add_argument("--writes", type=int, default=200)
    args = parser.parse_args()

    results = {n: throughput(args.mann, n, args) for n in (1, 3)}
    delays = visibility(args.mann, args)

    print(f"wrk {args.duration} s, 32 connections, 2 threads, through nginx; {args.memories} "
          f"memories; hashed encoder; search cache off; {os.cpu_count()} cores; load average "
          f"{' '.join(open('/proc/loadavg').read().split()[:3])}")
    print()
    print("| request | 1 replica (req/s, p99) | 3 replicas (req/s, p99) | 3 / 1 | errors |")
    print("| --- | --- | --- | --- | --- |")
    for label in ("POST /search", "GET /health"):
        one, three = results[1][label], results[3][label]
        print(f"| {label} | {one[0]:.0f}, {one[1]:.2f} ms | {three[0]:.0f}, {three[1]:.2f} ms | "
              f"{three[0] / one[0]:.2f} | {one[2] + three[2]} |")
    print()
    p95 = delays[max(0, int(len(delays) * 0.95) - 1)]
    print(f"Write acknowledged by one replica to found by search on each of the three: median "
          f"{statistics.median(delays) * 1e3:.1f} ms, p95 {p95 * 1e3:.1f} ms, max "
          f"{delays[-1] * 1e3:.1f} ms over {len(delays)} (write, replica) pairs.")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Drives two real `mann serve` replicas sharing one real redis-server (each with a SQLite
database of its own): search answers cached and counted in /metrics, a write invalidating them,
embeddings one replica computed served to the other from Redis (and none written with caching
disabled), one rate limit spent by both replicas together, and the degraded mode: with Redis
stopped both keep serving, /health?detail=1 says degraded, /ready stays 200 and mann_redis_up
is 0; with Redis started again on the same port they recover by themselves.

Usage: redis_test.py --mann PATH/TO/mann
Exit status 0 when every check passed; otherwise the failed checks are listed.
"""

import argparse
import http.client
import json
import os
import re
import subprocess
import sys
import tempfile
import time

import harness

TIMEOUT = harness.TIMEOUT
checks = harness.Checks()
check = checks.check
STATISTICS_LIMIT = 5  # per minute, for the one caller (127.0.0.1) across both replicas


def post_raw(srv, path, body):
    """(status, exact body bytes) of a JSON POST."""
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=TIMEOUT)
    try:
        conn.request("POST", path, body=json.dumps(body).encode(),
                     headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def metric(srv, series):
    """The value of one series (`name{labels}` exactly as rendered) in /metrics, or None."""
    _, text = harness.http_get(srv.port, "/metrics")
    match = re.search(r"^" + re.escape(series) + r" (\S+)$", text, re.M)
    return float(match.group(1)) if match else None


def redis_check(srv):
    """The "redis" entry of /health?detail=1."""
    _, _, doc = srv.request("GET", "/health?detail=1")
    for c in doc.get("checks", {}).get("checks", []):
        if c.get("name") == "redis":
            return c
    return None


HITS = 'mann_cache_requests_total{cache="search",result="hit"}'
MISSES = 'mann_cache_requests_total{cache="search",result="miss"}'
SHARED_EMBEDDING_HITS = 'mann_cache_requests_total{cache="embedding_shared",result="hit"}'


def redis_keys(redis, pattern):
    """The keys of `redis` matching `pattern`, through redis-cli (redis-tools)."""
    out = subprocess.run(["redis-cli", "-p", str(redis.port), "--scan", "--pattern", pattern],
                         capture_output=True, text=True, timeout=TIMEOUT, check=True).stdout
    return out.split()


def test_cache(a):
    status, _, _ = a.request("POST", "/memories", {"user_id": "alice",
                                                   "content": "Alice drinks green tea"})
    check(status == 200, "a memory is added", str(status))
    query = {"user_id": "alice", "query": "what does alice drink", "top_k": 3}
    first = post_raw(a, "/search", query)
    second = post_raw(a, "/search", query)
    check(first[0] == 200 and second[0] == 200, "both searches succeed", f"{first} {second}")
    check(first[1] == second[1], "the cached answer is byte for byte the computed one",
          f"{first[1][:200]!r} vs {second[1][:200]!r}")
    check(metric(a, HITS) == 1 and metric(a, MISSES) == 1,
          "one miss then one hit in mann_cache_requests_total",
          f"hits {metric(a, HITS)} misses {metric(a, MISSES)}")

    a.request("POST", "/memories", {"user_id": "alice", "content": "Alice also likes coffee"})
    third = post_raw(a, "/search", query)
    check(metric(a, MISSES) == 2, "a write to the namespace makes the next search a miss",
          f"misses {metric(a, MISSES)}")
    check(b"coffee" in third[1] or third[1] != first[1],
          "the search after the write sees the new memory", repr(third[1][:300]))


def test_shared_embeddings(mann, root, redis, a, b):
    # B stores what A stored and searches what A searched: both texts are in Redis already.
    memory = {"user_id": "alice", "content": "Alice keeps her tea in a blue tin"}
    query = {"user_id": "alice", "query": "where is the tea kept", "top_k": 3}
    check(a.request("POST", "/memories", memory)[0] == 200, "A adds a memory")
    check(post_raw(a, "/search", query)[0] == 200, "A searches")
    before = metric(b, SHARED_EMBEDDING_HITS) or 0
    check(b.request("POST", "/memories", memory)[0] == 200, "B adds the same memory")
    after_write = metric(b, SHARED_EMBEDDING_HITS) or 0
    check(after_write > before, "B's write took A's embedding from Redis",
          f"{before} -> {after_write}")
    check(post_raw(b, "/search", query)[0] == 200, "B searches what A searched")
    after_search = metric(b, SHARED_EMBEDDING_HITS) or 0
    check(after_search > after_write, "B's search took A's query embedding from Redis",
          f"{after_write} -> {after_search}")
    check(len(redis_keys(redis, "mann:emb:*")) >= 2, "embeddings live under mann:emb:",
          str(redis_keys(redis, "mann:emb:*")))

    # cache.enabled=false: a replica on the same Redis writes no embedding there.
    off = harness.Server(mann, root, os.path.join(root, "data-off"),
                         "--set", f"redis.url={redis.url()}", "--set", "redis.key_prefix=off:",
                         "--set", "cache.enabled=false")
    try:
        check(off.request("POST", "/memories", {"user_id": "bob", "content": "Bob rows"})[0]
              == 200, "the replica without caching adds a memory")
        check(post_raw(off, "/search", {"user_id": "bob", "query": "rowing"})[0] == 200,
              "... and searches")
        check(redis_keys(redis, "off:emb:*") == [], "with caching disabled nothing is written",
              str(redis_keys(redis, "off:emb:*")))
        check(metric(off, SHARED_EMBEDDING_HITS) is None,
              "... and no shared embedding lookup is counted")
    finally:
        off.stop()


def test_shared_rate_limit(a, b):
    codes = []
    for i in range(STATISTICS_LIMIT + 1):
        srv = a if i % 2 == 0 else b
        status, resp, _ = srv.request("GET", "/statistics?user_id=alice")
        codes.append((status, resp.getheader("Retry-After")))
    allowed = sum(1 for s, _ in codes if s == 200)
    check(allowed == STATISTICS_LIMIT and codes[-1][0] == 429,
          f"{STATISTICS_LIMIT} requests pass across both replicas, the next is refused", str(codes))
    check(codes[-1][1] is not None and int(codes[-1][1]) >= 1,
          "the refusal carries Retry-After", str(codes[-1]))


def test_redis_down(redis, a, b):
    redis.stop()
    for srv, name in ((a, "A"), (b, "B")):
        started = time.monotonic()
        status, _ = post_raw(srv, "/search", {"user_id": "alice", "query": "tea"})
        took = time.monotonic() - started
        check(status == 200, f"replica {name} serves a search with Redis stopped", str(status))
        check(took < 2.0, f"replica {name} answers without waiting on Redis", f"{took:.2f} s")
    c = redis_check(a)
    check(c is not None and c["status"] == "degraded",
          "/health?detail=1 reports the redis check degraded", str(c))
    _, _, health = a.request("GET", "/health?detail=1")
    check(health.get("checks", {}).get("status") == "degraded",
          "the overall health is degraded", str(health.get("checks"))[:300])
    status, _, ready = a.request("GET", "/ready")
    check(status == 200 and ready.get("redis") == "down",
          "/ready stays 200 and says redis is down", f"{status} {ready}")
    check(metric(a, "mann_redis_up") == 0, "mann_redis_up is 0", str(metric(a, "mann_redis_up")))
    status, _, _ = a.request("GET", "/statistics?user_id=alice")
    check(status == 200, "rate limits fall back to the replica's own budget", str(status))
    check((metric(a, "mann_rate_limit_fallbacks_total") or 0) >= 1,
          "the fallback is counted", str(metric(a, "mann_rate_limit_fallbacks_total")))
    check((metric(a, 'mann_cache_bypassed_total{cache="search"}') or 0) >= 1,
          "bypassed cache lookups are counted",
          str(metric(a, 'mann_cache_bypassed_total{cache="search"}')))


def test_redis_back(redis, a, b):
    redis.start()
    for srv, name in ((a, "A"), (b, "B")):
        harness.wait_for(f"replica {name} sees Redis again",
                         lambda s=srv: s.request("GET", "/ready")[2].get("redis") == "up")
        check(metric(srv, "mann_redis_up") == 1, f"mann_redis_up is 1 again on {name}")
    c = redis_check(a)
    check(c is not None and c["status"] == "healthy", "the redis check is healthy again", str(c))
    hits = metric(a, HITS)
    query = {"user_id": "alice", "query": "green tea again"}
    post_raw(a, "/search", query)
    post_raw(a, "/search", query)
    check(metric(a, HITS) == hits + 1, "the shared cache serves hits again",
          f"{hits} -> {metric(a, HITS)}")
    # Redis restarted empty: the shared limit starts afresh, in Redis, not in the fallback.
    fallbacks = metric(b, "mann_rate_limit_fallbacks_total")
    status, _, _ = b.request("GET", "/statistics?user_id=alice")
    check(status == 200 and metric(b, "mann_rate_limit_fallbacks_total") == fallbacks,
          "rate limits are decided in Redis again",
          f"{status}, fallbacks {fallbacks} -> {metric(b, 'mann_rate_limit_fallbacks_total')}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--mann", required=True)
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="mann-redis-test-")
    redis = None
    servers = []
    try:
        try:
            redis = harness.Redis(root)
            common = ["--set", f"redis.url={redis.url()}",
                      "--set", f"rate_limit.rules=GET /statistics={STATISTICS_LIMIT}/minute",
                      "--set", "log.level=info"]
            for name in ("a", "b"):
                servers.append(harness.Server(args.mann, root, os.path.join(root, f"data-{name}"),
                                              *common))
            a, b = servers
            checks.scenario("cache", test_cache, a)
            checks.scenario("shared embeddings", test_shared_embeddings, args.mann, root, redis,
                            a, b)
            checks.scenario("shared rate limit", test_shared_rate_limit, a, b)
            checks.scenario("redis down", test_redis_down, redis, a, b)
            checks.scenario("redis back", test_redis_back, redis, a, b)
        except Exception as e:  # noqa: BLE001 - reported as a failure
            checks.fail(f"set-up: {type(e).__name__}: {e}")
        finally:
            for srv in servers:
                check(srv.stop() == 0, f"replica on port {srv.port} stops with exit 0")
            if redis is not None:
                redis.stop()
        # One warning for the outage and one line for the recovery, not one per request.
        for srv in servers:
            with open(os.path.join(root, f"serve-{srv.port}.log")) as f:
                log = f.read()
            warnings = log.count("redis unreachable")
            recoveries = log.count("redis reachable again")
            check(warnings == 1 and recoveries == 1,
                  f"replica on port {srv.port} logged the outage once and the recovery once",
                  f"{warnings} warnings, {recoveries} recoveries")
    finally:
        harness.clean_up(checks, root)
    return checks.summary()


if __name__ == "__main__":
    sys.exit(main())

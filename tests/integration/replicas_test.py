#!/usr/bin/env python3
"""Three `mann serve` replicas on one PostgreSQL and one Redis, behind nginx, scraped by
Prometheus, all real and all on loopback (tests/integration/cluster.py):

- a write through nginx is found by a search on every replica within VISIBLE_BOUND_S;
- a replica SIGKILLed under write load: nginx fails over, every acknowledged write is on every
  replica afterwards, the restarted replica caught up, and Prometheus saw it as up == 0;
- a rate limit holds across the three replicas within 10%;
- Redis stopped: the replicas keep serving and say so (/health?detail=1, mann_redis_up 0); Redis
  restarted: they recover by themselves;
- a backup taken during writes restores into a fresh database with every write acknowledged
  before it began.

Usage: replicas_test.py --mann PATH/TO/mann [--prometheus PATH]
Every step is bounded by harness.TIMEOUT; the whole test takes about a minute.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

import cluster
import harness

checks = harness.Checks()
check = checks.check

VISIBLE_BOUND_S = 2.0  # documented in docs/architecture.md, "PostgreSQL and replicas"
RATE_LIMIT = 30        # GET /statistics per minute, shared by every replica
WORDS = ["amber", "basil", "cedar", "delta", "ember", "fjord", "garnet", "harbor", "indigo",
         "juniper", "kestrel", "lagoon", "meadow", "nectar", "orchid", "pepper", "quartz",
         "raven", "saffron", "tundra", "umber", "violet", "willow", "yarrow", "zephyr"]


def fact(i):
    """A sentence no other index shares words with, so a search for it finds it first."""
    a, b, c = WORDS[i % 25], WORDS[(i // 25) % 25], WORDS[(i // 625) % 25]
    return f"Record {i}: the {a} {b} key opens the {c} door number {i}"


def found_on(replica, content, memory_id):
    status, _, body = replica.server.request(
        "POST", "/search", {"query": content, "top_k": 3})
    return status == 200 and any(hit.get("memory_id") == memory_id for hit in body)


def has_memory(replica, memory_id):
    status, _, _ = replica.server.request("GET", f"/memories/{urllib.parse.quote(memory_id)}")
    return status == 200


class Writer(threading.Thread):
    """Writes facts through nginx until stopped (or `limit` writes); keeps what was acknowledged."""

    def __init__(self, c, first, limit=2000, pause=0.01):
        super().__init__(daemon=True)
        self.cluster = c
        self.next = first
        self.limit = limit
        self.pause = pause
        self.acked = []   # (time acknowledged, memory_id, content)
        self.refused = 0  # answers other than 200, and connection errors
        self.stop_event = threading.Event()

    def run(self):
        deadline = time.monotonic() + harness.TIMEOUT
        while not self.stop_event.is_set() and self.limit > 0 and time.monotonic() < deadline:
            content = fact(self.next)
            self.next += 1
            self.limit -= 1
            try:
                status, body = self.cluster.request("POST", "/memories", {"content": content},
                                                    timeout=10)
            except OSError:
                status, body = 0, None
            if status == 200 and isinstance(body, dict) and body.get("memory_id"):
                self.acked.append((time.monotonic(), body["memory_id"], content))
            else:
                self.refused += 1
            time.sleep(self.pause)

    def finish(self):
        self.stop_event.set()
        self.join(timeout=harness.TIMEOUT)


def test_visibility(c):
    """Each write, acknowledged by whichever replica nginx chose, searched for on all three."""
    delays = []
    for i in range(40):
        content = fact(i)
        status, body = c.request("POST", "/memories", {"content": content})
        if status != 200:
            checks.fail(f"write {i} through nginx: {status} {body}")
            continue
        acked = time.monotonic()
        for replica in c.replicas:
            seen = harness.wait_for(
                f"write {i} visible on replica {replica.index}",
                lambda r=replica: found_on(r, content, body["memory_id"]) and time.monotonic())
            delays.append(seen - acked)
    check(len(delays) == 120, "every write is found on every replica", f"{len(delays)} of 120")
    if delays:
        worst = max(delays)
        check(worst <= VISIBLE_BOUND_S,
              f"a write is searchable on every replica within {VISIBLE_BOUND_S} s",
              f"worst {worst:.3f} s")
        delays.sort()
        print(f"write-to-visible across replicas: median {statistics.median(delays) * 1e3:.1f} ms,"
              f" p95 {delays[int(len(delays) * 0.95) - 1] * 1e3:.1f} ms,"
              f" max {worst * 1e3:.1f} ms over {len(delays)} (write, replica) pairs")


def test_kill_under_load(c):
    victim = c.replicas[1]
    instance = f"127.0.0.1:{victim.port}"
    if c.prometheus:
        harness.wait_for("Prometheus sees all three replicas up",
                         lambda: sorted(v for _, v in c.prometheus.query('up{job="mann"}')) ==
                         [1.0, 1.0, 1.0])
    writer = Writer(c, first=10_000)
    writer.start()
    harness.wait_for("writes before the kill", lambda: len(writer.acked) >= 30)
    victim.kill()
    killed_at = time.monotonic()
    acked_before_kill = len(writer.acked)
    harness.wait_for("writes after the kill", lambda: len(writer.acked) >= acked_before_kill + 60)
    if c.prometheus:
        down = harness.wait_for(
            "Prometheus sees the killed replica down",
            lambda: c.prometheus.value(f'up{{job="mann",instance="{instance}"}}') == 0.0 and
            time.monotonic())
        print(f"Prometheus saw up == 0 {down - killed_at:.1f} s after the SIGKILL")
        check(True, "Prometheus reports up == 0 for the killed replica")
    victim.start()
    harness.wait_for("writes after the restart",
                     lambda: len(writer.acked) >= acked_before_kill + 90)
    writer.finish()

    after_kill = [a for a in writer.acked if a[0] > killed_at]
    check(len(after_kill) >= 90, "nginx keeps acknowledging writes after a replica dies",
          f"{len(after_kill)} acknowledged after the kill, {writer.refused} refused in all")
    check(writer.refused <= 3, "at most the writes in flight at the kill are refused",
          f"{writer.refused} refused")

    def all_present():
        return all(has_memory(r, memory_id) for r in c.replicas for _, memory_id, _ in writer.acked)

    harness.wait_for("every acknowledged write on every replica, the restarted one too",
                     all_present)
    check(True, "no acknowledged write is lost, and the restarted replica caught up",
          f"{len(writer.acked)} writes")
    # The restarted replica also sees writes made after it came back, through the change log.
    status, _, body = c.replicas[0].server.request("POST", "/memories",
                                                   {"content": fact(19_999)})
    check(status == 200, "a write on replica 0 after the restart", str(body))
    if status == 200:
        harness.wait_for("the restarted replica follows new writes",
                         lambda: found_on(victim, fact(19_999), body["memory_id"]))
    if c.prometheus:
        harness.wait_for("Prometheus sees the restarted replica up again",
                         lambda: c.prometheus.value(f'up{{job="mann",instance="{instance}"}}')
                         == 1.0)


def test_shared_rate_limit(c):
    allowed = limited = other = 0
    for _ in range(RATE_LIMIT * 3):
        status, _ = c.request("GET", "/statistics")
        if status == 200:
            allowed += 1
        elif status == 429:
            limited += 1
        else:
            other += 1
    check(other == 0, "every answer is 200 or 429", f"{other} others")
    check(abs(allowed - RATE_LIMIT) <= RATE_LIMIT * 0.1,
          f"{RATE_LIMIT}/minute holds across three replicas within 10%",
          f"{allowed} allowed, {limited} limited")


def metric(replica, name):
    status, _, text = replica.server.request("GET", "/metrics")
    return cluster.metric_value(text, name) if status == 200 else None


def test_redis_outage(c):
    c.services.stop_redis()
    for i in range(30):  # traffic reaches every replica, and each finds Redis gone
        status, body = c.request("POST", "/search", {"query": fact(i)})
        check(status == 200, "searches are answered while Redis is down", f"{status} {body}")
    status, body = c.request("POST", "/memories", {"content": fact(30_000)})
    check(status == 200, "writes are answered while Redis is down", f"{status} {body}")
    for replica in c.replicas:
        harness.wait_for(f"replica {replica.index}: mann_redis_up 0",
                         lambda r=replica: (r.server.request("POST", "/search", {"query": "x"})
                                            and metric(r, "mann_redis_up") == 0.0))
        # The top-level status is liveness, which Redis does not affect; the checks say it.
        status, _, health = replica.server.request("GET", "/health?detail=1")
        detail = health.get("checks", {}) if isinstance(health, dict) else {}
        redis = [x for x in detail.get("checks", []) if "redis" in x.get("name", "")]
        check(status == 200 and detail.get("status") != "healthy" and redis and
              redis[0].get("status") != "healthy",
              f"replica {replica.index}: /health?detail=1 reports Redis, and not as healthy",
              str(health)[:600])
        status, _, _ = replica.server.request("GET", "/ready")
        check(status == 200, f"replica {replica.index} stays ready without Redis")
    c.services.start_redis()
    for replica in c.replicas:
        harness.wait_for(f"replica {replica.index}: mann_redis_up 1 again",
                         lambda r=replica: (r.server.request("POST", "/search", {"query": "x"})
                                            and metric(r, "mann_redis_up") == 1.0))
    check(True, "every replica recovers by itself once Redis is back")


def test_backup_during_writes(c, mann, root):
    writer = Writer(c, first=40_000, limit=200)
    writer.start()
    harness.wait_for("writes before the backup", lambda: len(writer.acked) >= 20)
    acked_before = list(writer.acked)
    backups = os.path.join(root, "backups")
    url = c.services.postgres_url
    result = subprocess.run(
        [mann, "backup", "--dir", backups, "--set", "storage.backend=postgres",
         "--set", f"storage.postgres_url={url}"],
        capture_output=True, text=True, timeout=harness.TIMEOUT,
        env=harness.hermetic_env(root))
    writer.finish()
    check(result.returncode == 0, "mann backup succeeds while the replicas write",
          result.stdout + result.stderr)
    if result.returncode != 0:
        return
    made = sorted(f for f in os.listdir(backups) if not f.endswith(".json"))
    check(len(made) == 1, "one backup file beside its manifest", str(os.listdir(backups)))
    if not made:
        return

    fresh = url.rsplit("/", 1)[0] + "/mann_restored"
    subprocess.run(["psql", url, "-q", "-c", "CREATE DATABASE mann_restored"], check=True,
                   capture_output=True, timeout=harness.TIMEOUT)
    restore = subprocess.run(
        [mann, "restore", os.path.join(backups, made[0]), "--set", "storage.backend=postgres",
         "--set", f"storage.postgres_url={fresh}"],
        capture_output=True, text=True, timeout=harness.TIMEOUT, env=harness.hermetic_env(root))
    check(restore.returncode == 0, "mann restore into a fresh database succeeds",
          restore.stdout + restore.stderr)
    if restore.returncode != 0:
        return
    srv = harness.Server(mann, root, os.path.join(root, "restored"), "--set",
                         "storage.backend=postgres", "--set", f"storage.postgres_url={fresh}",
                         "--set", "monitoring.enabled=false")
    try:
        missing = [m for _, m, _ in acked_before
                   if srv.request("GET", f"/memories/{urllib.parse.quote(m)}")[0] != 200]
        check(not missing, "the restored database has every write acknowledged before the backup",
              f"{len(missing)} of {len(acked_before)} missing")
        status, _, stats = srv.request("GET", "/statistics")
        check(status == 200, "the restored database serves statistics", str(stats)[:300])
    finally:
        srv.stop()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--mann", required=True)
    parser.add_argument("--prometheus", default="/usr/bin/prometheus")
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="mann-replicas-test-")
    c = None
    try:
        c = cluster.Cluster(args.mann, root, replicas=3, prometheus=args.prometheus, extra=[
            "--set", "rate_limit.enabled=true",
            "--set", f"rate_limit.rules=GET /statistics={RATE_LIMIT}/minute"])
        checks.run_all([
            ("visibility", lambda: test_visibility(c)),
            ("kill under load", lambda: test_kill_under_load(c)),
            ("shared rate limit", lambda: test_shared_rate_limit(c)),
            ("redis outage", lambda: test_redis_outage(c)),
            ("backup during writes", lambda: test_backup_during_writes(c, args.mann, root)),
        ])
    except Exception as e:  # noqa: BLE001 - reported as a failure
        checks.fail(f"cluster: {type(e).__name__}: {e}")
    finally:
        if c is not None:
            c.stop()
        harness.clean_up(checks, root)
    return checks.summary()


if __name__ == "__main__":
    sys.exit(main())

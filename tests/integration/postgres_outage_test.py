#!/usr/bin/env python3
"""PostgreSQL stopped under two running `mann serve` replicas (storage.backend=postgres), as
docs/operations/runbook.md ("PostgreSQL down") promises it behaves, all real and on loopback:

- while it is down: /ready answers 503 naming the database, within READY_BOUND_S; a write
  answers 503 with a JSON error naming PostgreSQL, within WRITE_BOUND_S (never a 500, never a
  hang); /health (liveness) stays 200; a search over what memory holds stays 200 and finds it;
- once it is back on the same port and data directory: /ready is 200 again within
  RECOVER_BOUND_S, writes succeed, and the database holds every acknowledged write exactly once
  and nothing of a refused one; each replica serves every acknowledged write, and none serves a
  refused one; the other replica finds a post-outage write within VISIBLE_BOUND_S.

Two outages: a fast shutdown (pg_ctl -m fast), then a SIGKILL of the postmaster.

Usage: postgres_outage_test.py --mann PATH/TO/mann
Every wait is bounded; the whole test takes about a minute (at most 3).
"""

import argparse
import os
import random
import signal
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

PG_BIN = "/usr/lib/postgresql/15/bin"
CONNECT_TIMEOUT_S = 2   # storage.postgres_connect_timeout of the replicas
READY_BOUND_S = 10.0    # /ready turns 503 within this of the database going away
WRITE_BOUND_S = 3 * CONNECT_TIMEOUT_S + 2.0  # a refused write's answer
RECOVER_BOUND_S = 30.0  # /ready is 200 again within this of the database being back
VISIBLE_BOUND_S = 2.0   # docs/architecture.md, "PostgreSQL and replicas"
CLIENT_TIMEOUT_S = 20   # no request of this test may take longer: a hang fails, not blocks
WORDS = ["amber", "basil", "cedar", "delta", "ember", "fjord", "garnet", "harbor", "indigo",
         "juniper", "kestrel", "lagoon", "meadow", "nectar", "orchid", "pepper", "quartz",
         "raven", "saffron", "tundra", "umber", "violet", "willow", "yarrow", "zephyr",
         "anchor", "bramble", "copper", "dune", "falcon", "glacier", "hazel", "iris", "jasper",
         "lantern", "marble", "nutmeg", "otter", "pebble", "quill", "river", "sparrow",
         "thistle", "walnut", "badger", "canyon", "dahlia", "fennel", "granite", "heron"]


def fact(i):
    """Words of its own, so the write head adds it (no near-duplicate of another fact) and a
    search for it finds it first."""
    words = random.Random(i).sample(WORDS, 4)
    return f"{words[0]} {words[1]} {words[2]} {words[3]} {i * 7919}"


def as_pg_user(argv):
    return ["runuser", "-u", "postgres", "--", *argv] if os.getuid() == 0 else argv


class Database:
    """The PostgreSQL that cluster.Services started, stopped and started again on its port."""

    def __init__(self, services):
        self.services = services
        self.data = os.path.join(services.dir, "postgres", "data")
        self.socket_dir = os.path.join(services.dir, "postgres")
        self.url = services.postgres_url
        self.port = int(urllib.parse.urlparse(self.url).port)

    def postmaster_pid(self):
        try:
            with open(os.path.join(self.data, "postmaster.pid")) as f:
                return int(f.readline().strip())
        except (OSError, ValueError):
            return None

    def stop_fast(self):
        subprocess.run(as_pg_user([f"{PG_BIN}/pg_ctl", "-D", self.data, "-m", "fast", "-w",
                                   "-t", "30", "stop"]),
                       check=True, timeout=harness.TIMEOUT, capture_output=True)

    def kill(self):
        """SIGKILL of the postmaster: no shutdown checkpoint; its backends notice and exit."""
        pid = self.postmaster_pid()
        os.kill(pid, signal.SIGKILL)
        harness.wait_for("the killed postmaster to be gone",
                         lambda: not os.path.exists(f"/proc/{pid}") or
                         open(f"/proc/{pid}/stat").read().split(") ")[1][0] == "Z")
        # Its backends hold the shared memory until they exit; a start before fails.
        harness.wait_for("the killed postmaster's backends to exit", lambda: not any(
            self._runs_in_data_dir(p) for p in os.listdir("/proc") if p.isdigit()))

    def _runs_in_data_dir(self, pid):
        """A live process of this cluster: every PostgreSQL process works in its data dir."""
        try:
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().split(") ")[1][0]
            return state != "Z" and os.readlink(f"/proc/{pid}/cwd") == self.data
        except (OSError, IndexError):
            return False

    def start(self):
        """On the same port and data directory, as scripts/services.sh started it."""
        def started():
            result = subprocess.run(
                as_pg_user([f"{PG_BIN}/pg_ctl", "-D", self.data, "-l",
                            os.path.join(self.socket_dir, "server.log"), "-w", "-t", "30",
                            "-o", f"-c listen_addresses=127.0.0.1 -p {self.port} "
                            f"-k {self.socket_dir} -c fsync=off", "start"]),
                timeout=harness.TIMEOUT, capture_output=True, text=True)
            return result.returncode == 0
        harness.wait_for("PostgreSQL to start again", started)

    def query(self, sql):
        """Rows of `sql` as lists of text, through psql."""
        result = subprocess.run(["psql", self.url, "-X", "-q", "-A", "-t", "-F", "\t",
                                 "-c", sql], check=True, capture_output=True, text=True,
                                timeout=harness.TIMEOUT)
        return [line.split("\t") for line in result.stdout.splitlines() if line]


class Replica:
    def __init__(self, mann, root, index, url):
        self.index = index
        self.server = harness.Server(
            mann, root, os.path.join(root, f"replica-{index}"),
            "--set", "storage.backend=postgres", "--set", f"storage.postgres_url={url}",
            "--set", f"storage.postgres_connect_timeout={CONNECT_TIMEOUT_S}",
            "--set", "monitoring.enabled=false")

    def request(self, method, path, body=None):
        """(status, parsed body, seconds taken); status 0 for a connection error or a timeout."""
        return harness.timed_request(self.server.port, method, path, body, CLIENT_TIMEOUT_S)

    def write(self, content):
        return self.request("POST", "/memories", {"content": content})

    def search_finds(self, content, memory_id):
        status, body, _ = self.request("POST", "/search", {"query": content, "top_k": 3})
        return status == 200 and any(h.get("memory_id") == memory_id for h in body)

    def search_contents(self, content):
        """The contents of the top hits of a search for `content`, or None on an error."""
        status, body, _ = self.request("POST", "/search", {"query": content, "top_k": 3})
        return [h.get("content") for h in body] if status == 200 else None

    def has(self, memory_id):
        return self.request("GET", f"/memories/{urllib.parse.quote(memory_id)}")[0] == 200


class Ledger:
    """What the replicas acknowledged, and what they refused."""

    def __init__(self):
        self.acked = {}     # memory_id -> content
        self.refused = []   # contents of writes answered with an error
        self.unknown = []   # contents of writes whose commit was cut off: outcome unknown
        self.next = 0

    def write(self, replica):
        content = fact(self.next)
        self.next += 1
        status, body, took = replica.write(content)
        if status == 200 and isinstance(body, dict) and body.get("memory_id"):
            check(body.get("action") == "ADD" and body["memory_id"] not in self.acked,
                  "each fact is added as a memory of its own", str(body)[:300])
            self.acked[body["memory_id"]] = content
        else:
            self.refused.append(content)
        return status, body, took


class Background(threading.Thread):
    """Writes on both replicas in turn, all through an outage: its writes are in flight when
    PostgreSQL goes away and when it comes back."""

    def __init__(self, replicas, first):
        super().__init__(daemon=True)
        self.replicas = replicas
        self.next = first
        self.acked = {}
        self.refused = []
        self.unknown = []
        self.odd = []  # answers other than 200 and 503
        self.acked_at = []
        self.stop_event = threading.Event()

    def run(self):
        deadline = time.monotonic() + 90
        turn = 0
        while not self.stop_event.is_set() and time.monotonic() < deadline:
            content = fact(self.next)
            self.next += 1
            status, body, took = self.replicas[turn % 2].write(content)
            turn += 1
            detail = body.get("detail", "") if isinstance(body, dict) else str(body)
            if status == 200 and isinstance(body, dict) and body.get("memory_id"):
                self.acked[body["memory_id"]] = content
                self.acked_at.append(time.monotonic())
            elif status == 503 and "outcome is unknown" in detail:
                self.unknown.append(content)
            elif status == 503:
                self.refused.append(content)
            else:
                self.odd.append(f"{status} after {took:.1f} s: {str(body)[:200]}")
            time.sleep(0.02)

    def acked_since(self, t):
        return sum(1 for a in list(self.acked_at) if a > t)

    def finish(self, how, ledger):
        self.stop_event.set()
        self.join(timeout=harness.TIMEOUT)
        check(not self.odd, f"{how}: writes in flight through the outage answer 200 or 503, "
              f"never a 500 or a hang", "; ".join(self.odd[:3]))
        print(f"{how}: writes in flight: {len(self.acked)} acknowledged, {len(self.refused)} "
              f"refused, {len(self.unknown)} with an unknown outcome")
        ledger.acked.update(self.acked)
        ledger.refused.extend(self.refused)
        ledger.unknown.extend(self.unknown)


def wait_ready(replica, want, bound):
    """Seconds until /ready answers `want` (at most `bound`), and its last answer."""
    started = time.monotonic()
    last = None
    while time.monotonic() - started < bound:
        status, body, _ = replica.request("GET", "/ready")
        last = (status, body)
        if status == want:
            return time.monotonic() - started, last
        time.sleep(0.2)
    return None, last


def during_outage(how, db, replicas, ledger):
    """The checks while PostgreSQL is down; returns the memory ids searched for."""
    a, b = replicas
    for r in replicas:
        took, (status, body) = wait_ready(r, 503, READY_BOUND_S)
        check(took is not None, f"{how}: replica {r.index} /ready is 503 within "
              f"{READY_BOUND_S} s", f"last {status} {body}")
        detail = body.get("detail", "") if isinstance(body, dict) else str(body)
        check("PostgreSQL" in detail and "storage unavailable" in detail,
              f"{how}: replica {r.index} /ready names the database", detail[:300])
        if took is not None:
            print(f"{how}: replica {r.index} /ready 503 after {took:.2f} s")

    for r in replicas:
        for _ in range(2):
            status, body, took = ledger.write(r)
            detail = body.get("detail", "") if isinstance(body, dict) else str(body)
            check(status == 503, f"{how}: a write on replica {r.index} answers 503",
                  f"{status} {str(body)[:300]}")
            check("PostgreSQL" in detail, f"{how}: the 503 names PostgreSQL", detail[:300])
            check(took <= WRITE_BOUND_S, f"{how}: a refused write answers within "
                  f"{WRITE_BOUND_S} s", f"{took:.2f} s")
            print(f"{how}: write on replica {r.index} refused in {took:.2f} s: {detail[:160]}")

    for r in replicas:
        status, body, _ = r.request("GET", "/health")
        check(status == 200 and isinstance(body, dict) and body.get("status") == "healthy",
              f"{how}: replica {r.index} /health (liveness) stays 200", f"{status} {body}")
        status, body, _ = r.request("GET", "/health?detail=1")
        report = body.get("checks", {}) if isinstance(body, dict) else {}
        storage = [c for c in report.get("checks", []) if c.get("name") == "storage"]
        check(status == 200 and storage and storage[0].get("status") != "healthy",
              f"{how}: replica {r.index} /health?detail=1 reports storage as not healthy",
              str(body)[:400])

    # A replica whose reload after a refused commit failed too keeps serving what it held,
    # the refused change included, until the database is back (docs/architecture.md).
    if ledger.refused:
        kept = ledger.refused[-1] in (b.search_contents(ledger.refused[-1]) or [])
        print(f"{how}: a refused write is {'still' if kept else 'not'} found on the replica "
              f"that refused it while the database is down")

    # Memory still serves what it held.
    for memory_id, content in list(ledger.acked.items())[:5]:
        for r in replicas:
            status, _, _ = r.request("POST", "/search", {"query": content, "top_k": 3})
            check(status == 200, f"{how}: replica {r.index} search answers 200")
            check(r.search_finds(content, memory_id),
                  f"{how}: replica {r.index} search finds an acknowledged write",
                  f"{memory_id} {content}")


def after_outage(how, db, replicas, ledger):
    a, b = replicas
    for r in replicas:
        took, (status, body) = wait_ready(r, 200, RECOVER_BOUND_S)
        check(took is not None, f"{how}: replica {r.index} /ready is 200 again within "
              f"{RECOVER_BOUND_S} s", f"last {status} {body}")
        if took is not None:
            print(f"{how}: replica {r.index} ready again {took:.2f} s after the restart")

    # Writes succeed again, on both; each is visible on the other replica within the bound.
    delays = []
    for i in range(6):
        writer, other = (a, b) if i % 2 == 0 else (b, a)
        status, body, _ = ledger.write(writer)
        check(status == 200, f"{how}: a write on replica {writer.index} succeeds after the "
              f"restart", f"{status} {str(body)[:300]}")
        if status != 200:
            continue
        acked = time.monotonic()
        seen = harness.wait_for(
            f"{how}: the write visible on replica {other.index}",
            lambda: other.search_finds(body_content(ledger, body), body["memory_id"]) and
            time.monotonic())
        delays.append(seen - acked)
    if delays:
        check(max(delays) <= VISIBLE_BOUND_S,
              f"{how}: a post-outage write is found on the other replica within "
              f"{VISIBLE_BOUND_S} s", f"worst {max(delays):.3f} s")
        print(f"{how}: write-to-visible on the other replica after the restart: "
              f"max {max(delays) * 1e3:.0f} ms over {len(delays)}")
    check_database(how, db, ledger)

    # Every replica serves every acknowledged write and no refused one (a replica that kept a
    # refused change in memory through the outage reloads it away once the database is back).
    def consistent():
        for r in replicas:
            if not all(r.has(m) for m in ledger.acked):
                return False
            for content in ledger.refused:
                found = r.search_contents(content)
                if found is None or content in found:
                    return False
        return True
    try:
        harness.wait_for(f"{how}: every replica serves what the database holds", consistent)
        check(True, f"{how}: each replica serves every acknowledged write and no refused one")
    except TimeoutError as e:
        check(False, f"{how}: each replica serves every acknowledged write and no refused one",
              str(e))


def body_content(ledger, body):
    return ledger.acked[body["memory_id"]]


def check_database(how, db, ledger):
    """Every acknowledged write once, every refused one nowhere (entries nor history)."""
    rows = db.query("SELECT id, content FROM entries")
    stored = {}
    for memory_id, content in rows:
        stored.setdefault(content, []).append(memory_id)
    missing = [m for m, c in ledger.acked.items() if m not in stored.get(c, [])]
    check(not missing, f"{how}: the database holds every acknowledged write",
          f"{len(missing)} of {len(ledger.acked)} missing")
    doubled = [c for c, ids in stored.items() if len(ids) > 1]
    check(not doubled, f"{how}: no write is stored twice", str(doubled[:3]))
    present = [c for c in ledger.refused if c in stored]
    check(not present, f"{how}: no refused write is in the database", str(present[:3]))
    unsure = [c for c in ledger.unknown if len(stored.get(c, [])) > 1]
    check(not unsure, f"{how}: a write with an unknown outcome is stored at most once",
          str(unsure[:3]))
    history = {c for (c,) in db.query("SELECT content FROM history")}
    half = [c for c in ledger.refused if c in history]
    check(not half, f"{how}: no refused write left a history row", str(half[:3]))


def scenario(how, stop, db, replicas, ledger, first):
    writer = Background(replicas, first)
    writer.start()
    try:
        harness.wait_for(f"{how}: writes before the outage", lambda: len(writer.acked) >= 5)
        stop()
        during_outage(how, db, replicas, ledger)
        db.start()
        restarted = time.monotonic()
        harness.wait_for(f"{how}: writes in flight succeed again after the restart",
                         lambda: writer.acked_since(restarted) >= 5)
    finally:
        writer.finish(how, ledger)
    after_outage(how, db, replicas, ledger)


def test_outages(mann, root):
    services = cluster.Services(root)
    replicas = []
    try:
        db = Database(services)
        replicas = [Replica(mann, root, i, db.url) for i in range(2)]
        a, b = replicas
        ledger = Ledger()
        for i in range(20):
            status, body, _ = ledger.write(replicas[i % 2])
            check(status == 200, "a write before the outage succeeds", f"{status} {body}")
        for memory_id, content in list(ledger.acked.items())[:6]:
            for r in replicas:
                harness.wait_for(f"replica {r.index} finds {memory_id} before the outage",
                                 lambda r=r, m=memory_id, c=content: r.search_finds(c, m))
        check(True, "both replicas find the writes before the outage")

        checks.scenario("fast shutdown", scenario, "fast shutdown", db.stop_fast, db,
                        replicas, ledger, 100_000)
        checks.scenario("postmaster SIGKILL", scenario, "postmaster SIGKILL", db.kill, db,
                        replicas, ledger, 200_000)
        if db.postmaster_pid() is None:  # a failed scenario may have left it down
            db.start()
        print(f"{len(ledger.acked)} writes acknowledged, {len(ledger.refused)} refused, "
              f"{len(ledger.unknown)} with an unknown outcome")
    finally:
        for r in replicas:
            try:
                r.server.stop()
            except Exception:  # noqa: BLE001 - the services must still be stopped
                pass
        services.stop()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--mann", required=True)
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="mann-pg-outage-test-")
    started = time.monotonic()
    try:
        checks.scenario("outages", test_outages, args.mann, root)
    finally:
        harness.clean_up(checks, root)
    print(f"postgres outage test took {time.monotonic() - started:.1f} s")
    return checks.summary()


if __name__ == "__main__":
    sys.exit(main())

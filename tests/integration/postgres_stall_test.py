#!/usr/bin/env python3
"""A PostgreSQL that stops answering but keeps its connections (the postmaster and every backend
SIGSTOPped: the kernel still acknowledges, so no TCP timeout fires) under a running `mann serve`
(storage.backend=postgres), as docs/operations/runbook.md ("PostgreSQL stalled") promises:

- while it is stopped: /health (liveness) answers 200 within HEALTH_BOUND_S, every time, and a
  read of a stored memory 200 within READ_BOUND_S; /ready answers 503 within READY_BOUND_S and a
  write answers 503 within WRITE_BOUND_S (the store's watchdog shuts a call's connection down
  past connect_timeout + statement_timeout + 1 s);
- once it is continued (SIGCONT): /ready is 200 again within RECOVER_BOUND_S, a write succeeds
  and is read back.

Usage: postgres_stall_test.py --mann PATH/TO/mann
Every wait is bounded; the whole test takes about a minute (at most 3).
"""

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

import cluster
import harness

checks = harness.Checks()
check = checks.check

CONNECT_TIMEOUT_S = 2    # storage.postgres_connect_timeout of the server
STATEMENT_TIMEOUT_S = 5  # storage.postgres_statement_timeout of the server (default 30)
CALL_BOUND_S = CONNECT_TIMEOUT_S + STATEMENT_TIMEOUT_S + 1  # the watchdog's bound on one call
HEALTH_BOUND_S = 1.0
READY_BOUND_S = CALL_BOUND_S + 3.0
# The commit's bound, then the reload after the failed commit: a connect or two that the stopped
# postmaster never completes (the writer may prune the change log on the way).
WRITE_BOUND_S = CALL_BOUND_S + 2 * CONNECT_TIMEOUT_S + 3.0
# A read waits at most for the reload after a failed commit (a connect that never completes).
READ_BOUND_S = 2 * CONNECT_TIMEOUT_S + 2.0
RECOVER_BOUND_S = 30.0
CLIENT_TIMEOUT_S = 90    # no request of this test may take longer: a hang fails, not blocks


def request(port, method, path, body=None, timeout=CLIENT_TIMEOUT_S):
    """harness.timed_request with this test's client timeout."""
    return harness.timed_request(port, method, path, body, timeout)


def postgres_pids(services):
    """The postmaster (from its PID file) and its children."""
    with open(os.path.join(services.dir, "postgres", "data", "postmaster.pid")) as f:
        postmaster = int(f.readline().strip())
    children = subprocess.run(["pgrep", "-P", str(postmaster)], capture_output=True, text=True,
                              timeout=harness.TIMEOUT).stdout.split()
    return [postmaster] + [int(p) for p in children]


def signal_all(pids, sig):
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def in_thread(fn, *args):
    """Starts fn(*args) in a thread; returns (thread, a one-item list that receives its result)."""
    out = []
    t = threading.Thread(target=lambda: out.append(fn(*args)), daemon=True)
    t.start()
    return t, out


def stall_and_recover(mann, root):
    services = cluster.Services(root)
    server = None
    stopped = []
    try:
        server = harness.Server(
            mann, root, os.path.join(root, "data"),
            "--set", "storage.backend=postgres",
            "--set", f"storage.postgres_url={services.postgres_url}",
            "--set", f"storage.postgres_connect_timeout={CONNECT_TIMEOUT_S}",
            "--set", f"storage.postgres_statement_timeout={STATEMENT_TIMEOUT_S}",
            "--set", "monitoring.enabled=false")
        port = server.port
        status, _, _ = request(port, "GET", "/ready")
        check(status == 200, "/ready is 200 before the stall", f"got {status}")
        status, body, _ = request(port, "POST", "/memories",
                                  {"content": "the kettle is in the blue cupboard"})
        check(status == 200, "a write succeeds before the stall", f"{status} {body}")
        first_id = body.get("memory_id") if isinstance(body, dict) else None

        stopped = postgres_pids(services)
        signal_all(stopped, signal.SIGSTOP)
        stalled_at = time.monotonic()
        ready_thread, ready = in_thread(request, port, "GET", "/ready")
        write_thread, write = in_thread(request, port, "POST", "/memories",
                                        {"content": "the spare key is under the red pot"})

        # Liveness the whole time the two calls above are held up, and a little past it; reads
        # answer from memory (waiting at most for a reload after the failed commit).
        slowest, failed = 0.0, []
        slowest_read, failed_reads = 0.0, []
        while (ready_thread.is_alive() or write_thread.is_alive()) and \
                time.monotonic() - stalled_at < WRITE_BOUND_S + 10:
            status, body, took = request(port, "GET", "/health", timeout=HEALTH_BOUND_S + 4)
            slowest = max(slowest, took)
            if status != 200 or took > HEALTH_BOUND_S:
                failed.append(f"{status} after {took:.2f} s: {str(body)[:200]}")
            status, body, took = request(port, "GET", f"/memories/{first_id}",
                                         timeout=READ_BOUND_S + 4)
            slowest_read = max(slowest_read, took)
            if status != 200 or took > READ_BOUND_S:
                failed_reads.append(f"{status} after {took:.2f} s: {str(body)[:200]}")
            time.sleep(0.25)
        check(not failed, f"/health answers 200 within {HEALTH_BOUND_S} s during the stall",
              "; ".join(failed[:5]))
        print(f"slowest /health during the stall: {slowest * 1000:.0f} ms")
        check(not failed_reads, f"a read answers 200 within {READ_BOUND_S} s during the stall",
              "; ".join(failed_reads[:5]))
        print(f"slowest GET /memories/ID during the stall: {slowest_read * 1000:.0f} ms")

        ready_thread.join(timeout=CLIENT_TIMEOUT_S)
        write_thread.join(timeout=CLIENT_TIMEOUT_S)
        if ready:
            status, body, took = ready[0]
            print(f"/ready during the stall: {status} after {took:.1f} s")
            check(status == 503 and took <= READY_BOUND_S,
                  f"/ready answers 503 within {READY_BOUND_S} s during the stall",
                  f"{status} after {took:.1f} s: {str(body)[:300]}")
            check("did not answer within" in str(body),
                  "/ready says PostgreSQL did not answer in time", str(body)[:300])
        else:
            check(False, "/ready answered during the stall")
        if write:
            status, body, took = write[0]
            print(f"POST /memories during the stall: {status} after {took:.1f} s")
            check(status == 503 and took <= WRITE_BOUND_S,
                  f"a write answers 503 within {WRITE_BOUND_S} s during the stall",
                  f"{status} after {took:.1f} s: {str(body)[:300]}")
        else:
            check(False, "the write answered during the stall")

        signal_all(stopped, signal.SIGCONT)
        stopped = []
        continued_at = time.monotonic()
        while time.monotonic() - continued_at < RECOVER_BOUND_S:
            status, _, _ = request(port, "GET", "/ready")
            if status == 200:
                break
            time.sleep(0.5)
        recovered = time.monotonic() - continued_at
        print(f"/ready 200 again {recovered:.1f} s after SIGCONT")
        check(status == 200, f"/ready is 200 within {RECOVER_BOUND_S} s of SIGCONT",
              f"last {status}")
        status, body, _ = request(port, "POST", "/memories",
                                  {"content": "the bicycle pump hangs in the garage"})
        check(status == 200, "a write succeeds after the stall", f"{status} {body}")
        memory_id = body.get("memory_id") if isinstance(body, dict) else None
        status, got, _ = request(port, "GET", f"/memories/{memory_id}")
        check(status == 200 and isinstance(got, dict) and "bicycle" in got.get("content", ""),
              "the write after the stall reads back", f"{status} {str(got)[:300]}")
    finally:
        if stopped:
            signal_all(stopped, signal.SIGCONT)
        if server is not None:
            server.stop()
        services.stop()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--mann", required=True)
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="mann-pgstall-")
    checks.scenario("stall and recover", stall_and_recover, os.path.abspath(args.mann), root)
    harness.clean_up(checks, root)
    return checks.summary()


if __name__ == "__main__":
    sys.exit(main())

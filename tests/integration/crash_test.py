#!/usr/bin/env python3
"""Durability under SIGKILL: a write acknowledged by mann must survive the process being killed
at any moment, and the store must stay intact.

`mann debug write-stream` adds memories one after another and prints `ack <id>` (flushed) only
after each add returned, i.e. after its commit was durable. This test kills it at seeded random
moments several times, restarting on the same data directory, then checks that every
acknowledged id is present and that the store passes its integrity check.

Usage: crash_test.py --mann PATH/TO/mann [--seed N]
Exit status 0 when every check passed; otherwise the failed checks are listed.
"""

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import harness

TIMEOUT = harness.TIMEOUT
BUDGET = 60  # seconds for the kill rounds together

checks = harness.Checks()
check = checks.check


def env_for(root):
    # The capacity is far above what the rounds can write, so eviction never removes an acked
    # entry.
    return harness.hermetic_env(root, MANN_DATA_DIR=os.path.join(root, "data"),
                                MANN_MAX_MEMORY_CAPACITY="10000000")


def kill_round(mann, env, delay):
    """Starts a writer, kills it after `delay` seconds; returns (acked ids, exit status)."""
    proc = subprocess.Popen([mann, "debug", "write-stream", "--count", "10000000"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    chunks = []
    reader = threading.Thread(target=lambda: chunks.append(proc.stdout.read()), daemon=True)
    reader.start()
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    code = proc.wait(TIMEOUT)
    reader.join(TIMEOUT)
    err = proc.stderr.read().decode(errors="replace")
    acked = []
    # Only whole lines count: a line cut by the kill was never fully acknowledged.
    for line in b"".join(chunks).decode(errors="replace").split("\n")[:-1]:
        if line.startswith("ack "):
            acked.append(line[4:])
    return acked, code, err


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--mann", required=True)
    parser.add_argument("--seed", type=int, default=20251203)
    args = parser.parse_args()
    mann = os.path.abspath(args.mann)
    rng = random.Random(args.seed)
    root = tempfile.mkdtemp(prefix="mann-crash-")
    try:
        env = env_for(root)
        rounds = rng.randint(5, 8)
        acked = []
        killed_mid_stream = 0
        started = time.monotonic()
        for i in range(rounds):
            if time.monotonic() - started > BUDGET:
                break
            # Early kills land during start-up (opening, loading); later ones mid-stream.
            delay = rng.uniform(0.05, 0.3) if i == 0 else rng.uniform(0.3, 2.0)
            ids, code, err = kill_round(mann, env, delay)
            check(code == -signal.SIGKILL, f"round {i}: the writer was killed, not finished",
                  f"exit {code}, stderr {err[-300:]!r}")
            check("error" not in err.lower(), f"round {i}: the writer reported no error",
                  err[-300:])
            if ids:
                killed_mid_stream += 1
            acked += ids
        check(len(acked) > 0 and killed_mid_stream >= 3,
              "writes were acknowledged and interrupted in several rounds",
              f"{len(acked)} acks, {killed_mid_stream} rounds interrupted mid-stream")

        proc = subprocess.run([mann, "debug", "check"], env=env, capture_output=True,
                              timeout=TIMEOUT)
        check(proc.returncode == 0 and proc.stdout.decode().strip() == "ok",
              "the store passes its integrity check after the kills",
              f"exit {proc.returncode} {proc.stdout!r} {proc.stderr!r}")

        proc = subprocess.run([mann, "memory", "export", "--all"], env=env, capture_output=True,
                              timeout=TIMEOUT)
        check(proc.returncode == 0, "export after the kills exits 0", proc.stderr.decode())
        stored = {json.loads(line)["id"] for line in proc.stdout.decode().splitlines() if line}
        lost = [i for i in acked if i not in stored]
        check(not lost, "every acknowledged write survived SIGKILL",
              f"{len(lost)} of {len(acked)} lost, e.g. {lost[:3]}")
        check(len(set(acked)) == len(acked), "acknowledged ids are unique")
        print(f"{rounds} kill rounds, {len(acked)} acknowledged writes, {len(stored)} stored")
    except Exception as e:  # noqa: BLE001 - a hang or crash of the harness fails the suite
        checks.fail(f"{type(e).__name__}: {e}")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return checks.summary()


if __name__ == "__main__":
    sys.exit(main())

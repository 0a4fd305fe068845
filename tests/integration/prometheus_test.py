#!/usr/bin/env python3
"""`mann serve`'s /metrics as Prometheus itself sees it: promtool's linter passes the exposition,
then a real Prometheus (the Debian package's /usr/bin/prometheus, on loopback only, its data in a
temporary directory) scrapes the server every second, and its query API returns the target as
up, the request counter with exactly the requests made to /memories (by method and status),
the request duration histogram's count, the bank's utilization and the process's resident
memory, each checked against what the server itself reports.

Usage: prometheus_test.py --mann PATH/TO/mann [--prometheus PATH] [--promtool PATH]
Exit status 0 when every check passed; otherwise the failed checks are listed.
"""

import argparse
import os
import subprocess
import sys
import tempfile

import harness

TIMEOUT = harness.TIMEOUT
checks = harness.Checks()
check = checks.check
# What utilization is measured against; small, so two memories read as a clear 0.5.
MEMORY_SIZE = 4


def test_promtool(srv, promtool):
    status, body = harness.http_get(srv.port, "/metrics")
    check(status == 200 and "http_requests_total" in body, "GET /metrics answers",
          f"{status} {body[:200]!r}")
    lint = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True,
                          text=True, timeout=TIMEOUT)
    check(lint.returncode == 0, "promtool check metrics passes the exposition",
          f"exit {lint.returncode}:\n{lint.stdout}{lint.stderr}")


def test_scrape(srv, prometheus_binary, root):
    prom = harness.Prometheus(prometheus_binary, root, [srv.port])
    try:
        # The target is found and scraped.
        up = harness.wait_for('up{job="mann"} == 1', lambda: prom.query('up{job="mann"}'))
        check(len(up) == 1 and up[0][1] == 1.0 and
              up[0][0].get("instance") == f"127.0.0.1:{srv.port}",
              "Prometheus scrapes mann: up == 1 for its address", str(up))

        # Requests to /memories: two facts, the first again (unchanged), one invalid body, one
        # list. A scrape after them must count exactly these, per method and status.
        made = []
        for body in ({"content": "My sister Lan lives in Da Nang"},
                     {"content": "The office wifi password is blue42"},
                     {"content": "My sister Lan lives in Da Nang"},
                     {"content": 7}):
            made.append(("POST", srv.request("POST", "/memories", body)[0]))
        made.append(("GET", srv.request("GET", "/memories")[0]))
        check(made == [("POST", 200)] * 3 + [("POST", 422), ("GET", 200)],
              "the requests to /memories get the statuses expected", str(made))

        total = 'sum(http_requests_total{job="mann",route="/memories"})'
        seen = harness.wait_for(f"{total} == {len(made)}",
                        lambda: prom.value(total) == len(made) and prom.value(total))
        check(seen == len(made), "the request counter, once scraped, equals the requests made",
              str(seen))
        series = {(m.get("method"), m.get("status")): v for m, v in
                  prom.query('http_requests_total{job="mann",route="/memories"}')}
        check(series == {("POST", "200"): 3.0, ("POST", "422"): 1.0, ("GET", "200"): 1.0},
              "http_requests_total{route=\"/memories\"} has one series per method and status",
              str(series))
        count = prom.value('http_request_duration_seconds_count'
                           '{job="mann",route="/memories",method="POST"}')
        check(count == 4.0, "the duration histogram counted the four POSTs", str(count))
        p_max = prom.value('histogram_quantile(1, sum by (le) (rate(http_request_duration_seconds'
                           '_bucket{job="mann",route="/memories"}[1m])))')
        check(p_max is None or p_max >= 0, "the histogram's buckets make a quantile", str(p_max))

        # The bank: two memories of MEMORY_SIZE; the gauge must agree with /health.
        util = harness.wait_for("mann_memory_utilization of 0.5",
                        lambda: prom.query('mann_memory_utilization{job="mann"}'))
        _, _, health = srv.request("GET", "/health")
        check(len(util) == 1 and util[0][0].get("namespace") == "default" and
              abs(util[0][1] - 2 / MEMORY_SIZE) < 1e-9 and
              abs(util[0][1] - health["memory_utilization"]) < 1e-9,
              "mann_memory_utilization{namespace=\"default\"} is 2 memories over memory_size, as "
              "/health says", f"{util} health {health}")
        memories = prom.value('mann_memories{job="mann",namespace="default"}')
        check(memories == 2.0, "mann_memories counts the two memories", str(memories))

        # The process: resident memory as the kernel reports it, within a factor of two (it
        # moves between the scrape and this read), and of a plausible size.
        rss = harness.wait_for("process_resident_memory_bytes",
                       lambda: prom.value('process_resident_memory_bytes{job="mann"}'))
        with open(f"/proc/{srv.proc.pid}/status") as f:
            kernel = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))
        check(1 << 20 < rss < 4 << 30 and kernel / 2 <= rss <= kernel * 2,
              "process_resident_memory_bytes is the server's resident memory",
              f"scraped {rss:.0f}, /proc says {kernel}")
    finally:
        check(prom.stop() == 0, "Prometheus stops on SIGTERM with exit 0")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--mann", required=True)
    parser.add_argument("--prometheus", default="/usr/bin/prometheus")
    parser.add_argument("--promtool", default="/usr/bin/promtool")
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="mann-prometheus-test-")
    try:
        for tool in (args.prometheus, args.promtool):
            if not os.access(tool, os.X_OK):
                checks.fail(f"{tool} is missing: install the prometheus package "
                            "(scripts/setup.sh does)")
        srv = None
        if not checks.failures:
            try:
                srv = harness.Server(args.mann, root, os.path.join(root, "data"), "--set",
                                     f"memory.memory_size={MEMORY_SIZE}")
                checks.scenario("promtool", test_promtool, srv, args.promtool)
                checks.scenario("scrape", test_scrape, srv, args.prometheus, root)
            except Exception as e:  # noqa: BLE001 - reported as a failure
                checks.fail(f"server: {type(e).__name__}: {e}")
            finally:
                if srv is not None:
                    check(srv.stop() == 0, "mann serve stops with exit 0")
    finally:
        harness.clean_up(checks, root)
    return checks.summary()


if __name__ == "__main__":
    sys.exit(main())

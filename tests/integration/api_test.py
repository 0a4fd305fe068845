#!/usr/bin/env python3
"""Drives the real `mann serve` over loopback HTTP: every endpoint's happy path and JSON fields,
every error status (400, 404, 405 with Allow, 413, 415, 422 with one item per bad field), the
write head's statuses, namespace isolation through user_id, /metrics, and shutdown on SIGTERM
(readiness fails at once, a request in flight completes, exit 0, every acknowledged write is
there after a restart).

Usage: api_test.py --mann PATH/TO/mann
Exit status 0 when every check passed; otherwise the failed checks are listed.
"""

import argparse
import http.client
import json
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time

import harness

TIMEOUT = harness.TIMEOUT
Server = harness.Server
free_port = harness.free_port
raw_exchange = harness.raw_exchange
read_response = harness.read_response
checks = harness.Checks()
check = checks.check
HIT_FIELDS = {"memory_id", "content", "context", "importance_weight", "usage_count", "tags",
              "timestamp", "similarity", "attention_weight"}


def locs(body):
    return {(tuple(item["loc"]), item["type"]) for item in body.get("detail", [])}


def test_endpoints(srv):
    code, _, health = srv.request("GET", "/health")
    check(code == 200 and set(health) >= {"status", "timestamp", "memory_count",
                                          "memory_utilization", "uptime", "version"},
          "GET /health answers the original fields", str(health))
    code, _, ready = srv.request("GET", "/ready")
    check(code == 200, "GET /ready is 200 while serving", str(ready))

    # The write head: created, then unchanged for the same content, updated for a near one.
    code, _, a = srv.request("POST", "/memories", {"content": "My sister Lan lives in Da Nang",
                                                   "tags": ["family"], "importance_weight": 2,
                                                   "metadata": {"src": "test"}})
    check(code == 200 and a.get("status") == "created" and a.get("memory_id"),
          "POST /memories creates", str(a))
    mid = a.get("memory_id")
    code, _, b = srv.request("POST", "/memories", {"content": "My sister Lan lives in Da Nang"})
    check(code == 200 and b.get("status") == "unchanged" and b.get("memory_id") == mid,
          "the same content again is unchanged", str(b))
    code, _, c = srv.request("POST", "/memories",
                             {"content": "My sister Lan lives in Da Nang now"})
    check(code == 200 and c.get("status") in ("updated", "created"),
          "a near duplicate is merged or added", str(c))
    code, _, d = srv.request("POST", "/memories", {"content": "The office wifi password is blue42",
                                                   "context": "work"})
    check(code == 200 and d.get("status") == "created", "a different fact is created", str(d))

    code, _, hits = srv.request("POST", "/search", {"query": "where does Lan live", "top_k": 3})
    check(code == 200 and isinstance(hits, list) and hits and hits[0]["memory_id"] == mid,
          "POST /search finds what was added, best first", str(hits))
    check(bool(hits) and set(hits[0]) == HIT_FIELDS,
          "search hits carry exactly the original fields", str(hits[:1]))

    code, _, got = srv.request("GET", f"/memories/{mid}")
    check(code == 200 and got.get("content", "").startswith("My sister Lan") and
          got.get("tags") == ["family"] and got.get("metadata") == {"src": "test"},
          "GET /memories/{id} returns the entry", str(got))
    code, _, upd = srv.request("PUT", f"/memories/{mid}",
                               {"memory_id": mid, "importance_weight": 3})
    check(code == 200 and upd.get("status") == "updated", "PUT /memories/{id} updates", str(upd))
    code, _, hist = srv.request("GET", f"/memories/{mid}/history")
    check(code == 200 and len(hist.get("history", [])) >= 2,
          "GET /memories/{id}/history lists the versions", str(hist))
    code, _, page = srv.request("GET", "/memories?limit=1")
    check(code == 200 and len(page.get("memories", [])) == 1 and page.get("next_cursor"),
          "GET /memories pages with a cursor", str(page))
    code, _, page2 = srv.request("GET", "/memories?limit=1&cursor=" + page.get("next_cursor", ""))
    check(code == 200 and page2["memories"] and
          page2["memories"][0]["id"] != page["memories"][0]["id"],
          "the cursor continues on the next page", str(page2))
    code, _, tagged = srv.request("GET", "/memories?tag=family")
    check(code == 200 and [m["id"] for m in tagged["memories"]] == [mid],
          "GET /memories filters by tag", str(tagged))

    code, _, q = srv.request("POST", "/query", {"input_text": "Where does my sister Lan live?"})
    check(code == 200 and "Da Nang" in q.get("output", "") and q.get("memory_info") and
          isinstance(q.get("processing_time"), float) and "memory_utilization" in q,
          "POST /query answers from memory", str(q))
    check(bool(q.get("memory_info")) and set(q["memory_info"][0]) == HIT_FIELDS,
          "memory_info items have the search fields", str(q.get("memory_info")))
    code, _, stats = srv.request("GET", "/statistics")
    check(code == 200 and stats.get("total_memories", 0) >= 2 and "memory_utilization" in stats,
          "GET /statistics counts the namespace", str(stats))

    code, _, gone = srv.request("DELETE", f"/memories/{d['memory_id']}")
    check(code == 200 and gone.get("status") == "deleted", "DELETE /memories/{id}", str(gone))
    code, _, _ = srv.request("GET", f"/memories/{d['memory_id']}")
    check(code == 404, "a deleted memory is gone")
    code, _, fg = srv.request("POST", f"/memories/{d['memory_id']}/forget", {})
    check(code == 200 and fg.get("status") == "forgotten", "POST /memories/{id}/forget", str(fg))
    code, _, _ = srv.request("GET", f"/memories/{d['memory_id']}/history")
    check(code == 404, "a forgotten memory has no history left")

    code, _, doc = srv.request("GET", "/openapi.json")
    check(code == 200 and doc.get("openapi", "").startswith("3.") and
          "/memories/{id}/history" in doc.get("paths", {}), "GET /openapi.json", str(doc)[:200])

    code, resp, text = srv.request("GET", "/metrics")
    ctype = resp.getheader("Content-Type", "")
    check(code == 200 and ctype.startswith("text/plain; version=0.0.4"),
          "GET /metrics has the exposition content type", ctype)
    names = set()
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name = line.split("{")[0].split(" ")[0]
            value = line.rsplit(" ", 1)[1]
            float(value.replace("+Inf", "inf"))  # every sample parses
            names.add(name)
    for name in ["http_requests_total", "mann_memory_utilization", "mann_memories",
                 "mann_write_decisions_total", "process_resident_memory_bytes"]:
        check(name in names, f"/metrics has {name}", ",".join(sorted(names))[:300])


def test_errors(srv):
    code, _, body = srv.request("GET", "/no/such/path")
    check(code == 404 and "detail" in body, "an unknown path is 404 with detail", str(body))
    code, _, body = srv.request("GET", "/memories/01900000-0000-7000-8000-000000000000")
    check(code == 404 and
          body.get("detail") == "memory 01900000-0000-7000-8000-000000000000 not found",
          "an unknown id is 404", str(body))
    code, resp, body = srv.request("DELETE", "/health")
    check(code == 405 and "GET" in (resp.getheader("Allow") or ""),
          "a wrong method is 405 with Allow", str((code, resp.getheader("Allow"))))
    code, _, body = srv.request("POST", "/memories", raw=b"{\"content\": ",
                                headers={"Content-Type": "application/json"})
    check(code == 400 and "detail" in body, "malformed JSON is 400", str(body))
    code, _, body = srv.request("POST", "/memories", raw=b"content=x",
                                headers={"Content-Type": "application/x-www-form-urlencoded"})
    check(code == 415, "a form body is 415", str(body))
    status, _, text = raw_exchange(
        srv.port, b"POST /memories HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json"
                  b"\r\nContent-Length: 2000000\r\n\r\n")
    check(status == 413 and "detail" in text, "a body over the limit is 413", text)

    code, _, body = srv.request("POST", "/memories", {"content": 7, "importance_weight": 4,
                                                      "tags": ["a", 1], "whatever": 1})
    want = {(("body", "content"), "string_type"),
            (("body", "importance_weight"), "less_than_equal"),
            (("body", "tags", 1), "string_type")}
    check(code == 422 and locs(body) == want, "422 lists every bad field, unknown ones ignored",
          str(body))
    code, _, body = srv.request("POST", "/memories", {"context": "x"})
    check(code == 422 and locs(body) == {(("body", "content"), "missing")},
          "a missing content is 422 missing", str(body))
    code, _, body = srv.request("POST", "/search", {"query": "x", "top_k": 0, "min_similarity": 2})
    check(code == 422 and locs(body) == {(("body", "top_k"), "greater_than_equal"),
                                         (("body", "min_similarity"), "less_than_equal")},
          "search ranges are 422", str(body))
    code, _, body = srv.request("POST", "/query", {"input_text": ["no"]})
    check(code == 422 and locs(body) == {(("body", "input_text"), "string_type")},
          "a non-string input_text is 422", str(body))
    code, _, body = srv.request("GET", "/memories?limit=5000")
    check(code == 422 and locs(body) == {(("query", "limit"), "less_than_equal")},
          "a list limit out of range is 422 at the query", str(body))


def test_namespaces(srv):
    code, _, a = srv.request("POST", "/memories", {"content": "Minh likes green tea",
                                                   "user_id": "minh"})
    check(code == 200 and a.get("status") == "created", "an add in namespace minh", str(a))
    mid = a.get("memory_id", "")
    _, _, other = srv.request("POST", "/search", {"query": "green tea", "user_id": "thu"})
    check(other == [], "another namespace's search finds nothing", str(other))
    _, _, mine = srv.request("POST", "/search", {"query": "green tea", "user_id": "minh"})
    check(len(mine) == 1 and mine[0]["memory_id"] == mid, "the own namespace finds it", str(mine))
    code, _, _ = srv.request("GET", f"/memories/{mid}?user_id=thu")
    check(code == 404, "GET from another namespace is 404")
    code, _, _ = srv.request("PUT", f"/memories/{mid}", {"user_id": "thu", "content": "hijacked"})
    check(code == 404, "PUT from another namespace is 404")
    code, _, _ = srv.request("DELETE", f"/memories/{mid}?user_id=thu")
    check(code == 404, "DELETE from another namespace is 404")
    code, _, lst = srv.request("GET", "/memories?user_id=thu")
    check(code == 200 and lst["memories"] == [], "another namespace's list is empty", str(lst))
    code, _, got = srv.request("GET", f"/memories/{mid}?user_id=minh")
    check(code == 200 and got.get("content") == "Minh likes green tea",
          "the memory is intact after the other namespace's attempts", str(got))


def test_shutdown(mann, root):
    data = os.path.join(root, "shutdown-data")
    srv = Server(mann, root, data)
    acked = []
    for i in range(20):
        code, _, a = srv.request("POST", "/memories", {"content": f"Fact number {i}: item {i * 7}"})
        if code == 200:
            acked.append(a["memory_id"])
    check(len(acked) == 20, "20 writes acknowledged before the signal", str(len(acked)))

    # Two requests in flight: a write whose body is half sent, and a readiness probe whose
    # header is half sent.
    body = json.dumps({"content": "Written while shutting down"}).encode()
    write = socket.create_connection(("127.0.0.1", srv.port), timeout=TIMEOUT)
    write.sendall(b"POST /memories HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json"
                  b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body[:10])
    probe = socket.create_connection(("127.0.0.1", srv.port), timeout=TIMEOUT)
    probe.sendall(b"GET /ready HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    time.sleep(0.3)  # both reach the server before the signal
    srv.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    probe.sendall(b"\r\n")
    status, _, text = read_response(probe)
    check(status == 503, "/ready is 503 once SIGTERM arrived", f"{status} {text}")
    write.sendall(body[10:])
    status, headers, text = read_response(write)
    check(status == 200 and "memory_id" in text,
          "a request in flight at SIGTERM completes", f"{status} {text}")
    check(headers.get("connection", "").lower() == "close",
          "responses while draining carry Connection: close", str(headers))
    if status == 200:
        acked.append(json.loads(text)["memory_id"])
    write.close()
    probe.close()
    try:
        code = srv.proc.wait(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        srv.proc.kill()
        code = "hung"
    srv.log.close()
    check(code == 0, "mann serve exits 0 after SIGTERM", str(code))

    again = Server(mann, root, data)
    try:
        missing = [m for m in acked if again.request("GET", f"/memories/{m}")[0] != 200]
        check(not missing, "every acknowledged write is there after a restart", str(missing))
    finally:
        check(again.stop(signal.SIGINT) == 0, "SIGINT stops the server with exit 0 as well")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--mann", required=True)
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="mann-api-test-")
    try:
        srv = None
        try:
            srv = Server(args.mann, root, os.path.join(root, "data"))
            checks.scenario("endpoints", test_endpoints, srv)
            checks.scenario("errors", test_errors, srv)
            checks.scenario("namespaces", test_namespaces, srv)
        except Exception as e:  # noqa: BLE001 - reported as a failure
            checks.fail(f"server: {type(e).__name__}: {e}")
        finally:
            if srv is not None:
                check(srv.stop() == 0, "the first server stops with exit 0")
        checks.scenario("shutdown", test_shutdown, args.mann, root)
    finally:
        harness.clean_up(checks, root)
    return checks.summary()


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Drives the real `mann serve` with its security settings over loopback HTTP: API keys made by
`mann key create` (missing, invalid and conflicting keys; both ways of sending one), namespace
isolation between keys for every operation, the admin key, CORS preflights and headers, trusted
hosts, per-key rate limits with Retry-After, the refusal to serve a non-loopback address without
keys, settings that fail validation, and the shutdown grace during which readiness fails but
requests are still served.

Usage: security_test.py --mann PATH/TO/mann
Exit status 0 when every check passed; otherwise the failed checks are listed.
"""

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

import harness

TIMEOUT = harness.TIMEOUT
checks = harness.Checks()
check = checks.check
ORIGIN = "https://app.example.com"


def make_key(mann, root, name, *args):
    """(key, entry) from `mann key create --json`."""
    proc = subprocess.run([mann, "key", "create", "--name", name, *args, "--json"],
                          capture_output=True, text=True, timeout=TIMEOUT,
                          env=harness.hermetic_env(root))
    if proc.returncode != 0:
        raise RuntimeError(f"mann key create failed: {proc.stderr}")
    doc = json.loads(proc.stdout)
    return doc["key"], doc["entry"]


def bearer(key):
    return {"Authorization": f"Bearer {key}"}


def test_key_command(mann, root, keys):
    proc = subprocess.run([mann, "key", "create", "--name", "nobody"], capture_output=True,
                          text=True, timeout=TIMEOUT, env=harness.hermetic_env(root))
    check(proc.returncode == 2 and "--namespace" in proc.stderr,
          "a key without namespaces or --admin is refused, naming --namespace", proc.stderr)
    proc = subprocess.run([mann, "key", "create", "--name", "t", "--namespace", "a"],
                          capture_output=True, text=True, timeout=TIMEOUT,
                          env=harness.hermetic_env(root))
    key_line = [l.strip() for l in proc.stdout.splitlines() if l.strip().startswith("mann_")]
    check(proc.returncode == 0 and len(key_line) == 1 and "hash = \"sha256:" in proc.stdout,
          "the text output shows the key once and the entry with its hash", proc.stdout)
    with open(keys["file"]) as f:
        text = f.read()
    check(all(k not in text for k in (keys["alice"], keys["bob"], keys["admin"])),
          "the keys file holds hashes only, never a key")


def test_authentication(srv, keys):
    code, resp, body = srv.request("GET", "/health")
    check(code == 200, "/health needs no key", str(body))
    code, _, _ = srv.request("GET", "/metrics")
    check(code == 200, "/metrics needs no key (Prometheus scrapes it)")

    code, resp, body = srv.request("POST", "/memories", {"content": "no key at all"})
    check(code == 401 and "Authorization" in body.get("detail", ""),
          "a request without a key is 401 and says how to send one", f"{code} {body}")
    check((resp.getheader("WWW-Authenticate") or "").startswith("Bearer"),
          "401 carries WWW-Authenticate: Bearer", str(resp.getheaders()))
    code, resp, body = srv.request("GET", "/memories", headers=bearer("mann_not-a-real-key"))
    check(code == 401 and body.get("detail") == "Invalid API key", "an unknown key is 401",
          f"{code} {body}")
    check("invalid_token" in (resp.getheader("WWW-Authenticate") or ""),
          "an unknown key's 401 says invalid_token", str(resp.getheaders()))
    code, _, body = srv.request("GET", "/memories",
                                headers={**bearer(keys["alice"]), "X-API-Key": keys["bob"]})
    check(code == 400, "two different keys in one request are 400", f"{code} {body}")
    code, _, body = srv.request("GET", "/memories", headers={"X-API-Key": keys["alice"]})
    check(code == 200, "X-API-Key is accepted", f"{code} {body}")
    code, _, body = srv.request("GET", "/memories",
                                headers={"Authorization": f"bearer {keys['alice']}"})
    check(code == 200, "the Bearer scheme is case-insensitive", f"{code} {body}")
    code, _, body = srv.request("GET", "/no/such/path")
    check(code == 401, "an unknown path without a key is 401, not 404: nothing is revealed",
          f"{code} {body}")
    check(keys["alice"] not in open(srv.log.name).read(), "the key never appears in the log")


def test_isolation(srv, keys):
    alice, bob, admin = bearer(keys["alice"]), bearer(keys["bob"]), bearer(keys["admin"])
    code, _, a = srv.request("POST", "/memories", {"content": "Alice keeps her passport in the "
                                                   "blue drawer"}, headers=alice)
    check(code == 200 and a.get("status") == "created", "alice writes to her default namespace",
          f"{code} {a}")
    aid = a.get("memory_id", "missing")
    code, _, b = srv.request("POST", "/memories", {"content": "Bob parks on level three"},
                             headers=bob)
    bid = b.get("memory_id", "missing")
    check(code == 200, "bob writes to his namespace", f"{code} {b}")

    # Bob names alice's namespace: every operation is refused with 403 before anything runs.
    attempts = [
        ("GET", "/memories?user_id=alice", None),
        ("GET", f"/memories/{aid}?user_id=alice", None),
        ("GET", f"/memories/{aid}/history?user_id=alice", None),
        ("PUT", f"/memories/{aid}", {"user_id": "alice", "content": "Bob was here"}),
        ("DELETE", f"/memories/{aid}?user_id=alice", None),
        ("POST", f"/memories/{aid}/forget", {"user_id": "alice"}),
        ("POST", "/search", {"user_id": "alice", "query": "passport"}),
        ("POST", "/query", {"user_id": "alice", "input_text": "where is the passport?"}),
        ("POST", "/memories", {"user_id": "alice", "content": "planted by bob"}),
        ("GET", "/statistics?user_id=alice", None),
    ]
    for method, path, body in attempts:
        code, _, got = srv.request(method, path, body, headers=bob)
        check(code == 403 and "may not access namespace \"alice\"" in got.get("detail", ""),
              f"bob: {method} {path.split('?')[0]} in alice's namespace is 403", f"{code} {got}")

    # Bob uses alice's id in his own namespace: it is not there.
    for method, path, body in [("GET", f"/memories/{aid}", None),
                               ("PUT", f"/memories/{aid}", {"content": "Bob was here"}),
                               ("DELETE", f"/memories/{aid}", None),
                               ("POST", f"/memories/{aid}/forget", {})]:
        code, _, got = srv.request(method, path, body, headers=bob)
        check(code == 404, f"bob: {method} of alice's id in his own namespace is 404",
              f"{code} {got}")
    code, _, hits = srv.request("POST", "/search", {"query": "passport blue drawer"}, headers=bob)
    check(code == 200 and all(h["memory_id"] != aid for h in hits),
          "bob's search never returns alice's memory", str(hits))
    code, _, lst = srv.request("GET", "/memories", headers=bob)
    listed = lst.get("memories", []) if code == 200 else []
    check(code == 200 and bid in [m["memory_id"] for m in listed]
          and all(m["namespace"] == "bob" and m["memory_id"] != aid for m in listed),
          "bob's list holds his memory and nothing from another namespace", str(lst))
    code, _, stats = srv.request("GET", "/statistics", headers=bob)
    check(code == 200 and "overall" not in stats and stats.get("user_id") == "bob",
          "a tenant's statistics leave out the whole bank's figures", str(stats))

    # Alice's second namespace, and her memory intact after bob's attempts.
    code, _, got = srv.request("POST", "/memories", {"user_id": "alice-work", "content":
                                                     "Standup is at nine"}, headers=alice)
    check(code == 200, "alice may write to her second namespace", f"{code} {got}")
    code, _, got = srv.request("GET", f"/memories/{aid}", headers=alice)
    check(code == 200 and got.get("content", "").startswith("Alice keeps her passport"),
          "alice's memory is intact after bob's attempts", str(got))

    # The admin key may touch every namespace.
    code, _, got = srv.request("GET", f"/memories/{bid}?user_id=bob", headers=admin)
    check(code == 200, "the admin key reads bob's memory", f"{code} {got}")
    code, _, got = srv.request("GET", "/statistics?user_id=alice", headers=admin)
    check(code == 200 and "overall" in got, "the admin sees the whole bank's figures", str(got))


def test_cors(srv, keys):
    pre = {"Origin": ORIGIN, "Access-Control-Request-Method": "POST",
           "Access-Control-Request-Headers": "authorization, content-type"}
    code, resp, body = srv.request("OPTIONS", "/search", headers=pre)
    check(code == 204, "a preflight from an allowed origin is 204 without a key", f"{code} {body}")
    check(resp.getheader("Access-Control-Allow-Origin") == ORIGIN,
          "the preflight names the origin, not *", str(resp.getheaders()))
    check("POST" in (resp.getheader("Access-Control-Allow-Methods") or ""),
          "the preflight allows POST", str(resp.getheaders()))
    check("authorization" in (resp.getheader("Access-Control-Allow-Headers") or "").lower(),
          "the preflight allows the Authorization header", str(resp.getheaders()))
    check("origin" in (resp.getheader("Vary") or "").lower(), "the preflight varies on Origin")

    code, resp, body = srv.request("OPTIONS", "/search",
                                   headers={**pre, "Origin": "https://evil.example.com"})
    check(code == 403 and resp.getheader("Access-Control-Allow-Origin") is None,
          "a preflight from another origin is 403 without CORS headers", f"{code} {body}")
    code, resp, body = srv.request("OPTIONS", "/search", headers={**pre, "Origin": "null"})
    check(code == 403 and resp.getheader("Access-Control-Allow-Origin") is None,
          "the null origin is never allowed", f"{code} {body}")

    code, resp, _ = srv.request("GET", "/memories",
                                headers={"Origin": ORIGIN, **bearer(keys["alice"])})
    check(code == 200 and resp.getheader("Access-Control-Allow-Origin") == ORIGIN,
          "a simple request from the allowed origin gets Access-Control-Allow-Origin")
    check("X-Request-ID" in (resp.getheader("Access-Control-Expose-Headers") or ""),
          "X-Request-ID is exposed to the page", str(resp.getheaders()))
    check("origin" in (resp.getheader("Vary") or "").lower(), "responses vary on Origin")
    code, resp, _ = srv.request("GET", "/memories", headers={"Origin": ORIGIN})
    check(code == 401 and resp.getheader("Access-Control-Allow-Origin") == ORIGIN,
          "a 401 carries the CORS headers too, so the page can read it")
    code, resp, _ = srv.request("GET", "/memories", headers={"Origin": "https://evil.example.com",
                                                           **bearer(keys["alice"])})
    check(resp.getheader("Access-Control-Allow-Origin") is None,
          "a request from another origin gets no Access-Control-Allow-Origin")


def test_trusted_hosts(srv, keys):
    alice = bearer(keys["alice"])
    _, _, before = srv.request("GET", "/memories?limit=1000", headers=alice)
    code, _, body = srv.request("POST", "/memories", {"content": "Smuggled through a bad Host"},
                                headers={**alice, "Host": "evil.example.com"})
    check(code == 400 and body.get("detail") == "Invalid host header",
          "a Host that is not trusted is 400", f"{code} {body}")
    _, _, after = srv.request("GET", "/memories?limit=1000", headers=alice)
    check(len(after["memories"]) == len(before["memories"]),
          "the request with a bad Host reached no handler")
    for host in ("localhost", f"localhost:{srv.port}", "127.0.0.1", "[::1]:8000"):
        code, _, _ = srv.request("GET", "/health", headers={"Host": host})
        check(code == 200, f"Host {host} is trusted by default")
    status, _, text = harness.raw_exchange(srv.port, b"GET /health HTTP/1.1\r\n\r\n")
    check(status == 400, "a request without Host is 400", f"{status} {text}")


def test_rate_limits(srv, keys):
    alice, bob = bearer(keys["alice"]), bearer(keys["bob"])
    codes = []
    retry_after = None
    for i in range(4):
        code, resp, body = srv.request("POST", "/memories",
                                       {"user_id": "alice-work", "content": f"Rate fact {i}"},
                                       headers=alice)
        codes.append(code)
        if code == 429:
            retry_after = resp.getheader("Retry-After")
            detail = body.get("detail", "")
    check(codes == [200, 200, 200, 429], "the fourth write in a minute is 429 (limit 3)",
          str(codes))
    check(retry_after is not None and retry_after.isdigit() and 1 <= int(retry_after) <= 60,
          "429 carries Retry-After in whole seconds", str(retry_after))
    check(codes[-1] != 429 or "3 requests per minute" in detail,
          "the 429 names the limit", detail if codes[-1] == 429 else "")
    code, _, body = srv.request("POST", "/memories", {"content": "Bob's own budget"},
                                headers=bob)
    check(code == 200, "another key has its own budget", f"{code} {body}")
    code, _, _ = srv.request("POST", "/search", {"query": "rate"}, headers=alice)
    check(code == 200, "a limit on POST /memories does not touch POST /search")
    _, _, metrics = srv.request("GET", "/metrics")
    check('mann_http_rate_limited_total{route="/memories"} 1' in metrics,
          "the refusal is counted in mann_http_rate_limited_total",
          "\n".join(l for l in metrics.splitlines() if "rate_limited" in l))


def test_exposure(mann, root):
    data = os.path.join(root, "exposed")
    port = harness.free_port()
    proc = subprocess.run(
        [mann, "serve", "--data-dir", data, "--set", "encoder.kind=hashed",
         "--set", "server.host=0.0.0.0", "--set", f"server.port={port}"],
        capture_output=True, text=True, timeout=TIMEOUT, env=harness.hermetic_env(root))
    check(proc.returncode != 0 and "--allow-unauthenticated" in proc.stderr
          and "security.api_keys_file" in proc.stderr,
          "serving 0.0.0.0 without keys is refused, naming both ways out", proc.stderr)

    # With the flag it serves; it is only ever spoken to over loopback.
    srv = harness.Server(mann, root, data, "--set", "server.host=0.0.0.0",
                         "--allow-unauthenticated")
    try:
        code, _, _ = srv.request("GET", "/health")
        check(code == 200, "--allow-unauthenticated serves 0.0.0.0 without keys")
    finally:
        check(srv.stop() == 0, "the unauthenticated server stops with exit 0")

    for setting, needle in [("security.cors_origins=null", "security.cors_origins"),
                            ("rate_limit.rules=POST /memories=ten/minute", "rate_limit.rules"),
                            ("security.trusted_hosts=bad host!", "security.trusted_hosts")]:
        proc = subprocess.run([mann, "serve", "--data-dir", data, "--set", setting],
                              capture_output=True, text=True, timeout=TIMEOUT,
                              env=harness.hermetic_env(root))
        check(proc.returncode == 2 and needle in proc.stderr,
              f"{setting} is refused at start, naming the key", proc.stderr)
    proc = subprocess.run(
        [mann, "serve", "--data-dir", data, "--set", "security.cors_origins=*",
         "--set", "security.cors_allow_credentials=true"],
        capture_output=True, text=True, timeout=TIMEOUT, env=harness.hermetic_env(root))
    check(proc.returncode == 2 and "credentials" in proc.stderr,
          "credentials with the * origin are refused", proc.stderr)
    missing = os.path.join(root, "no-such-keys.toml")
    proc = subprocess.run(
        [mann, "serve", "--data-dir", data, "--set", f"security.api_keys_file={missing}"],
        capture_output=True, text=True, timeout=TIMEOUT, env=harness.hermetic_env(root))
    check(proc.returncode != 0 and missing in proc.stderr,
          "a keys file that does not exist is refused, naming it", proc.stderr)


def test_shutdown_grace(mann, root):
    srv = harness.Server(mann, root, os.path.join(root, "grace"),
                         "--set", "server.shutdown_grace=3")
    srv.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    started = time.monotonic()
    code, resp, _ = srv.request("GET", "/ready")
    check(code == 503, "/ready is 503 during the grace", str(code))
    code, _, body = srv.request("POST", "/memories", {"content": "Written during the grace"})
    check(code == 200, "a new connection is still served during the grace", f"{code} {body}")
    check(time.monotonic() - started < 2.5, "the grace requests were answered promptly")
    try:
        rc = srv.proc.wait(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        srv.proc.kill()
        rc = "hung"
    srv.log.close()
    check(rc == 0, "the server exits 0 after the grace", str(rc))
    try:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=2):
            refused = False
    except OSError:
        refused = True
    check(refused, "the listener is closed after exit")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--mann", required=True)
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="mann-security-test-")
    try:
        srv = None
        try:
            keys = {}
            entries = []
            for name, extra in [("alice", ["--namespace", "alice", "--namespace", "alice-work"]),
                                ("bob", ["--namespace", "bob"]), ("admin", ["--admin"])]:
                keys[name], entry = make_key(args.mann, root, name, *extra)
                entries.append(entry)
            keys["file"] = os.path.join(root, "keys.toml")
            with open(keys["file"], "w") as f:
                f.write("\n".join(entries))
            checks.scenario("key command", test_key_command, args.mann, root, keys)
            srv = harness.Server(
                args.mann, root, os.path.join(root, "data"),
                "--set", f"security.api_keys_file={keys['file']}",
                "--set", f"security.cors_origins={ORIGIN}",
                "--set", "rate_limit.rules=POST /memories=3/minute")
            # The rate-limit scenario counts alice's writes to alice-work: it runs before the
            # others add to that budget.
            checks.scenario("rate limits", test_rate_limits, srv, keys)
            checks.scenario("authentication", test_authentication, srv, keys)
            checks.scenario("cors", test_cors, srv, keys)
        except Exception as e:  # noqa: BLE001 - reported as a failure
            checks.fail(f"server: {type(e).__name__}: {e}")
        finally:
            if srv is not None:
                check(srv.stop() == 0, "the keyed server stops with exit 0")
        # Isolation and trusted hosts write many memories: a server without the write limit.
        srv = None
        try:
            srv = harness.Server(args.mann, root, os.path.join(root, "data"),
                                 "--set", f"security.api_keys_file={keys['file']}")
            checks.scenario("isolation", test_isolation, srv, keys)
            checks.scenario("trusted hosts", test_trusted_hosts, srv, keys)
        except Exception as e:  # noqa: BLE001 - reported as a failure
            checks.fail(f"server: {type(e).__name__}: {e}")
        finally:
            if srv is not None:
                check(srv.stop() == 0, "the second keyed server stops with exit 0")
        checks.scenario("exposure", test_exposure, args.mann, root)
        checks.scenario("shutdown grace", test_shutdown_grace, args.mann, root)
    finally:
        harness.clean_up(checks, root)
    return checks.summary()


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Exercises every `mann memory` subcommand, `config show`, `stats`, `alert test|list`, --help
and --version against the real binary: JSON output, exit codes (0 ok, 1 failure, 2 usage),
configuration precedence and redaction, pagination, an export/import round trip, and alert tests
against a receiver on loopback.

Usage: cli_test.py --mann PATH/TO/mann
Exit status 0 when every check passed; otherwise the failed checks are listed.
"""

import argparse
import http.server
import json
import os
import re
import select
import shutil
import subprocess
import sys
import tempfile
import threading

import harness

TIMEOUT = harness.TIMEOUT
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
ENTRY_FIELDS = {"id", "namespace", "content", "context", "tags", "metadata", "importance_weight",
                "usage_count", "created_at", "updated_at", "last_access_at", "version"}
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")

checks = harness.Checks()
check = checks.check


class Mann:
    """Runs the binary in a hermetic environment rooted at one temporary directory."""

    def __init__(self, binary, root, data="data"):
        self.binary = binary
        self.env = harness.hermetic_env(root)
        self.data_dir = os.path.join(root, data)

    def run(self, *args, stdin=None, env=None, data_dir=True):
        full_env = dict(self.env, **(env or {}))
        argv = [self.binary] + (["--data-dir", self.data_dir] if data_dir else []) + list(args)
        proc = subprocess.run(argv, input=stdin.encode() if stdin is not None else None,
                              env=full_env, capture_output=True, timeout=TIMEOUT)
        return proc.returncode, proc.stdout.decode(), proc.stderr.decode()

    def json(self, *args, stdin=None, env=None):
        code, out, err = self.run(*args, "--json", stdin=stdin, env=env)
        return code, harness.json_document(checks, args, code, out, err), err


def test_help_and_version(m):
    code, out, _ = m.run("--version", data_dir=False)
    check(code == 0 and re.match(r"^mann \d+\.\d+\.\d+", out), "--version prints mann <version>",
          out)
    code, out, _ = m.run("--help", data_dir=False)
    check(code == 0, "--help exits 0")
    for word in ["chat", "memory", "config", "stats", "--data-dir", "--set", "--user"]:
        check(word in out, f"--help mentions {word}", out)
    commands = {line.split()[0] for line in out.split("Subcommands:")[-1].splitlines()
                if line.strip()}
    check(commands == {"chat", "memory", "config", "stats", "reindex", "serve", "key", "alert",
                       "backup", "restore", "health"},
          "--help lists exactly chat, memory, config, stats, reindex, serve, key, alert, backup, "
          "restore, health (no debug)", str(commands))
    code, out, _ = m.run("alert", "--help", data_dir=False)
    check(code == 0 and "test" in out and "list" in out, "alert --help lists test and list", out)
    code, out, _ = m.run("memory", "--help", data_dir=False)
    for word in ["add", "get", "list", "search", "update", "delete", "forget", "history", "import",
                 "export"]:
        check(code == 0 and word in out, f"memory --help lists {word}", out)


def test_usage_errors(m):
    cases = [
        (["memory", "frobnicate"], "an unknown subcommand"),
        ([], "no subcommand"),
        (["memory", "add"], "a missing TEXT"),
        (["memory", "list", "--limit", "0"], "--limit 0"),
        (["memory", "list", "--limit", "many"], "--limit many"),
        (["memory", "search", "x", "--top-k", "51"], "--top-k 51"),
        (["memory", "list", "--since", "yesterday"], "--since yesterday"),
        (["memory", "add", "x", "--metadata", "[1, 2]"], "--metadata that is not an object"),
        (["--set", "nonsense", "stats"], "--set without ="),
        (["--set", "server.port=70000", "stats"], "--set with an out-of-range port"),
        (["--set", "no.such_key=1", "stats"], "--set of an unknown key"),
        (["--user", "", "stats"], "an empty namespace"),
    ]
    for args, what in cases:
        code, out, err = m.run(*args)
        check(code == 2 and "error" in err.lower(), f"{what} is a usage error (exit 2)",
              f"code {code} stdout {out[:200]!r} stderr {err[:300]!r}")

    code, _, err = m.run("memory", "add", "too important", "--importance", "4")
    check(code == 2 and "importance" in err, "importance 4 is refused naming importance",
          f"code {code} stderr {err!r}")
    code, _, err = m.run("stats", env={"MANN_API_PORT": "abc", "MANN_MEMORY_SIZE": "-5"})
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    check(code == 2 and len(lines) >= 2 and "MANN_API_PORT" in err and "MANN_MEMORY_SIZE" in err,
          "invalid config: every error line printed, exit 2", f"code {code} stderr {err!r}")
    code, _, err = m.run("--config", "/nonexistent/mann.toml", "stats")
    check(code == 2 and "mann.toml" in err, "a missing --config file exits 2 naming it", err)


def test_memory_commands(m):
    code, added, _ = m.json("memory", "add", "I live in Hanoi", "--context", "chat on Monday",
                            "--tag", "home", "--tag", "city", "--importance", "2.5",
                            "--metadata", '{"city": "Hanoi", "floor": 3}')
    check(code == 0 and added and added["action"] == "ADD" and UUID.match(added["id"]),
          "memory add --json reports ADD with an id", str(added))
    if not added:
        return
    hid = added["id"]

    code, noop, _ = m.json("memory", "add", "i live in hanoi!")
    check(code == 0 and noop and noop["action"] == "NOOP" and noop["id"] == hid,
          "memory add of the same content is a NOOP on the same id", str(noop))

    code, entry, _ = m.json("memory", "get", hid)
    check(code == 0 and entry and ENTRY_FIELDS <= set(entry), "memory get --json has every field",
          str(entry))
    if entry:
        check(entry["content"] == "I live in Hanoi" and entry["context"] == "chat on Monday"
              and entry["tags"] == ["city", "home"] and entry["importance_weight"] == 2.5
              and entry["metadata"] == {"city": "Hanoi", "floor": 3} and entry["version"] == 1
              and entry["namespace"] == "default",
              "memory get returns what was added", str(entry))
        check(all(ISO.match(entry[k]) for k in ("created_at", "updated_at", "last_access_at")),
              "times are ISO 8601 UTC with milliseconds", str(entry))

    code, out, _ = m.run("memory", "get", hid)
    check(code == 0 and "I live in Hanoi" in out and "importance" in out,
          "memory get prints readable text without --json", out)

    m.json("memory", "add", "My name is Alice", "--tag", "person")
    code, found, _ = m.json("memory", "search", "Hanoi", "--top-k", "3")
    check(code == 0 and found and found["hits"] and found["hits"][0]["memory"]["id"] == hid,
          "memory search --json ranks the Hanoi memory first", str(found))
    if found and found["hits"]:
        hit = found["hits"][0]
        check({"similarity", "score", "attention"} <= set(hit) and 0 < hit["similarity"] <= 1,
              "search hits carry similarity, score and attention", str(hit))
    code, found, _ = m.json("memory", "search", "Hanoi", "--min-similarity", "0.99")
    check(code == 0 and found is not None and found["hits"] == [],
          "--min-similarity filters weak hits", str(found))

    code, listed, _ = m.json("memory", "list", "--tag", "home")
    check(code == 0 and listed and [e["id"] for e in listed["entries"]] == [hid],
          "memory list --tag filters by tag", str(listed))
    code, listed, _ = m.json("memory", "list", "--meta", "city=Hanoi")
    check(code == 0 and listed and [e["id"] for e in listed["entries"]] == [hid],
          "memory list --meta KEY=VALUE matches a string value", str(listed))
    code, listed, _ = m.json("memory", "list", "--meta", "floor=3")
    check(code == 0 and listed and [e["id"] for e in listed["entries"]] == [hid],
          "memory list --meta KEY=JSON matches a number", str(listed))
    code, listed, _ = m.json("memory", "list", "--since", "2000-01-01", "--until", "2000-01-02")
    check(code == 0 and listed is not None and listed["entries"] == [],
          "memory list --since/--until bounds the creation time", str(listed))
    code, listed, _ = m.json("memory", "list", "--since", "0")
    check(code == 0 and listed and len(listed["entries"]) == 2,
          "memory list --since accepts epoch milliseconds", str(listed))

    code, updated, _ = m.json("memory", "update", hid, "--content", "I live in Da Nang now",
                              "--tag", "moved", "--importance", "3")
    check(code == 0 and updated and updated["version"] == 2, "memory update --json bumps version",
          str(updated))
    code, entry, _ = m.json("memory", "get", hid)
    check(entry and entry["content"] == "I live in Da Nang now" and entry["tags"] == ["moved"]
          and entry["importance_weight"] == 3 and entry["context"] == "chat on Monday",
          "update changes the given fields and keeps the others", str(entry))
    code, _, err = m.run("memory", "update", hid)
    check(code == 2, "memory update with nothing to change is a usage error", err)

    code, history, _ = m.json("memory", "history", hid)
    actions = [h["action"] for h in history["history"]] if history else []
    check(code == 0 and actions[:1] == ["create"] and "update" in actions,
          "memory history --json lists create then update", str(history))

    missing = "01939000-0000-7000-8000-000000000000"
    for sub in ["get", "delete", "forget", "history"]:
        code, out, err = m.run("memory", sub, missing)
        check(code == 1 and err.startswith("error: "), f"memory {sub} of an unknown id exits 1",
              f"code {code} stderr {err!r}")
    code, _, err = m.run("memory", "update", missing, "--content", "x")
    check(code == 1 and "error:" in err, "memory update of an unknown id exits 1", err)

    code, deleted, _ = m.json("memory", "delete", hid)
    check(code == 0 and deleted and deleted["deleted"], "memory delete --json", str(deleted))
    check(m.run("memory", "get", hid)[0] == 1, "a deleted memory is gone")
    code, history, _ = m.json("memory", "history", hid)
    check(code == 0 and history and history["history"][-1]["action"] == "delete",
          "delete keeps the history", str(history))
    code, forgotten, _ = m.json("memory", "forget", hid)
    check(code == 0 and forgotten and forgotten["forgotten"], "memory forget --json",
          str(forgotten))
    check(m.run("memory", "history", hid)[0] == 1, "forget erases the history too")

    # Namespaces do not see each other.
    code, bob, _ = m.json("memory", "add", "Bob likes tea", "-u", "bob")
    code, listed, _ = m.json("memory", "list")
    check(listed and all(e["content"] != "Bob likes tea" for e in listed["entries"]),
          "another namespace's memories are not listed", str(listed))
    if bob:
        check(m.run("memory", "get", bob["id"])[0] == 1, "another namespace's id is not found")
        check(m.run("memory", "get", bob["id"], "--user", "bob")[0] == 0,
              "--user selects the namespace")

    code, stats, _ = m.json("stats")
    check(code == 0 and stats and stats["overall"]["total_memories"] == 2
          and {n["namespace"] for n in stats["namespaces"]} == {"default", "bob"},
          "stats --json counts per namespace", str(stats))
    code, out, _ = m.run("stats")
    check(code == 0 and "memories:" in out, "stats prints text", out)


def test_pagination(m):
    lines = "\n".join(json.dumps({"content": f"page fact number {i}", "tags": ["page"]})
                      for i in range(23))
    code, report, err = m.json("memory", "import", "-", stdin=lines)
    check(code == 0 and report and report["imported"] == 23, "import - of 23 new lines",
          f"{report} {err}")
    seen, cursor, pages = [], "", 0
    while True:
        args = ["memory", "list", "--tag", "page", "--limit", "5"]
        if cursor:
            args += ["--cursor", cursor]
        code, page, _ = m.json(*args)
        if code != 0 or not page:
            check(False, "every page lists", str(page))
            break
        pages += 1
        check(len(page["entries"]) <= 5, "a page holds at most --limit entries")
        seen += [e["id"] for e in page["entries"]]
        cursor = page["next_cursor"]
        if not cursor or pages > 10:
            break
    check(pages == 5, "23 entries in pages of 5 make 5 pages", f"{pages} pages")
    check(len(seen) == 23 and len(set(seen)) == 23,
          "pagination covers every entry exactly once", f"{len(seen)} ids, {len(set(seen))} unique")
    code, out, _ = m.run("memory", "list", "--tag", "page", "--limit", "5")
    check(code == 0 and "--cursor" in out, "text list says how to get the next page", out)


def test_export_import(binary, root):
    src = Mann(binary, root, "export-src")
    src.json("memory", "add", "tôi thích phở bò", "--tag", "food", "--importance", "0.5",
             "--context", "breakfast", "--metadata", '{"spicy": false, "tags": ["x"]}')
    src.json("memory", "add", "My sister is called Linh")
    src.json("memory", "add", "Carol works at the bakery", "-u", "carol")
    code, first, _ = src.json("memory", "list")
    if first and first["entries"]:
        src.run("memory", "get", first["entries"][0]["id"])  # a read: usage_count becomes 1
        src.json("memory", "update", first["entries"][0]["id"], "--context", "lunch")

    path = os.path.join(root, "export.jsonl")
    code, report, _ = src.json("memory", "export", path, "--all")
    check(code == 0 and report and report["exported"] == 3, "export --all to a file", str(report))
    with open(path, encoding="utf-8") as f:
        exported = [json.loads(line) for line in f]
    check(len(exported) == 3 and all(ENTRY_FIELDS <= set(e) for e in exported),
          "every exported line has every field", str(exported[:1]))
    check(oct(os.stat(path).st_mode & 0o777) == "0o600", "the export file is private (0600)")
    code, out, _ = src.run("memory", "export")
    check(code == 0 and len(out.splitlines()) == 2, "export to stdout holds the --user namespace",
          out)

    dst = Mann(binary, root, "export-dst")
    code, report, err = dst.json("memory", "import", path)
    check(code == 0 and report and report["imported"] == 3 and report["failed"] == 0,
          "import into a fresh data dir", f"{report} {err}")
    code, report, _ = dst.json("memory", "import", path)
    check(code == 0 and report and report["imported"] == 0 and report["skipped"] == 3,
          "importing again skips the entries already present", str(report))
    code, out, _ = dst.run("memory", "export", "--all")
    again = [json.loads(line) for line in out.splitlines()]
    by_id = {e["id"]: e for e in exported}
    check(len(again) == 3 and all(by_id.get(e["id"]) == e for e in again),
          "export, import, export round-trips every field",
          f"{exported} vs {again}")
    code, found, _ = dst.json("memory", "search", "pho bo")
    check(found and found["hits"] and found["hits"][0]["memory"]["content"] == "tôi thích phở bò",
          "imported entries are searchable", str(found))

    # Bad lines are reported with their number; the good ones still land; exit 1.
    bad = "\n".join([
        json.dumps({"content": "good line one"}),
        "this is not json",
        json.dumps({"content": 5}),
        json.dumps({"content": "too important", "importance_weight": 9}),
        json.dumps({"content": "good line five"}),
    ])
    fresh = Mann(binary, root, "import-bad")
    code, out, err = fresh.run("memory", "import", "-", stdin=bad)
    check(code == 1, "an import with bad lines exits 1", f"code {code} {err!r}")
    for n in (2, 3, 4):
        check(f"line {n}:" in err, f"the bad line {n} is named", err)
    check("line 1:" not in err and "line 5:" not in err, "good lines are not reported", err)
    check("imported 2" in out, "the good lines are imported", out)


def test_progress(m):
    """The import progress bar shows on a terminal for long runs, and nowhere else."""
    lines = "\n".join(json.dumps({"content": f"bulk fact {i}"}) for i in range(450)) + "\n"
    path = os.path.join(os.path.dirname(m.data_dir), "bulk.jsonl")
    with open(path, "w", encoding="utf-8") as f:
        f.write(lines)
    master, slave = os.openpty()
    try:
        proc = subprocess.run([m.binary, "--data-dir", m.data_dir, "memory", "import", path],
                              stdout=subprocess.PIPE, stderr=slave, env=m.env, timeout=TIMEOUT)
        os.close(slave)
        slave = None
        tty_err = b""
        while select.select([master], [], [], 0.2)[0]:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            tty_err += chunk
    finally:
        if slave is not None:
            os.close(slave)
        os.close(master)
    check(proc.returncode == 0 and b"imported 450" in proc.stdout, "bulk import from a file",
          proc.stdout.decode())
    check(b"importing [" in tty_err and b"%" in tty_err,
          "a long import draws a progress bar on a terminal", repr(tty_err[:200]))
    fresh = Mann(m.binary, os.path.dirname(m.data_dir), "progress-pipe")
    code, out, err = fresh.run("memory", "import", path)
    check(code == 0 and err == "", "no progress bar when stderr is not a terminal", repr(err[:200]))


def test_config(m):
    secret = "https://hooks.example.invalid/T000/very-secret-token"
    env = {"MANN_PAGER_WEBHOOK": secret, "MANN_MEMORY_SIZE": "1234"}
    code, out, err = m.run("config", "show", env=env)
    check(code == 0, "config show exits 0", err)
    check("very-secret-token" not in out and "<redacted>" in out,
          "config show redacts MANN_PAGER_WEBHOOK", out)
    size_line = next((line for line in out.splitlines() if "memory.memory_size" in line), "")
    check("1234" in size_line and "env:MANN_MEMORY_SIZE" in size_line,
          "config show gives the env value and its origin", size_line)

    code, doc, _ = m.json("config", "show", env=env)
    if doc:
        check(doc["memory.memory_size"]["value"] == 1234
              and doc["memory.memory_size"]["source"] == "env:MANN_MEMORY_SIZE",
              "config show --json: env value with origin env", str(doc.get("memory.memory_size")))
        check("very-secret-token" not in json.dumps(doc), "config show --json redacts the webhook")
        check(doc["storage.data_dir"]["value"] == m.data_dir
              and doc["storage.data_dir"]["source"] == "flag",
              "--data-dir shows as a flag", str(doc.get("storage.data_dir")))
    code, doc, _ = m.json("--set", "memory.memory_size=99", "config", "show", env=env)
    check(doc and doc["memory.memory_size"]["value"] == 99
          and doc["memory.memory_size"]["source"] == "flag",
          "--set beats the environment", str(doc and doc.get("memory.memory_size")))

    # A data dir that cannot be created is a failure naming it.
    code, _, err = m.run("--data-dir", "/dev/null/mann-data", "stats", data_dir=False)
    check(code == 1 and "/dev/null/mann-data" in err, "an impossible data dir exits 1 naming it",
          f"code {code} {err!r}")
    made = os.path.join(os.path.dirname(m.data_dir), "new", "nested", "dir")
    code, _, err = m.run("--data-dir", made, "stats", data_dir=False)
    check(code == 0 and oct(os.stat(made).st_mode & 0o777) == "0o700",
          "a missing data dir is created with mode 0700", err)


class Receiver:
    """An HTTP receiver on loopback for `mann alert test`: answers each POST with the status its
    path names (/200, /403, /503), and keeps the bodies it got."""

    def __init__(self):
        received = self.received = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length", "0"))
                received.append((self.path, dict(self.headers), self.rfile.read(length)))
                status = int(self.path.strip("/").split("/")[0])
                body = f"answer {status}".encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path):
        return f"http://127.0.0.1:{self.server.server_port}{path}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_alert(m):
    code, _, err = m.run("alert", "test", "--channel", "slack")
    check(code == 2 and "MANN_PAGER_WEBHOOK" in err,
          "alert test of an unconfigured channel exits 2 naming the variable to set",
          f"code {code} {err!r}")
    code, _, err = m.run("alert", "test", "--channel", "email")
    check(code == 2 and "MANN_SMTP_URL" in err and "MANN_SMTP_TO" in err,
          "alert test of an unconfigured email channel names its settings", f"code {code} {err!r}")
    code, _, err = m.run("alert", "test", "--channel", "carrier-pigeon")
    check(code == 2, "alert test of an unknown channel is a usage error", f"code {code} {err!r}")

    receiver = Receiver()
    try:
        token = "T0KEN-in-the-path"
        env = {"MANN_PAGER_JSON_WEBHOOK": receiver.url(f"/200/{token}")}
        code, doc, err = m.json("alert", "test", "--channel", "webhook", env=env)
        check(code == 0 and doc and doc["delivered"] and doc["http_status"] == 200
              and doc["response"] == "answer 200",
              "alert test --json reports the receiver's 200 and its answer, exit 0",
              f"code {code} {doc} {err!r}")
        check(len(receiver.received) == 1, "the receiver got exactly one request",
              str(receiver.received))
        if receiver.received:
            _, headers, body = receiver.received[-1]
            sent = json.loads(body)
            check(sent["kind"] == "test" and sent["event"] == "test" and sent["level"] == "info"
                  and "test" in sent["message"] and sent["service"].startswith("mann@")
                  and headers.get("X-Mann-Event") == "test",
                  "the test notification says it is a test, at level info, from the service",
                  str(sent))
        code, out, err = m.run("alert", "test", "--channel", "webhook", env=env)
        check(code == 0 and "delivered" in out and "HTTP 200" in out,
              "alert test prints the status as text", out)
        check(token not in out + err, "the webhook URL's token is never printed", out + err)

        code, out, err = m.run("alert", "test", "--channel", "webhook",
                               env={"MANN_PAGER_JSON_WEBHOOK": receiver.url("/403")})
        check(code == 1 and "refused" in out and "403" in out and "answer 403" in out,
              "a receiver that refuses makes alert test exit 1 with its status and answer",
              f"code {code} {out!r} {err!r}")
        closed = f"http://127.0.0.1:{harness.free_port()}/hook"
        code, doc, err = m.json("alert", "test", "--channel", "webhook",
                                env={"MANN_PAGER_JSON_WEBHOOK": closed})
        check(code == 1 and doc and not doc["delivered"] and doc["http_status"] == 0
              and doc["error"],
              "an unreachable receiver makes alert test exit 1 with the error",
              f"code {code} {doc} {err!r}")
    finally:
        receiver.close()

    code, doc, err = m.json("alert", "list")
    check(code == 0 and doc and doc["rules_source"] == "default"
          and [r["name"] for r in doc["rules"]] == ["memory_utilization", "processing_time",
                                                     "error_rate", "cpu_percent", "system_memory",
                                                     "disk"]
          and doc["renotify_seconds"] == {"info": 60, "warning": 30, "error": 10, "critical": 0}
          and doc["deliveries"] == [],
          "alert list --json shows the default rules and floors, and no delivery (tests bypass "
          "the outbox)", f"code {code} {doc} {err!r}")
    rules = "deep: queue_depth > 5 for 2m critical"
    code, doc, err = m.json("alert", "list", env={"MANN_ALERT_RULES": rules,
                                                  "MANN_PAGER_JSON_WEBHOOK": "http://h.example/x"})
    check(code == 0 and doc and doc["rules_source"] == "monitoring.alert_rules"
          and doc["rules"] == [{"name": "deep", "metric": "queue_depth", "threshold": 5,
                                "for_seconds": 120, "level": "critical",
                                "summary": doc["rules"][0]["summary"]}]
          and doc["channels"] == ["webhook"],
          "alert list shows the configured rules and channels", f"code {code} {doc} {err!r}")
    code, out, _ = m.run("alert", "list")
    check(code == 0 and "Alert rules" in out and "memory_utilization>0.9 for 60s warning" in out,
          "alert list prints the rules as text and in their compact form", out)
    code, _, err = m.run("alert", "list", env={"MANN_ALERT_RULES": "disk > lots"})
    check(code == 2 and "monitoring.alert_rules" in err and "lots" in err,
          "bad alert rules are a configuration error naming the key and the bad part", err)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--mann", required=True)
    binary = os.path.abspath(parser.parse_args().mann)
    root = tempfile.mkdtemp(prefix="mann-cli-")
    try:
        tests = [
            ("help", lambda: test_help_and_version(Mann(binary, root))),
            ("usage", lambda: test_usage_errors(Mann(binary, root, "usage"))),
            ("memory", lambda: test_memory_commands(Mann(binary, root, "memory"))),
            ("pages", lambda: test_pagination(Mann(binary, root, "pages"))),
            ("export", lambda: test_export_import(binary, root)),
            ("config", lambda: test_config(Mann(binary, root, "config"))),
            ("progress", lambda: test_progress(Mann(binary, root, "progress"))),
            ("alert", lambda: test_alert(Mann(binary, root, "alert"))),
        ]
        checks.run_all(tests)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return checks.summary()


if __name__ == "__main__":
    sys.exit(main())

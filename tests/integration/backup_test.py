#!/usr/bin/env python3
"""`mann backup`, `mann restore` and `mann health` against real servers on loopback.

  backup_test.py --mann build/mann

Scenarios: backups taken twice while a thread keeps writing through the REST API, the newest
restored into a fresh directory and served by a second server that must know every memory
acknowledged before that backup began; a corrupt byte refused by its checksum; a restore over a
live data directory refused; retention pruning only our old files; the upload command's argv;
`mann health` against a live server, a stopped one, an unhealthy answer and a webhook receiver
that checks the POST; and, with MANN_TEST_POSTGRES_URL, a PostgreSQL backup and restore.
"""

import argparse
import http.server
import json
import os
import secrets
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import TIMEOUT, Checks, Server, hermetic_env  # noqa: E402

CHECKS = Checks()
check = CHECKS.check


def run_mann(mann, root, *args, env=None, timeout=TIMEOUT):
    """(exit code, stdout, stderr) of one mann command in the hermetic environment."""
    proc = subprocess.run([mann, *args], capture_output=True, text=True, timeout=timeout,
                          env=hermetic_env(root, **(env or {})))
    return proc.returncode, proc.stdout, proc.stderr


def backup(mann, root, data_dir, backup_dir, *extra, env=None):
    """The JSON document of `mann backup --json`, with the exit code and stderr."""
    code, out, err = run_mann(mann, root, "backup", "--data-dir", data_dir, "--dir", backup_dir,
                              "--json", *extra, env=env)
    try:
        doc = json.loads(out)
    except ValueError:
        doc = None
    return code, doc, err


class Writer(threading.Thread):
    """Adds distinct memories through POST /memories until stopped; remembers when each one was
    acknowledged (created) so a test can ask which ones a backup must hold."""

    def __init__(self, srv):
        super().__init__(daemon=True)
        self.srv = srv
        self.acked = []  # (monotonic time of the answer, memory id, content)
        self.errors = []
        self.stop_event = threading.Event()

    def run(self):
        for i in range(100000):  # bounded; the test stops it after a few seconds
            if self.stop_event.is_set():
                return
            # Random words: the write head must see no near-duplicates, so each one is created.
            content = f"note {i}: " + " ".join(secrets.token_hex(5) for _ in range(6))
            try:
                status, _, body = self.srv.request("POST", "/memories", {"content": content})
            except OSError as e:
                self.errors.append(str(e))
                return
            if status == 200 and isinstance(body, dict) and body.get("status") == "created":
                self.acked.append((time.monotonic(), body["memory_id"], content))
            else:
                self.errors.append(f"{status} {body!r}"[:200])

    def stop(self):
        self.stop_event.set()
        self.join(timeout=TIMEOUT)


def acked_before(writer, moment):
    return [(mid, content) for t, mid, content in writer.acked if t < moment]


def integrity(path):
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()


# ---- backup while writing, restore, serve ----------------------------------------------------

def test_backup_restore_while_writing(mann, root):
    data = os.path.join(root, "data")
    # A space and a quote in the path: arguments must reach every program unsplit.
    backups = os.path.join(root, "back ups 'x'")
    srv = Server(mann, root, data)
    writer = Writer(srv)
    second = None
    try:
        writer.start()
        harness.wait_for("the writer's first memories", lambda: len(writer.acked) >= 20)
        made = []
        for _ in range(2):
            began = time.monotonic()
            code, doc, err = backup(mann, root, data, backups)
            check(code == 0 and doc is not None, "mann backup succeeds while writes go on",
                  f"code {code} stderr {err[-400:]!r}")
            if doc is None:
                return
            made.append((began, doc))
            harness.wait_for("more writes after the backup",
                             lambda n=len(writer.acked): len(writer.acked) >= n + 20)
        writer.stop()
        check(not writer.errors, "every write was acknowledged", repr(writer.errors[:3]))

        began, newest = made[-1]
        must_have = acked_before(writer, began)
        print(f"backup while writing: {len(writer.acked)} writes acknowledged, "
              f"{len(must_have)} before the newest backup began, "
              f"{newest['contents']['entry_count']} in it, copied in {newest['seconds']:.3f} s")
        manifest = json.load(open(newest["manifest"]))
        check(newest["contents"]["entry_count"] >= len(must_have),
              "the manifest counts at least the memories acknowledged before the backup",
              f"{newest['contents']['entry_count']} < {len(must_have)}")
        check(manifest["files"][0]["name"] == os.path.basename(newest["backup"]),
              "the manifest lists the backup file", repr(manifest))
        check(integrity(newest["backup"]) == "ok", "the backup passes integrity_check")
        check(sorted(os.listdir(backups)) == sorted(
            os.path.basename(d[k]) for _, d in made for k in ("backup", "manifest")),
            "the backup directory holds two backups and their manifests, no temporaries",
            repr(os.listdir(backups)))

        # Restore the newest into a fresh directory and serve it.
        fresh = os.path.join(root, "fresh")
        code, out, err = run_mann(mann, root, "restore", newest["manifest"], "--data-dir", fresh,
                                  "--json")
        check(code == 0, "restore into a fresh directory succeeds", f"{code} {err[-400:]!r}")
        second = Server(mann, root, fresh)
        missing = [mid for mid, _ in must_have
                   if second.request("GET", f"/memories/{mid}")[0] != 200]
        check(not missing and len(must_have) >= 20,
              f"the restored server knows all {len(must_have)} memories acknowledged before "
              "the backup began", f"{len(missing)} missing, e.g. {missing[:3]}")
        status, _, body = second.request("GET", "/health")
        check(status == 200 and body.get("memory_count") == newest["contents"]["entry_count"],
              "the restored server holds exactly the manifest's entry count",
              f"{status} {body!r} vs {newest['contents']['entry_count']}")

        # A restore over the live data directory is refused, even with --force.
        code, _, err = run_mann(mann, root, "restore", newest["manifest"], "--data-dir", data,
                                "--force")
        check(code == 1 and "in use" in err and err.count("\n") == 1,
              "restore over a live data directory is refused with one line saying it is in use",
              f"{code} {err!r}")
        status, _, _ = srv.request("GET", "/health")
        check(status == 200, "the live server is untouched by the refused restore")

        # Over a stopped directory that holds data: refused unless --force, which keeps the old.
        second.stop()
        second = None
        check(integrity(os.path.join(fresh, "mann.db")) == "ok",
              "the restored database passes integrity_check after serving")
        code, _, err = run_mann(mann, root, "restore", made[0][1]["manifest"], "--data-dir", fresh)
        check(code == 1 and "--force" in err, "restore over a database with data needs --force",
              f"{code} {err!r}")
        code, out, err = run_mann(mann, root, "restore", made[0][1]["manifest"], "--data-dir",
                                  fresh, "--force", "--json")
        doc = json.loads(out) if code == 0 else {}
        aside = doc.get("moved_aside", [])
        check(code == 0 and aside and os.path.exists(aside[0]),
              "restore --force replaces the database and keeps the old file aside",
              f"{code} {out!r} {err!r}")

        # A flipped byte is caught by the checksum, naming the file.
        target = made[0][1]["backup"]
        with open(target, "r+b") as f:
            f.seek(os.path.getsize(target) // 2)
            byte = f.read(1)
            f.seek(-1, 1)
            f.write(bytes([byte[0] ^ 0x01]))
        code, _, err = run_mann(mann, root, "restore", target, "--data-dir",
                                os.path.join(root, "fresh2"))
        check(code == 1 and "checksum mismatch" in err and os.path.basename(target) in err,
              "a corrupt backup is refused naming the checksum and the file", f"{code} {err!r}")
        check(not os.path.exists(os.path.join(root, "fresh2", "mann.db")),
              "a refused restore writes no database")
        code, _, err = run_mann(mann, root, "restore", os.path.join(backups, "nope.manifest.json"))
        check(code == 1 and "does not exist" in err, "a missing backup is a clear error",
              f"{code} {err!r}")
    finally:
        writer.stop()
        if second is not None:
            second.stop()
        srv.stop()


# ---- retention and upload ---------------------------------------------------------------------

def write_recorder(root):
    """A script that appends its argv, one JSON line per run, to argv.jsonl."""
    script = os.path.join(root, "record upload.py")
    with open(script, "w") as f:
        f.write("#!/usr/bin/env python3\n"
                "import json, os, sys\n"
                f"with open({os.path.join(root, 'argv.jsonl')!r}, 'a') as f:\n"
                "    f.write(json.dumps(sys.argv[1:]) + '\\n')\n"
                "sys.exit(int(os.environ.get('UPLOAD_EXIT', '0')))\n")
    os.chmod(script, 0o755)
    return script


def test_retention_and_upload(mann, root):
    data = os.path.join(root, "data-r")
    backups = os.path.join(root, "backups-r")
    os.makedirs(backups)
    code, _, err = run_mann(mann, root, "memory", "add", "the sky is blue", "--data-dir", data,
                            "--set", "encoder.kind=hashed")
    check(code == 0, "a memory to back up", err)
    old = ["mann-20200101T000000.000Z.db", "mann-20200101T000000.000Z.manifest.json",
           "mann-20200102T000000.000Z.db.partial"]
    foreign = ["notes.txt", "mann-20200101T000000.000Z.db.bak", "mann.db",
               "backup-20200101T000000.000Z.db"]
    for name in old + foreign:
        with open(os.path.join(backups, name), "w") as f:
            f.write("x")
        os.utime(os.path.join(backups, name), (0, 0))  # very old by mtime, too

    script = write_recorder(root)
    upload = f"'{script}' --bucket \"my bucket\""
    code, doc, err = backup(mann, root, data, backups, "--retention-days", "7",
                            env={"MANN_BACKUP_UPLOAD_COMMAND": upload})
    check(code == 0 and doc is not None, "backup with an upload command succeeds", err[-400:])
    if doc is None:
        return
    left = set(os.listdir(backups))
    check(not any(name in left for name in old), "retention removed our old files",
          repr(sorted(left)))
    check(all(name in left for name in foreign), "files not named like ours are never pruned",
          repr(sorted(left)))
    check(os.path.basename(doc["backup"]) in left and os.path.basename(doc["manifest"]) in left,
          "the new backup is kept")
    check(sorted(doc["pruned"]) == sorted(old), "--json lists what was pruned", repr(doc))
    with open(os.path.join(root, "argv.jsonl")) as f:
        runs = [json.loads(line) for line in f]
    check(runs == [["--bucket", "my bucket", doc["backup"], doc["manifest"]]],
          "the upload command receives its own words, then the backup and manifest paths",
          repr(runs))

    # A failing upload fails the command, keeps the backup and prunes nothing.
    stale = "mann-20200103T000000.000Z.db"
    with open(os.path.join(backups, stale), "w") as f:
        f.write("x")
    code, doc, err = backup(mann, root, data, backups,
                            env={"MANN_BACKUP_UPLOAD_COMMAND": upload, "UPLOAD_EXIT": "3"})
    check(code == 1 and "exited with 3" in err, "a failed upload exits 1 saying so",
          f"{code} {err!r}")
    check(doc is not None and os.path.exists(doc["backup"]), "the backup stays after a failed "
          "upload")
    check(os.path.exists(os.path.join(backups, stale)), "nothing is pruned after a failed upload")

    code, _, err = run_mann(mann, root, "backup", "--data-dir", data, "--dir", backups,
                            env={"MANN_BACKUP_UPLOAD_COMMAND": "upload 'unterminated"})
    check(code == 2 and "backup.upload_command" in err, "a malformed upload command is a "
          "configuration error naming the key", f"{code} {err!r}")
    code, _, err = run_mann(mann, root, "backup", "--data-dir", os.path.join(root, "none"),
                            "--dir", backups)
    check(code == 1 and "no database" in err, "backing up a missing database is a clear error",
          f"{code} {err!r}")


# ---- mann health ------------------------------------------------------------------------------

class Receiver:
    """A loopback HTTP server: GET /health answers `health` (status, body); POST /hook records
    the JSON body."""

    def __init__(self, health=(200, {"status": "unhealthy"})):
        self.posts = []
        self.health = health
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                status, body = outer.health
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                length = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(length)
                outer.posts.append((self.path, self.headers.get("Content-Type"), raw))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_health(mann, root):
    srv = Server(mann, root, os.path.join(root, "data-h"))
    receiver = Receiver()
    try:
        for path in ("/health", "/ready"):
            url = f"http://127.0.0.1:{srv.port}{path}"
            code, out, err = run_mann(mann, root, "health", "--url", url)
            check(code == 0 and out.startswith("healthy") and not err,
                  f"mann health of a live server's {path} exits 0", f"{code} {out!r} {err!r}")
        code, out, err = run_mann(mann, root, "health", "--set", f"server.port={srv.port}")
        check(code == 0, "mann health defaults to server.host:server.port/health",
              f"{code} {err!r}")

        # An answer that is not healthy.
        code, out, err = run_mann(mann, root, "health", "--url", receiver.url("/health"))
        check(code == 1 and "status \"unhealthy\"" in err and err.count("\n") == 1,
              "an unhealthy status exits 1 with one line saying so", f"{code} {err!r}")
        receiver.health = (503, {"status": "healthy"})
        code, out, err = run_mann(mann, root, "health", "--url", receiver.url("/health"))
        check(code == 1 and "HTTP 503" in err, "a 503 exits 1 naming it", f"{code} {err!r}")
    finally:
        srv.stop()
    try:
        # The stopped server: refused, reported to the webhook given by flag and by environment.
        url = f"http://127.0.0.1:{srv.port}/health"
        started = time.monotonic()
        code, out, err = run_mann(mann, root, "health", "--url", url, "--timeout", "2",
                                  "--webhook", receiver.url("/hook"))
        check(code == 1 and err.count("\n") == 1 and "unreachable" in err,
              "a stopped server exits 1 with one line", f"{code} {err!r}")
        check(time.monotonic() - started < 10, "the check is bounded by --timeout")
        check(len(receiver.posts) == 1, "the webhook received one POST", repr(receiver.posts))
        if receiver.posts:
            path, ctype, raw = receiver.posts[0]
            body = json.loads(raw)
            check(path == "/hook" and ctype == "application/json" and list(body) == ["text"]
                  and url in body["text"] and "unreachable" in body["text"],
                  "the POST is Slack-compatible JSON naming the URL and the reason", repr(raw))
        code, out, err = run_mann(mann, root, "health", "--url", url, "--timeout", "2",
                                  env={"MANN_HEALTH_WEBHOOK": receiver.url("/env-hook")})
        check(code == 1 and [p for p, _, _ in receiver.posts] == ["/hook", "/env-hook"],
              "health.webhook from MANN_HEALTH_WEBHOOK is used", repr(receiver.posts))
        code, out, err = run_mann(mann, root, "health", "--url", "ftp://127.0.0.1/")
        check(code == 2 and err.startswith("error:"), "a non-HTTP --url is a usage error",
              f"{code} {err!r}")
    finally:
        receiver.stop()


# ---- PostgreSQL -------------------------------------------------------------------------------

def psql(url, sql):
    return subprocess.run(["psql", "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-d", url,
                           "-c", sql], capture_output=True, text=True, timeout=TIMEOUT)


def with_database(url, name):
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path="/" + name))


def test_postgres(mann, root):
    server = os.environ.get("MANN_TEST_POSTGRES_URL", "")
    if not server:
        if os.environ.get("MANN_REQUIRE_SERVICES") == "1":
            CHECKS.fail("MANN_TEST_POSTGRES_URL is unset although MANN_REQUIRE_SERVICES=1")
        else:
            print("skip: PostgreSQL scenario (MANN_TEST_POSTGRES_URL is unset)")
        return
    source = f"mann_backup_it_src_{os.getpid()}"
    target = f"mann_backup_it_dst_{os.getpid()}"
    for name in (source, target):
        psql(server, f"DROP DATABASE IF EXISTS {name}")
        made = psql(server, f"CREATE DATABASE {name}")
        check(made.returncode == 0, f"create database {name}", made.stderr)
    try:
        src_url, dst_url = with_database(server, source), with_database(server, target)
        pg = ["--set", "storage.backend=postgres", "--set", f"storage.postgres_url={src_url}"]
        code, out, err = run_mann(mann, root, "memory", "add", "postgres keeps this", *pg,
                                  "--set", "encoder.kind=hashed")
        stored = code == 0
        if not stored:
            # Before the PostgreSQL store exists, its tables are made here.
            psql(src_url, "CREATE TABLE entries (id text PRIMARY KEY, content text);"
                          "INSERT INTO entries VALUES ('e1', 'postgres keeps this');")
        backups = os.path.join(root, "backups-pg")
        code, doc, err = backup(mann, root, os.path.join(root, "unused"), backups, *pg)
        print(f"postgres: the store {'made' if stored else 'was absent; test made'} the tables; "
              f"backup exit {code}")
        check(code == 0 and doc is not None and doc["backup"].endswith(".pgdump")
              and doc["contents"]["entry_count"] == 1,
              "mann backup of PostgreSQL makes a pg_dump archive with its manifest",
              f"{code} {doc!r} {err[-400:]!r}")
        if doc is None:
            return
        password = urllib.parse.urlsplit(src_url).password
        check(not password or password not in err + json.dumps(doc),
              "the PostgreSQL password appears nowhere in the output")
        code, out, err = run_mann(mann, root, "restore", doc["manifest"], "--set",
                                  f"storage.postgres_url={dst_url}")
        check(code == 0, "mann restore into an empty PostgreSQL database", err[-400:])
        rows = psql(dst_url, "SELECT content FROM entries")
        check(rows.stdout.strip() == "postgres keeps this", "the restored database holds the "
              "memory", rows.stdout + rows.stderr)
        code, out, err = run_mann(mann, root, "restore", doc["manifest"], "--set",
                                  f"storage.postgres_url={dst_url}")
        check(code == 1 and "not empty" in err, "restore into a non-empty PostgreSQL database is "
              "refused", f"{code} {err!r}")
    finally:
        for name in (source, target):
            psql(server, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--mann", required=True)
    args = parser.parse_args()
    mann = os.path.abspath(args.mann)
    root = tempfile.mkdtemp(prefix="mann-backup-it-")
    try:
        CHECKS.run_all([
            ("backup and restore while writing",
             lambda: test_backup_restore_while_writing(mann, root)),
            ("retention and upload", lambda: test_retention_and_upload(mann, root)),
            ("health", lambda: test_health(mann, root)),
            ("postgres", lambda: test_postgres(mann, root)),
        ])
    finally:
        harness.clean_up(CHECKS, root)
    return CHECKS.summary()


if __name__ == "__main__":
    sys.exit(main())

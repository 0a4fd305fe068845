"""Shared plumbing of the integration tests: counting checks, running named scenarios so one
crash or hang fails only its own scenario, a hermetic environment, and the closing summary line
("N passed, M failed") that CI reads."""

import http.client
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse

TIMEOUT = 60  # seconds, for every subprocess and every wait


class Checks:
    def __init__(self):
        self.passed = 0
        self.failures = []

    def check(self, condition, what, detail=""):
        if condition:
            self.passed += 1
        else:
            self.failures.append(what + (f"\n      {detail}" if detail else ""))

    def fail(self, what):
        self.failures.append(what)

    def scenario(self, name, fn, *args):
        """Runs fn(*args); an exception (a crash or a timeout) fails the scenario with its story."""
        try:
            fn(*args)
        except Exception as e:  # noqa: BLE001 - every failure must be reported, not raised
            self.failures.append(f"{name}: {type(e).__name__}: {e}")

    def run_all(self, scenarios):
        """Runs each (name, fn) of `scenarios` as a scenario, in order."""
        for name, fn in scenarios:
            self.scenario(name, fn)

    def summary(self):
        """Prints the failed checks and the summary line; returns the exit status."""
        for failure in self.failures:
            print("FAIL:", failure)
        print(f"{self.passed} passed, {len(self.failures)} failed")
        sys.stdout.flush()
        return 1 if self.failures else 0


def hermetic_env(root, **extra):
    """An environment that sees nothing of the developer's: its own HOME, no MANN_ settings."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("MANN_") and k not in ("NO_COLOR", "XDG_DATA_HOME")}
    env["HOME"] = os.path.join(root, "home")
    env["LANG"] = "C.UTF-8"
    os.makedirs(env["HOME"], exist_ok=True)
    env.update(extra)
    return env


def json_document(checks, args, code, out, err):
    """The one JSON document a `--json` command printed on stdout, or None after a failed check
    that shows what it printed instead."""
    try:
        doc = json.loads(out)
    except ValueError:
        doc = None
    checks.check(doc is not None, f"{' '.join(args[:2])} --json prints one JSON document",
                 f"code {code} stdout {out[:300]!r} stderr {err[:300]!r}")
    return doc


# ---- `mann serve` over loopback HTTP ----------------------------------------------------------

def clean_up(checks, root):
    """When a check failed, prints the tail of each log under `root` (what the servers said);
    then removes `root`."""
    if checks.failures:
        for name in sorted(os.listdir(root)):
            if name.endswith(".log"):
                with open(os.path.join(root, name)) as f:
                    tail = f.read()[-2000:]
                print(f"--- {name} (tail)\n{tail}")
    shutil.rmtree(root, ignore_errors=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One `mann serve` process on an ephemeral port over a data directory."""

    def __init__(self, mann, root, data_dir, *extra, env=None, port=None):
        """`port`: a fixed port, e.g. to restart a replica where a load balancer expects it."""
        self.port = port or free_port()
        self.log = open(os.path.join(root, f"serve-{self.port}.log"), "a")
        self.proc = subprocess.Popen(
            [mann, "serve", "--data-dir", data_dir, "--set", "encoder.kind=hashed",
             "--set", f"server.port={self.port}", *extra],
            stdout=subprocess.PIPE, stderr=self.log, text=True,
            env=hermetic_env(root, **(env or {})))
        # "mann: serving on http://127.0.0.1:PORT" once listening; bounded like every wait.
        ready, _, _ = select.select([self.proc.stdout], [], [], TIMEOUT)
        line = self.proc.stdout.readline() if ready else ""
        if f":{self.port}" not in line:
            self.stop()
            raise RuntimeError(f"mann serve did not start: {line!r}")

    def request(self, method, path, body=None, headers=None, raw=None):
        """(status, headers, parsed JSON or text)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=TIMEOUT)
        try:
            hdrs = dict(headers or {})
            data = raw
            if body is not None:
                data = json.dumps(body).encode()
                hdrs.setdefault("Content-Type", "application/json")
            conn.request(method, path, body=data, headers=hdrs)
            resp = conn.getresponse()
            text = resp.read().decode()
            ctype = resp.getheader("Content-Type", "")
            parsed = json.loads(text) if ctype.startswith("application/json") and text else text
            return resp.status, resp, parsed
        finally:
            conn.close()

    def stop(self, sig=signal.SIGTERM):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(timeout=TIMEOUT)
        finally:
            self.log.close()


def raw_exchange(port, data):
    """Sends bytes on a fresh connection and returns the status line and headers."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as s:
        s.sendall(data)
        return read_response(s)


def read_response(s):
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode(errors="replace").split("\r\n")
    status = int(lines[0].split()[1]) if lines and len(lines[0].split()) > 1 else 0
    headers = {k.strip().lower(): v.strip() for k, _, v in (l.partition(":") for l in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = s.recv(65536)
        if not chunk:
            break
        rest += chunk
    return status, headers, rest[:length].decode(errors="replace")


# ---- a Redis of the test's own ----------------------------------------------------------------

class Redis:
    """A redis-server on loopback and a free port, without persistence, in `root`/redis. stop()
    and start() again keep the port, for tests of an outage."""

    def __init__(self, root):
        self.port = free_port()
        self.dir = os.path.join(root, "redis")
        os.makedirs(self.dir, exist_ok=True)
        self.log_path = os.path.join(root, "redis.log")
        self.proc = None
        self.log = None
        self.start()

    def start(self):
        self.log = open(self.log_path, "a")
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.dir],
            stdout=self.log, stderr=subprocess.STDOUT)
        wait_for(f"redis-server listening on {self.port}", self.listening)

    def listening(self):
        if self.proc.poll() is not None:
            raise RuntimeError(f"redis-server exited with status {self.proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False

    def cli(self, *args):
        """redis-cli's output for one command, stripped."""
        out = subprocess.run(["redis-cli", "-p", str(self.port), *args], capture_output=True,
                             text=True, timeout=TIMEOUT)
        return out.stdout.strip()

    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self):
        if self.proc is not None:
            stop_process(self.proc, self.log)
            self.proc = None


# ---- waiting, and Prometheus ------------------------------------------------------------------

def http_get(port, path):
    """(status, body text) of GET http://127.0.0.1:port/path."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


def timed_request(port, method, path, body=None, timeout=TIMEOUT):
    """(status, parsed JSON or text, seconds taken) of a request to http://127.0.0.1:port; a JSON
    body is sent for `body`. Status 0, with the error as text, when the connection failed or
    timed out: for tests that expect outages and must tell a refusal from a hang."""
    started = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if body is not None else {}
        conn.request(method, path, body=data, headers=headers)
        resp = conn.getresponse()
        text = resp.read().decode()
        ctype = resp.getheader("Content-Type", "")
        parsed = json.loads(text) if ctype.startswith("application/json") and text else text
        return resp.status, parsed, time.monotonic() - started
    except OSError as e:
        return 0, f"{type(e).__name__}: {e}", time.monotonic() - started
    finally:
        conn.close()


def wait_for(what, probe):
    """Calls probe() until it returns something truthy, for at most TIMEOUT seconds; returns that,
    or raises TimeoutError naming `what` and the last value seen."""
    deadline = time.monotonic() + TIMEOUT
    last = None
    while time.monotonic() < deadline:
        try:
            last = probe()
        except OSError as e:  # not listening yet, or a connection reset
            last = f"{type(e).__name__}: {e}"
        else:
            if last:
                return last
        time.sleep(0.2)
    raise TimeoutError(f"{what} within {TIMEOUT} s; last seen: {last!r}"[:600])


def stop_process(proc, log):
    """SIGTERM, then SIGKILL if it has not exited within TIMEOUT; returns the exit status."""
    try:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait(timeout=TIMEOUT)
    finally:
        log.close()


class Prometheus:
    """A Prometheus server scraping the mann servers on `target_ports` every second, listening on
    loopback only, with its storage in `root`."""

    def __init__(self, binary, root, target_ports):
        self.port = free_port()
        config = os.path.join(root, "prometheus.yml")
        with open(config, "w") as f:
            f.write("global:\n"
                    "  scrape_interval: 1s\n"
                    "  scrape_timeout: 1s\n"
                    "  evaluation_interval: 1s\n"
                    "scrape_configs:\n"
                    "  - job_name: mann\n"
                    "    static_configs:\n"
                    "      - targets: [" +
                    ", ".join(f"'127.0.0.1:{p}'" for p in target_ports) + "]\n")
        self.log = open(os.path.join(root, "prometheus.log"), "w")
        self.proc = subprocess.Popen(
            [binary, f"--config.file={config}",
             f"--storage.tsdb.path={os.path.join(root, 'tsdb')}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=self.log, stderr=subprocess.STDOUT, cwd=root,
            env=hermetic_env(root))

        def ready():
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited at start with status {self.proc.returncode}")
            return http_get(self.port, "/-/ready")[0] == 200

        try:
            wait_for("Prometheus ready", ready)
        except Exception:
            self.stop()
            raise

    def query(self, expr):
        """The instant vector of `expr`: [(labels, float value)]. Raises on an API error."""
        query = urllib.parse.urlencode({"query": expr})
        status, text = http_get(self.port, "/api/v1/query?" + query)
        doc = json.loads(text)
        if status != 200 or doc.get("status") != "success":
            raise RuntimeError(f"query {expr!r}: HTTP {status}: {text[:300]}")
        return [(r["metric"], float(r["value"][1])) for r in doc["data"]["result"]]

    def value(self, expr):
        """The single value of `expr`, or None while it has no sample."""
        result = self.query(expr)
        return result[0][1] if len(result) == 1 else None

    def stop(self):
        return stop_process(self.proc, self.log)

"""A production-shaped deployment on loopback, for the replica tests and the replica benchmark:
PostgreSQL and Redis (started by scripts/services.sh in a directory of their own), N `mann serve`
replicas sharing them, nginx in front with an upstream of the replicas, and optionally a
Prometheus scraping every replica. Every process binds 127.0.0.1 and lives under one temporary
root; Cluster.stop() ends them all, also after a failure."""

import os
import signal
import subprocess

import harness

SOURCE_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SERVICES = os.path.join(SOURCE_DIR, "scripts", "services.sh")
NGINX = "/usr/sbin/nginx"


def read_env_file(path):
    out = {}
    with open(path) as f:
        for line in f:
            key, _, value = line.strip().partition("=")
            if key:
                out[key] = value
    return out


class Services:
    """PostgreSQL and Redis for the cluster. Redis can be stopped and started again on the same
    port, to show the replicas serving without it and recovering."""

    def __init__(self, root):
        self.dir = os.path.join(root, "services")
        os.chmod(root, 0o755)  # as root, PostgreSQL runs as `postgres`, which must reach its data
        subprocess.run([SERVICES, "start", self.dir], check=True, timeout=harness.TIMEOUT,
                       stdout=subprocess.DEVNULL)
        env = read_env_file(os.path.join(self.dir, "env"))
        self.postgres_url = env["MANN_TEST_POSTGRES_URL"]
        self.redis_url = env["MANN_TEST_REDIS_URL"]
        self.redis_port = int(self.redis_url.rsplit(":", 1)[1].split("/")[0])

    def redis_pid(self):
        try:
            with open(os.path.join(self.dir, "redis", "redis.pid")) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    def stop_redis(self):
        pid = self.redis_pid()
        if pid is None:
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        harness.wait_for("Redis to exit", lambda: not os.path.exists(f"/proc/{pid}"))

    def start_redis(self):
        redis_dir = os.path.join(self.dir, "redis")
        subprocess.run(["redis-server", "--bind", "127.0.0.1", "--port", str(self.redis_port),
                        "--dir", redis_dir, "--save", "", "--appendonly", "no",
                        "--daemonize", "yes", "--pidfile", os.path.join(redis_dir, "redis.pid"),
                        "--logfile", os.path.join(redis_dir, "server.log")],
                       check=True, timeout=harness.TIMEOUT)
        harness.wait_for("Redis to answer PING", lambda: subprocess.run(
            ["redis-cli", "-p", str(self.redis_port), "ping"], capture_output=True, text=True,
            timeout=harness.TIMEOUT).stdout.strip() == "PONG")

    def stop(self):
        subprocess.run([SERVICES, "stop", self.dir], timeout=harness.TIMEOUT,
                       stdout=subprocess.DEVNULL)


class Nginx:
    """nginx in front of the replicas, as deploy/nginx/mann.conf sets it up: round robin over
    keep-alive upstream connections, a replica that refuses or fails taken out for a while, and
    idempotent requests retried on the next one."""

    def __init__(self, root, replica_ports):
        self.dir = os.path.join(root, "nginx")
        os.makedirs(os.path.join(self.dir, "logs"), exist_ok=True)
        self.port = harness.free_port()
        servers = "".join(f"    server 127.0.0.1:{p} max_fails=1 fail_timeout=2s;\n"
                          for p in replica_ports)
        config = os.path.join(self.dir, "nginx.conf")
        with open(config, "w") as f:
            f.write(f"""daemon off;
worker_processes auto;
pid {self.dir}/nginx.pid;
error_log {self.dir}/logs/error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {self.dir}/body;
  proxy_temp_path {self.dir}/proxy;
  fastcgi_temp_path {self.dir}/fastcgi;
  uwsgi_temp_path {self.dir}/uwsgi;
  scgi_temp_path {self.dir}/scgi;
  upstream mann {{
{servers}    keepalive 32;
  }}
  server {{
    listen 127.0.0.1:{self.port};
    client_max_body_size 1m;
    location / {{
      proxy_pass http://mann;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_connect_timeout 2s;
      proxy_read_timeout 30s;
      proxy_next_upstream error timeout http_502 http_503;
      proxy_next_upstream_tries 3;
    }}
  }}
}}
""")
        self.log = open(os.path.join(self.dir, "logs", "stdout.log"), "w")
        self.proc = subprocess.Popen([NGINX, "-p", self.dir, "-c", config], stdout=self.log,
                                     stderr=subprocess.STDOUT)
        harness.wait_for("nginx listening", self._listening)

    def _listening(self):
        if self.proc.poll() is not None:
            raise RuntimeError(f"nginx exited with status {self.proc.returncode}")
        try:
            return harness.http_get(self.port, "/health")[0] in (200, 502, 503)
        except OSError:
            return False

    def stop(self):
        return harness.stop_process(self.proc, self.log)


class Replica:
    """One `mann serve` of the cluster, restartable on the same port."""

    def __init__(self, mann, root, index, port, extra):
        self.mann = mann
        self.root = root
        self.index = index
        self.port = port
        self.extra = extra
        self.data_dir = os.path.join(root, f"replica-{index}")
        self.server = None

    def start(self):
        self.server = harness.Server(self.mann, self.root, self.data_dir, *self.extra,
                                     port=self.port)

    def kill(self):
        """SIGKILL: no drain, no flush; what was acknowledged must already be durable."""
        self.server.proc.kill()
        self.server.proc.wait(timeout=harness.TIMEOUT)
        self.server.log.close()

    def stop(self):
        if self.server is not None and self.server.proc.poll() is None:
            return self.server.stop()
        return None

    def request(self, method, path, body=None):
        return self.server.request(method, path, body)


class Cluster:
    def __init__(self, mann, root, replicas=3, extra=(), prometheus=None):
        """`extra`: more `--set key=value` arguments for every replica; `prometheus`: the path of
        a Prometheus binary to scrape the replicas, or None."""
        self.root = root
        self.services = None
        self.replicas = []
        self.nginx = None
        self.prometheus = None
        try:
            self.services = Services(root)
            common = ["--set", "storage.backend=postgres",
                      "--set", f"storage.postgres_url={self.services.postgres_url}",
                      "--set", f"redis.url={self.services.redis_url}",
                      "--set", "monitoring.enabled=false", *extra]
            ports = [harness.free_port() for _ in range(replicas)]
            for i, port in enumerate(ports):
                replica = Replica(mann, root, i, port, common)
                replica.start()
                self.replicas.append(replica)
            self.nginx = Nginx(root, ports)
            if prometheus:
                self.prometheus = harness.Prometheus(prometheus, root, ports)
        except Exception:
            self.stop()
            raise

    def request(self, method, path, body=None, timeout=harness.TIMEOUT):
        """Through nginx: (status, parsed JSON or text); OSError when nginx cannot be reached."""
        status, parsed, _ = harness.timed_request(self.nginx.port, method, path, body, timeout)
        if status == 0:
            raise OSError(parsed)
        return status, parsed

    def stop(self):
        for part in [self.prometheus, self.nginx]:
            if part is not None:
                try:
                    part.stop()
                except Exception:  # noqa: BLE001 - the rest must still be stopped
                    pass
        for replica in self.replicas:
            try:
                replica.stop()
            except Exception:  # noqa: BLE001
                pass
        if self.services is not None:
            self.services.stop()


def metric_value(text, name, labels=None):
    """The value of the first sample of `name` (with every label in `labels`) in a Prometheus
    exposition, or None."""
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        series, _, value = line.rpartition(" ")
        if series != name and not series.startswith(name + "{"):
            continue
        if labels and not all(f'{k}="{v}"' in series for k, v in labels.items()):
            continue
        try:
            return float(value)
        except ValueError:
            return None
    return None


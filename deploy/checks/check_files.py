"""Checks of the deployment files that need a parser or the real binary rather than a tool of
their own; run by scripts/check-deploy.sh (which runs promtool, amtool, nginx -t and
systemd-analyze itself) as

    /usr/bin/python3 deploy/checks/check_files.py --root REPO [--mann BINARY]

Without --mann the checks that need the binary (the configuration files validated by mann
itself, the metric names from a live /metrics, nginx in front of real replicas) are reported
as skipped, never as passed. Prints one line per failed check and the summary "N passed, M
failed, K skipped"; exits 1 when a check failed.

Needs /usr/bin/python3 with python3-yaml (Debian), and nginx for the live proxy check.
"""

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib

import yaml

GUIDE_REQUESTS = {"memory": "512Mi", "cpu": "250m"}
GUIDE_LIMITS = {"memory": "2Gi", "cpu": "1000m"}
PROBE_ROUTES = ("/health", "/ready", "/metrics")
# The Dockerfile's runtime stage starts from debian:bookworm-slim, which already has these.
BASE_IMAGE_PACKAGES = {"libc6", "libstdc++6", "libgcc-s1", "zlib1g"}


class Checks:
    def __init__(self):
        self.passed = 0
        self.failures = []
        self.skipped = []

    def check(self, condition, what, detail=""):
        if condition:
            self.passed += 1
        else:
            self.failures.append(what + (f"\n      {detail}" if detail else ""))
        return condition

    def skip(self, what, why):
        self.skipped.append(f"{what}: {why}")

    def guarded(self, name, fn, *args):
        """Runs one group of checks; an exception fails that group with its story."""
        try:
            fn(*args)
        except Exception as e:  # noqa: BLE001 - every failure is reported, not raised
            self.failures.append(f"{name}: {type(e).__name__}: {e}")

    def summary(self):
        for s in self.skipped:
            print("SKIP:", s)
        for f in self.failures:
            print("FAIL:", f)
        print(f"{self.passed} passed, {len(self.failures)} failed, {len(self.skipped)} skipped")
        return 1 if self.failures else 0


# ---- helpers ---------------------------------------------------------------------------------

def load_yaml_documents(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def documented_variables_and_keys(root):
    """The MANN_* variables and dotted keys that docs/configuration.md documents."""
    with open(os.path.join(root, "docs", "configuration.md")) as f:
        text = f.read()
    variables = set(re.findall(r"`(MANN_[A-Z0-9_]+)`", text))
    keys = set(re.findall(r"^\| `([a-z_]+\.[a-z0-9_]+)` \|", text, re.M))
    return variables, keys


def flatten_toml(table, prefix=""):
    """{"server": {"port": 1}} -> {"server.port": 1}."""
    out = {}
    for name, value in table.items():
        dotted = f"{prefix}{name}"
        if isinstance(value, dict):
            out.update(flatten_toml(value, dotted + "."))
        else:
            out[dotted] = value
    return out


def k8s_objects(root):
    """(kind, name) -> object for every manifest under deploy/kubernetes."""
    objects = {}
    directory = os.path.join(root, "deploy", "kubernetes")
    for name in sorted(os.listdir(directory)):
        if name.endswith(".yaml") and name != "kustomization.yaml":
            for doc in load_yaml_documents(os.path.join(directory, name)):
                objects[(doc["kind"], doc["metadata"]["name"])] = doc
    return objects


def configmap_toml(root):
    cm = k8s_objects(root)[("ConfigMap", "mann-config")]
    return cm["data"]["mann.toml"]


def metric_names_in(expr):
    """Names of the series a PromQL expression selects (a small lexer, not a parser): strings,
    label matchers, ranges and grouping clauses are removed; an identifier that is not a
    function call or a keyword is a metric name."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}", " ", expr)
    expr = re.sub(r"\[[^\]]*\]", " ", expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    keywords = {"and", "or", "unless", "bool", "offset", "by", "without", "inf", "nan"}
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", expr):
        name = m.group(0)
        rest = expr[m.end():].lstrip()
        if rest.startswith("(") or name.lower() in keywords:
            continue
        if re.fullmatch(r"\d+[smhdwy]", name):
            continue
        names.add(name)
    return names


def rule_groups(root):
    with open(os.path.join(root, "deploy", "prometheus", "rules", "mann.rules.yml")) as f:
        return yaml.safe_load(f)["groups"]


# ---- static checks ---------------------------------------------------------------------------

def check_compose(c, root):
    directory = os.path.join(root, "deploy", "docker")
    (compose,) = load_yaml_documents(os.path.join(directory, "compose.yaml"))
    services = compose["services"]
    replicas = [n for n, s in services.items()
                if str(s.get("image", "")).startswith("mann:") and not s.get("profiles")]
    c.check(len(replicas) == 3, "compose: three mann replicas", f"found {replicas}")
    for name in ("nginx", "postgres", "redis", "prometheus", "alertmanager", "grafana"):
        c.check(name in services, f"compose: service {name}")
    for name, service in services.items():
        test = service.get("healthcheck", {}).get("test")
        disabled = service.get("healthcheck", {}).get("disable")
        c.check(bool(test) or disabled, f"compose: {name} has a healthcheck")
    for name in replicas:
        s = services[name]
        test = " ".join(s["healthcheck"]["test"])
        c.check("mann health --url" in test and test.endswith("/health"),
                f"compose: {name} checks /health with `mann health --url`", test)
        deps = s.get("depends_on", {})
        for dep in ("postgres", "redis"):
            c.check(deps.get(dep, {}).get("condition") == "service_healthy",
                    f"compose: {name} waits for a healthy {dep}")
        env = s["environment"]
        c.check(env.get("MANN_STORAGE_BACKEND") == "postgres",
                f"compose: {name} uses the shared PostgreSQL store")
        c.check(int(s["stop_grace_period"].rstrip("s")) >
                int(env["MANN_SHUTDOWN_GRACE"]) + 10,  # server.drain_timeout default
                f"compose: {name} stop_grace_period covers shutdown_grace + drain_timeout")

    # Every file the compose file mounts or builds from exists.
    def exists(rel):
        return os.path.exists(os.path.normpath(os.path.join(directory, rel)))
    for name, s in services.items():
        for volume in s.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                c.check(exists(source), f"compose: {name} mounts an existing {source}")
        for secret in s.get("secrets", []):
            c.check(secret in compose.get("secrets", {}), f"compose: secret {secret} defined")
        build = s.get("build")
        if build:
            c.check(exists(os.path.join(build["context"], build["dockerfile"])),
                    f"compose: {name} builds from an existing Dockerfile")
    for name, config in compose.get("configs", {}).items():
        # keys.toml is the operator's copy of keys.toml.example.
        c.check(exists(config["file"]) or exists(config["file"] + ".example"),
                f"compose: config {name} ({config['file']} or its .example) exists")

    # Every variable the compose file interpolates is in .env.example.
    with open(os.path.join(directory, "compose.yaml")) as f:
        used = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", f.read()))
    for secret in compose.get("secrets", {}).values():
        if "environment" in secret:
            used.add(secret["environment"])
    with open(os.path.join(directory, ".env.example")) as f:
        given = set(re.findall(r"^([A-Z_][A-Z0-9_]*)=", f.read(), re.M))
    c.check(used <= given, "compose: .env.example sets every variable compose.yaml reads",
            f"missing {sorted(used - given)}")


def check_dockerfile(c, root, mann):
    with open(os.path.join(root, "deploy", "docker", "Dockerfile")) as f:
        text = f.read()
    stages = re.findall(r"^FROM (\S+)(?: AS (\S+))?", text, re.M)
    c.check([s[0] for s in stages] ==
            ["debian:${DEBIAN_RELEASE}", "debian:${DEBIAN_RELEASE}-slim"] and
            "ARG DEBIAN_RELEASE=bookworm" in text,
            "Dockerfile: builds on debian:bookworm, runs on debian:bookworm-slim", str(stages))
    users = re.findall(r"^USER (\S+)", text, re.M)
    c.check(users and users[-1].split(":")[0] not in ("root", "0"),
            "Dockerfile: runs as a non-root user", str(users))
    c.check(re.search(r"^HEALTHCHECK .*\n?.*mann\", \"health\", \"--url\", \"[^\"]*/health\"",
                      text, re.M) is not None,
            "Dockerfile: HEALTHCHECK runs `mann health --url .../health`")
    c.check(re.search(r"^EXPOSE 8000", text, re.M) is not None, "Dockerfile: EXPOSE 8000")
    c.check(re.search(r"^VOLUME \[\"/var/lib/mann\"\]", text, re.M) is not None,
            "Dockerfile: the data directory is a volume")
    c.check("scripts/fetch-model.sh" in text, "Dockerfile: fetches the model at build time")

    # The build stage installs only packages of scripts/setup.sh.
    installs = re.findall(r"apt-get install -y --no-install-recommends((?:[^\n]*\\\n)+[^\n]*)",
                          text)
    c.check(len(installs) == 2, "Dockerfile: one apt-get install per stage")
    if len(installs) != 2:
        return

    def packages(block):
        words = re.sub(r"\\\n", " ", block).split("&&")[0].split()
        return {w for w in words if re.fullmatch(r"[a-z0-9][a-z0-9.+-]+", w)}
    build_packages, runtime_packages = packages(installs[0]), packages(installs[1])
    with open(os.path.join(root, "scripts", "setup.sh")) as f:
        setup = f.read()
    listed = set(re.search(r"packages=\((.*?)\)", setup, re.S).group(1).split())
    listed |= {"npm", "ca-certificates"}  # setup.sh adds npm when none is on PATH
    c.check(build_packages <= listed, "Dockerfile: build stage packages are setup.sh's",
            f"not in setup.sh: {sorted(build_packages - listed)}")

    # The runtime stage has the package of every library the binary links directly.
    if not mann:
        c.skip("Dockerfile runtime libraries", "no mann binary given (--mann)")
        return
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]",
                        subprocess.run(["readelf", "-d", mann], capture_output=True,
                                       text=True, check=True).stdout)
    ldd = subprocess.run(["ldd", mann], capture_output=True, text=True, check=True).stdout
    paths = dict(re.findall(r"^\s*(\S+) => (\S+)", ldd, re.M))
    missing = []
    for lib in needed:
        path = paths.get(lib)
        if not path:
            continue
        owner = subprocess.run(["dpkg", "-S", os.path.realpath(path)], capture_output=True,
                               text=True)
        if owner.returncode != 0:
            owner = subprocess.run(["dpkg", "-S", path], capture_output=True, text=True)
        package = owner.stdout.split(":")[0].strip()
        if package and package not in runtime_packages | BASE_IMAGE_PACKAGES:
            missing.append(f"{lib} ({package})")
    c.check(not missing, "Dockerfile: runtime stage installs every library mann links",
            f"missing {missing}")


def check_kubernetes(c, root):
    directory = os.path.join(root, "deploy", "kubernetes")
    objects = k8s_objects(root)
    deployment = objects[("Deployment", "mann")]
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    c.check(spec["replicas"] == 3, "kubernetes: three replicas")
    c.check(spec["selector"]["matchLabels"].items() <=
            spec["template"]["metadata"]["labels"].items(),
            "kubernetes: the Deployment's selector matches its pods")
    c.check(container["livenessProbe"]["httpGet"]["path"] == "/health",
            "kubernetes: liveness probe on /health")
    c.check(container["readinessProbe"]["httpGet"]["path"] == "/ready",
            "kubernetes: readiness probe on /ready")
    c.check(container["resources"]["requests"] == GUIDE_REQUESTS and
            container["resources"]["limits"] == GUIDE_LIMITS,
            "kubernetes: the guide's resources", str(container["resources"]))
    security = pod["securityContext"]
    c.check(security.get("runAsNonRoot") is True and security.get("runAsUser", 0) > 0,
            "kubernetes: pods run as a non-root user")
    c.check(container["securityContext"].get("allowPrivilegeEscalation") is False and
            container["securityContext"].get("readOnlyRootFilesystem") is True,
            "kubernetes: no privilege escalation, read-only root file system")

    config = flatten_toml(tomllib.loads(configmap_toml(root)))
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    sleep = int(pre_stop[1]) if pre_stop[0] == "sleep" else 0
    drain = config.get("server.shutdown_grace", 0) + config.get("server.drain_timeout", 10)
    c.check(pod["terminationGracePeriodSeconds"] > sleep + drain,
            "kubernetes: terminationGracePeriodSeconds > preStop + shutdown_grace + drain",
            f"{pod['terminationGracePeriodSeconds']} vs {sleep} + {drain}")
    port = config.get("server.port", 8000)
    c.check(any(p["containerPort"] == port and p["name"] == "http" for p in container["ports"]),
            "kubernetes: the container port is server.port")

    service = objects[("Service", "mann")]
    c.check(service["spec"]["selector"].items() <=
            spec["template"]["metadata"]["labels"].items() and
            service["spec"]["ports"][0]["targetPort"] == "http",
            "kubernetes: the Service selects the pods' http port")
    pdb = objects[("PodDisruptionBudget", "mann")]
    c.check(0 < pdb["spec"]["minAvailable"] < spec["replicas"],
            "kubernetes: the PodDisruptionBudget lets one pod go at a time")

    volumes = {v["name"]: v for v in pod["volumes"]}
    c.check(volumes["config"]["configMap"]["name"] in
            {n for k, n in objects if k == "ConfigMap"}, "kubernetes: the ConfigMap exists")
    secrets = {n for k, n in objects if k == "Secret"}
    c.check({e["secretRef"]["name"] for e in container["envFrom"]} <= secrets and
            volumes["api-keys"]["secret"]["secretName"] in secrets,
            "kubernetes: the Secrets the pods read are in the template")
    env_secret = objects[("Secret", "mann-secrets")]["stringData"]
    for variable in ("MANN_DATABASE_URL", "MANN_REDIS_URL", "MANN_PAGER_WEBHOOK",
                     "MANN_PAGERDUTY_ROUTING_KEY", "MANN_SMTP_PASSWORD"):
        c.check(variable in env_secret, f"kubernetes: the Secret template holds {variable}")
    c.check(config.get("security.api_keys_file", "").startswith(
        next(m["mountPath"] for m in container["volumeMounts"] if m["name"] == "api-keys")),
        "kubernetes: security.api_keys_file is inside the mounted keys Secret")

    cron = objects[("CronJob", "mann-backup")]
    job_pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    claims = {v["persistentVolumeClaim"]["claimName"] for v in job_pod["volumes"]
              if "persistentVolumeClaim" in v}
    c.check(claims <= {n for k, n in objects if k == "PersistentVolumeClaim"} and claims,
            "kubernetes: the backup CronJob writes to the PersistentVolumeClaim")
    c.check(job_pod["securityContext"].get("runAsNonRoot") is True,
            "kubernetes: the backup job runs as a non-root user")

    with open(os.path.join(directory, "kustomization.yaml")) as f:
        kustomization = yaml.safe_load(f)
    for resource in kustomization["resources"]:
        path = os.path.join(directory, resource)
        template = path.replace(".yaml", ".template.yaml")
        c.check(os.path.exists(path) or os.path.exists(template),
                f"kubernetes: kustomization resource {resource} exists")


def check_documented_settings(c, root):
    """Every variable and key the deployment files set is one that mann documents, so none is
    a typo that mann would refuse (a key) or silently ignore (a variable)."""
    variables, keys = documented_variables_and_keys(root)
    used = {}
    for path in ("deploy/docker/compose.yaml", "deploy/systemd/mann.env",
                 "deploy/kubernetes/secret.template.yaml", "deploy/kubernetes/deployment.yaml",
                 "deploy/kubernetes/backup-cronjob.yaml", "deploy/docker/Dockerfile"):
        with open(os.path.join(root, path)) as f:
            for name in re.findall(r"\b(MANN_[A-Z0-9_]+)\b", f.read()):
                used.setdefault(name, path)
    unknown = sorted(f"{v} ({p})" for v, p in used.items() if v not in variables)
    c.check(not unknown, "deploy: every MANN_ variable is in docs/configuration.md",
            f"undocumented: {unknown}")
    config_keys = set(flatten_toml(tomllib.loads(configmap_toml(root))))
    c.check(config_keys <= keys, "kubernetes: every ConfigMap key is in docs/configuration.md",
            f"undocumented: {sorted(config_keys - keys)}")


def check_dashboard(c, root, exported):
    with open(os.path.join(root, "deploy", "grafana", "dashboards", "mann.json")) as f:
        dashboard = json.load(f)
    with open(os.path.join(root, "deploy", "grafana", "provisioning", "datasources",
                           "prometheus.yaml")) as f:
        uids = {d["uid"] for d in yaml.safe_load(f)["datasources"]}
    panels = dashboard["panels"]
    ids = [p["id"] for p in panels]
    c.check(len(ids) == len(set(ids)), "grafana: panel ids are unique")
    titles = {p["title"] for p in panels}
    for wanted in ("Request rate", "Memory utilization", "p95 latency", "Error ratio (5xx)",
                   "Cache hit ratio", "Pager deliveries"):
        c.check(wanted in titles, f"grafana: a panel '{wanted}'")
    for p in panels:
        for t in p["targets"]:
            c.check(t["datasource"]["uid"] in uids,
                    f"grafana: panel '{p['title']}' uses the provisioned data source")
    if exported is None:
        c.skip("grafana: metric names", "no mann binary given (--mann)")
        return
    for p in panels:
        for t in p["targets"]:
            unknown = metric_names_in(t["expr"]) - exported
            c.check(not unknown, f"grafana: panel '{p['title']}' reads existing series",
                    f"{t['expr']}: unknown {sorted(unknown)}")


def check_rule_metrics(c, root, exported):
    if exported is None:
        c.skip("prometheus: metric names in rules", "no mann binary given (--mann)")
        return
    for group in rule_groups(root):
        for rule in group["rules"]:
            unknown = metric_names_in(rule["expr"]) - exported
            name = rule.get("alert") or rule.get("record")
            c.check(not unknown, f"prometheus: rule {name} reads existing series",
                    f"unknown {sorted(unknown)}")


def heading_anchors(path):
    """The anchors GitHub gives the headings of a Markdown file."""
    anchors = set()
    in_code = False
    with open(path) as f:
        for line in f:
            if line.startswith("```"):
                in_code = not in_code
            elif not in_code and line.startswith("#"):
                title = line.lstrip("#").strip().lower()
                anchors.add(re.sub(r"[^a-z0-9 _-]", "", title).replace(" ", "-"))
    return anchors


def check_runbook_links(c, root):
    """Every alert names a runbook section, and the section exists."""
    anchors = heading_anchors(os.path.join(root, "docs", "operations", "runbook.md"))
    for group in rule_groups(root):
        for rule in group["rules"]:
            if "alert" not in rule:
                continue
            link = rule.get("annotations", {}).get("runbook", "")
            path, _, anchor = link.partition("#")
            c.check(path == "docs/operations/runbook.md" and anchor in anchors,
                    f"prometheus: alert {rule['alert']} links an existing runbook section",
                    f"{link!r}; sections: {sorted(anchors)}")


# ---- checks against the real binary ----------------------------------------------------------

def hermetic_env(tmp, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MANN_")}
    env["HOME"] = os.path.join(tmp, "home")
    env["LANG"] = "C.UTF-8"
    os.makedirs(env["HOME"], exist_ok=True)
    env.update(extra)
    return env


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(port, path, headers=None, method="GET", body=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read().decode(errors="replace")
    finally:
        conn.close()


def wait_for(what, probe, seconds=30):
    deadline = time.monotonic() + seconds
    last = None
    while time.monotonic() < deadline:
        try:
            last = probe()
        except OSError as e:
            last = f"{type(e).__name__}: {e}"
        else:
            if last:
                return last
        time.sleep(0.1)
    raise TimeoutError(f"{what}: still {last!r} after {seconds} s")


class Serve:
    """One `mann serve` on a free loopback port over its own data directory."""

    def __init__(self, mann, tmp, name, env=None, *extra):
        self.port = free_port()
        data = os.path.join(tmp, name)
        os.makedirs(data, exist_ok=True)
        self.log_path = os.path.join(tmp, f"{name}.log")
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [mann, "serve", "--data-dir", data, "--set", "encoder.kind=hashed",
             "--set", f"server.port={self.port}", *extra],
            stdout=self.log, stderr=self.log, env=hermetic_env(tmp, **(env or {})))

        def healthy_or_exited():
            if self.proc.poll() is not None:
                return "exited"
            return http_get(self.port, "/health")[0] == 200
        try:
            wait_for(f"{name} answering /health", healthy_or_exited)
        except TimeoutError:
            self.stop()
            raise
        if self.proc.poll() is not None:
            story = self.tail()
            self.stop()
            raise RuntimeError(f"{name} exited {self.proc.returncode}: {story}")

    def tail(self):
        self.log.flush()
        with open(self.log_path) as f:
            return f.read()[-1500:]

    def stop(self, sig=signal.SIGTERM):
        """Signals the server (unless it has exited) and waits for it, at most 20 s each."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=20)
        self.log.close()


def read_env_file(path):
    out = {}
    with open(path) as f:
        for line in f:
            name, _, value = line.strip().partition("=")
            if name and not name.startswith("#"):
                out[name] = value
    return out


def exported_metrics(c, mann, tmp):
    """The series names a running `mann serve` exports, set up as in production so that every
    family shows: on PostgreSQL and Redis (real servers from scripts/services.sh, on loopback in
    tmp), with the pager on (its metrics appear only with a channel)."""
    env = {"MANN_ENABLE_PAGER": "true",
           "MANN_PAGER_JSON_WEBHOOK": f"http://127.0.0.1:{free_port()}/hook"}
    shown = subprocess.run([mann, "config", "show"], capture_output=True, text=True,
                           env=hermetic_env(tmp)).stdout
    services = None
    if "storage.postgres_url" in shown and "redis.url" in shown:
        services = os.path.join(tmp, "services")
        os.chmod(tmp, 0o755)  # as root, PostgreSQL runs as `postgres` and must reach its dir
        subprocess.run([os.path.join(ROOT, "scripts", "services.sh"), "start", services],
                       check=True, timeout=120, stdout=subprocess.DEVNULL)
        urls = read_env_file(os.path.join(services, "env"))
        env.update({"MANN_STORAGE_BACKEND": "postgres",
                    "MANN_DATABASE_URL": urls["MANN_TEST_POSTGRES_URL"],
                    "MANN_REDIS_URL": urls["MANN_TEST_REDIS_URL"]})
    else:
        c.skip("metrics on PostgreSQL and Redis", "this mann has no postgres or redis settings")
    try:
        server = Serve(mann, tmp, "metrics", env)
        try:
            # A write and two identical searches, so the per-route and cache series exist.
            http_get(server.port, "/memories", {"Content-Type": "application/json"}, "POST",
                     json.dumps({"content": "deploy check"}))
            for _ in range(2):
                http_get(server.port, "/search", {"Content-Type": "application/json"},
                         "POST", json.dumps({"query": "deploy"}))
            status, text = http_get(server.port, "/metrics")
        finally:
            server.stop()
    finally:
        if services:
            subprocess.run([os.path.join(ROOT, "scripts", "services.sh"), "stop", services],
                           timeout=120, stdout=subprocess.DEVNULL)
    c.check(status == 200, "mann serve answers /metrics")
    names = {"up"}
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)", text, re.M):
        names.add(name)
        if kind == "histogram":
            names |= {name + "_bucket", name + "_sum", name + "_count"}
        elif kind == "summary":
            names |= {name + "_sum", name + "_count"}
    buckets = set(re.findall(r'^http_request_duration_seconds_bucket\{[^}]*le="([^"]+)"',
                             text, re.M))
    c.check("0.2" in buckets, "mann exports a 0.2 s latency bucket (the SLO reads it)",
            f"buckets {sorted(buckets)}")
    for group in rule_groups(ROOT):
        for rule in group["rules"]:
            if "record" in rule:
                names.add(rule["record"])
    return names


def check_commands(c, mann, tmp):
    """The subcommands the deployment files run exist, with the options they pass."""
    env = hermetic_env(tmp)
    for args, option in ((["health", "--help"], "--url"), (["backup", "--help"], None),
                         (["restore", "--help"], None), (["serve", "--help"], None)):
        r = subprocess.run([mann, *args], capture_output=True, text=True, env=env)
        ok = r.returncode == 0 and (option is None or option in r.stdout)
        # CLI11 prints the top-level help for an unknown subcommand: not the one asked for.
        ok = ok and f"mann {args[0]}" in r.stdout
        c.check(ok, f"mann has `{' '.join(args[:-1])}`" + (f" with {option}" if option else ""),
                (r.stdout + r.stderr).strip().splitlines()[0][:200])


def check_configurations(c, mann, tmp):
    """mann itself loads the ConfigMap's file and the systemd environment file, with
    stand-ins for the secrets the operator fills in."""
    stand_ins = {
        "MANN_DATABASE_URL": "postgresql://mann:secret@127.0.0.1:5432/mann",
        "MANN_PAGER_JSON_WEBHOOK": "http://127.0.0.1:9/hook",
    }
    path = os.path.join(tmp, "mann.toml")
    with open(path, "w") as f:
        f.write(configmap_toml(ROOT))
    r = subprocess.run([mann, "--config", path, "config", "show"], capture_output=True,
                       text=True, env=hermetic_env(tmp, **stand_ins))
    c.check(r.returncode == 0, "kubernetes: mann loads the ConfigMap's mann.toml",
            (r.stderr or r.stdout)[:600])

    env = {}
    with open(os.path.join(ROOT, "deploy", "systemd", "mann.env")) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#"):
                name, _, value = line.partition("=")
                env[name] = value
    env.update({"MANN_DATA_DIR": os.path.join(tmp, "systemd-data"),
                "MANN_PAGER_JSON_WEBHOOK": stand_ins["MANN_PAGER_JSON_WEBHOOK"]})
    env.pop("MANN_API_KEYS_FILE", None)  # the operator's file; its format is checked by mann
    r = subprocess.run([mann, "config", "show"], capture_output=True, text=True,
                       env=hermetic_env(tmp, **env))
    c.check(r.returncode == 0, "systemd: mann loads mann.env", (r.stderr or r.stdout)[:600])


def interpolate(text, values):
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?message}, from `values`."""
    def one(m):
        name, op, arg = m.group(1), m.group(2), m.group(3)
        value = values.get(name, "")
        if op == ":-" and not value:
            return arg
        if op == ":?" and not value:
            raise ValueError(f"{name} is not set: {arg}")
        return value
    return re.sub(r"\$\{([A-Z_][A-Z0-9_]*)(?:(:-|:\?)([^}]*))?\}", one, text)


def check_compose_environment(c, mann, tmp):
    """mann itself loads a replica's environment from compose.yaml, with .env.example's values."""
    directory = os.path.join(ROOT, "deploy", "docker")
    values = read_env_file(os.path.join(directory, ".env.example"))
    (compose,) = load_yaml_documents(os.path.join(directory, "compose.yaml"))
    env = {name: interpolate(str(value), values)
           for name, value in compose["services"]["mann-1"]["environment"].items()}
    env.pop("MANN_API_KEYS_FILE")  # the operator's keys.toml; mann checks its entries itself
    env["MANN_DATA_DIR"] = os.path.join(tmp, "compose-data")
    r = subprocess.run([mann, "config", "show"], capture_output=True, text=True,
                       env=hermetic_env(tmp, **env))
    c.check(r.returncode == 0, "compose: mann loads a replica's environment",
            (r.stderr or r.stdout)[:600])


def nginx_conf_for_test(tmp, listen_port, upstream_ports):
    """mann.conf with the compose host names replaced by loopback replicas and port 80 by a
    free port, inside a minimal nginx.conf whose files all live in tmp."""
    with open(os.path.join(ROOT, "deploy", "nginx", "mann.conf")) as f:
        conf = f.read()
    for i, port in enumerate(upstream_ports, 1):
        conf = conf.replace(f"server mann-{i}:8000", f"server 127.0.0.1:{port}")
    conf = conf.replace("listen 80;", f"listen 127.0.0.1:{listen_port};")
    conf = conf.replace("listen [::]:80;", "")
    with open(os.path.join(tmp, "mann.conf"), "w") as f:
        f.write(conf)
    with open(os.path.join(tmp, "nginx.conf"), "w") as f:
        f.write(f"""daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log info;
events {{ worker_connections 256; }}
http {{
    access_log {tmp}/nginx-access.log;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    include {tmp}/mann.conf;
}}
""")
    return os.path.join(tmp, "nginx.conf")


def check_nginx_live(c, mann, tmp):
    """nginx with mann.conf in front of three real replicas: /health passes without an access
    log line, /metrics is not served, a large body is refused, a burst is answered 429, and
    when a replica dies the others answer."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.path.exists(nginx):
        c.skip("nginx in front of replicas", "nginx is not installed")
        return
    replicas = []
    proc = None
    try:
        for i in range(3):
            replicas.append(Serve(mann, tmp, f"replica-{i + 1}"))
        port = free_port()
        conf = nginx_conf_for_test(tmp, port, [r.port for r in replicas])
        proc = subprocess.Popen([nginx, "-p", tmp, "-e", f"{tmp}/nginx-error.log", "-c", conf],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_for("nginx answering", lambda: http_get(port, "/health")[0] == 200)

        before = os.path.getsize(f"{tmp}/nginx-access.log")
        statuses = [http_get(port, "/health")[0] for _ in range(5)]
        c.check(statuses == [200] * 5, "nginx: /health passes to the replicas", str(statuses))
        status, _ = http_get(port, "/ready")
        c.check(status == 200, "nginx: /ready passes to the replicas")
        # nginx writes the line after the answer is sent: give it a moment.
        try:
            wait_for("the access log line of /ready",
                     lambda: os.path.getsize(f"{tmp}/nginx-access.log") > before, seconds=5)
            logged = True
        except TimeoutError:
            logged = False
        c.check(logged, "nginx: other requests are logged")
        health_lines = [l for l in open(f"{tmp}/nginx-access.log") if "GET /health" in l]
        c.check(not health_lines, "nginx: /health is not logged", health_lines[:2])
        c.check(http_get(port, "/metrics")[0] == 404, "nginx: /metrics is not served outside")
        big = "x" * (1024 * 1024 + 1)
        status, _ = http_get(port, "/memories", {"Content-Type": "application/json"}, "POST",
                             big)
        c.check(status == 413, "nginx: a body over 1 MiB is answered 413", str(status))

        # Failover: a replica killed outright; nginx's next attempt goes to another.
        replicas[0].stop(signal.SIGKILL)
        time.sleep(1.1)  # the rate limit's burst refills (10 a second)
        statuses = []
        for _ in range(12):
            statuses.append(http_get(port, "/memories?limit=1")[0])
            time.sleep(0.11)
        c.check(statuses == [200] * 12, "nginx: requests fail over when a replica dies",
                str(statuses))

        # Rate limit: 10 a second with a burst of 20 per client address, then 429.
        time.sleep(2.2)
        statuses = [http_get(port, "/memories?limit=1")[0] for _ in range(40)]
        # The first 21 fit the burst whatever the timing; refills (10 a second) may let a few
        # later ones through on a slow machine, but not all 19 that exceed it.
        c.check(statuses[:21] == [200] * 21 and 429 in statuses and
                set(statuses) <= {200, 429},
                "nginx: a burst within the limit passes, one over it is answered 429",
                f"{statuses.count(200)} x 200, {statuses.count(429)} x 429: {statuses}")
    finally:
        if proc and proc.poll() is None:
            proc.send_signal(signal.SIGQUIT)  # graceful stop
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        for r in replicas:
            r.stop()


def check_prometheus_live(c, mann, tmp):
    """Real Prometheus with deploy/prometheus's configuration and rules, scraping a real
    replica every second: the target is up, and every rule evaluates without an error on the
    series mann really exports (a label or a function misused shows up only here)."""
    prometheus = shutil.which("prometheus") or "/usr/bin/prometheus"
    if not os.path.exists(prometheus):
        c.skip("Prometheus scraping a replica", "prometheus is not installed")
        return
    with open(os.path.join(ROOT, "deploy", "prometheus", "prometheus.yml")) as f:
        config = yaml.safe_load(f)
    server = Serve(mann, tmp, "scraped")
    proc = None
    try:
        directory = os.path.join(tmp, "prometheus")
        shutil.copytree(os.path.join(ROOT, "deploy", "prometheus", "rules"),
                        os.path.join(directory, "rules"))
        config["global"].update(scrape_interval="1s", scrape_timeout="1s",
                                evaluation_interval="1s")
        config.pop("alerting")  # no Alertmanager here; sending is Alertmanager's part
        (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "mann"]
        job["static_configs"][0]["targets"] = [f"127.0.0.1:{server.port}"]
        config["scrape_configs"] = [job]
        with open(os.path.join(directory, "prometheus.yml"), "w") as f:
            yaml.safe_dump(config, f)
        port = free_port()
        log = open(os.path.join(tmp, "prometheus.log"), "w")
        proc = subprocess.Popen(
            [prometheus, f"--config.file={directory}/prometheus.yml",
             f"--storage.tsdb.path={directory}/data", f"--web.listen-address=127.0.0.1:{port}"],
            stdout=log, stderr=log)

        def api(path):
            status, body = http_get(port, path)
            return json.loads(body)["data"] if status == 200 else None

        for _ in range(5):  # some API traffic, so the request-rate rules have series
            http_get(server.port, "/memories?limit=1")
        up = wait_for("Prometheus scraping the replica", lambda: (
            api("/api/v1/query?query=up") or {}).get("result"))
        c.check(up[0]["metric"].get("job") == "mann" and up[0]["value"][1] == "1",
                "prometheus: scrapes the replica as job mann, up == 1", str(up))

        def all_rules_evaluated():
            rules = [r for g in (api("/api/v1/rules") or {}).get("groups", [])
                     for r in g["rules"]]
            done = rules and all(r.get("lastEvaluation", "").startswith("20") and
                                 not r["lastEvaluation"].startswith("0001") for r in rules)
            return rules if done else None
        rules = wait_for("every rule evaluated once", all_rules_evaluated)
        broken = [f"{r['name']}: {r.get('lastError')}" for r in rules if r["health"] != "ok"]
        c.check(not broken, "prometheus: every rule evaluates on real series", str(broken))
        rate = wait_for("a request rate recorded", lambda: (api(
            "/api/v1/query?query=job_route:mann_http_requests:rate5m") or {}).get("result"))
        c.check({r["metric"].get("route") for r in rate} == {"/memories"},
                "prometheus: the request rate counts API routes, not probes", str(rate))
    finally:
        if proc and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=20)
        server.stop()


ROOT = None


def main():
    global ROOT
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, help="the repository")
    parser.add_argument("--mann", help="the mann binary (enables the live checks)")
    args = parser.parse_args()
    ROOT = os.path.abspath(args.root)
    mann = os.path.abspath(args.mann) if args.mann else None
    if mann and not os.access(mann, os.X_OK):
        print(f"check_files: {mann} is not an executable", file=sys.stderr)
        return 2

    c = Checks()
    tmp = tempfile.mkdtemp(prefix="mann-deploy-check-")
    live_failed = False
    try:
        c.guarded("compose", check_compose, c, ROOT)
        c.guarded("Dockerfile", check_dockerfile, c, ROOT, mann)
        c.guarded("kubernetes", check_kubernetes, c, ROOT)
        c.guarded("documented settings", check_documented_settings, c, ROOT)
        c.guarded("runbook links", check_runbook_links, c, ROOT)
        exported = None
        before_live = len(c.failures)
        if mann:
            try:
                exported = exported_metrics(c, mann, tmp)
            except Exception as e:  # noqa: BLE001
                c.failures.append(f"metrics from mann serve: {type(e).__name__}: {e}")
            c.guarded("nginx live", check_nginx_live, c, mann, tmp)
            c.guarded("prometheus live", check_prometheus_live, c, mann, tmp)
            live_failed = len(c.failures) > before_live  # a server's log may say why
            c.guarded("commands", check_commands, c, mann, tmp)
            c.guarded("configurations", check_configurations, c, mann, tmp)
            c.guarded("compose environment", check_compose_environment, c, mann, tmp)
        else:
            for what in ("mann subcommands", "configurations loaded by mann",
                         "nginx in front of replicas", "Prometheus scraping a replica"):
                c.skip(what, "no mann binary given (--mann)")
        c.guarded("dashboard", check_dashboard, c, ROOT, exported)
        c.guarded("rule metrics", check_rule_metrics, c, ROOT, exported)
    finally:
        status = c.summary()
        if live_failed:  # what the servers said
            for name in sorted(os.listdir(tmp)):
                if name.endswith(".log"):
                    with open(os.path.join(tmp, name), errors="replace") as f:
                        print(f"--- {name} (tail)\n{f.read()[-1500:]}")
        shutil.rmtree(tmp, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())

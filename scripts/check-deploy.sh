#!/usr/bin/env bash
# Checks every deployment file under deploy/ with the real tools this machine has:
#
#   promtool        check config, check rules, test rules (each alert fires and stays silent)
#   amtool          check-config, and `config routes test` for each route
#   nginx           -t on deploy/nginx/mann.conf under a throw-away prefix
#   systemd-analyze verify on the units, under a throw-away root
#   python3 + yaml  the compose file, the Kubernetes manifests, the Dockerfile and the Grafana
#                   dashboard (deploy/checks/check_files.py); with a mann binary also the
#                   configuration files loaded by mann itself, the metric names of every rule
#                   and panel against a live /metrics, and nginx in front of three replicas
#
#   scripts/check-deploy.sh [--mann BINARY]     BINARY defaults to build/mann when it exists
#
# Docker cannot run here (no daemon), so the image is never built and the compose stack never
# started by this script; it says so. A check whose tool is missing is reported as skipped,
# never as passed. Exits 1 when any check failed.
set -uo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
deploy="$root/deploy"
mann=""
while (($#)); do
  case "$1" in
    --mann) mann="${2:?--mann needs a path}"; shift 2 ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "check-deploy: unknown option $1" >&2; exit 2 ;;
  esac
done
if [[ -z "$mann" && -x "$root/build/mann" ]]; then
  mann="$root/build/mann"
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

passed=0
failed=0
skipped=0
ok() { echo "ok    $1"; passed=$((passed + 1)); }
bad() { echo "FAIL  $1"; failed=$((failed + 1)); }
skip() { echo "SKIP  $*"; skipped=$((skipped + 1)); }

# check NAME COMMAND...: passes when COMMAND exits 0; otherwise prints what it said.
check() {
  local name="$1"; shift
  local out
  if out="$("$@" 2>&1)"; then
    ok "$name"
  else
    bad "$name"
    printf '%s\n' "$out" | sed 's/^/      /' | head -n 40
  fi
}

# --- every line of every file within 100 columns ----------------------------------------------
long="$(cd "$root" && find deploy .dockerignore scripts/check-deploy.sh \
          docs/operations/deployment.md docs/operations/runbook.md -type f \
          -not -path '*/__pycache__/*' 2>/dev/null |
        sort | xargs awk 'length > 100 { print FILENAME ":" FNR ": " length " columns" }')"
if [[ -z "$long" ]]; then ok "every line within 100 columns"; else bad "lines over 100 columns"
  printf '%s\n' "$long" | sed 's/^/      /'; fi

# --- Prometheus ---------------------------------------------------------------------------------
if command -v promtool >/dev/null; then
  check "promtool check config deploy/prometheus/prometheus.yml" \
    promtool check config "$deploy/prometheus/prometheus.yml"
  check "promtool check rules deploy/prometheus/rules/mann.rules.yml" \
    promtool check rules "$deploy/prometheus/rules/mann.rules.yml"
  # rule_files in the test file are relative to it.
  check "promtool test rules deploy/prometheus/rules/mann.rules.test.yml" \
    bash -c 'cd "$1" && promtool test rules mann.rules.test.yml' _ "$deploy/prometheus/rules"
else
  skip "promtool checks: promtool is not installed (Debian package prometheus)"
fi

# --- Alertmanager -------------------------------------------------------------------------------
am_config="$deploy/alertmanager/alertmanager.yml"
# route_is EXPECTED_RECEIVER LABEL=VALUE...: the route tree sends such an alert there.
route_is() {
  local want="$1"; shift
  local got
  got="$(amtool config routes test --config.file="$am_config" "$@" 2>/dev/null)"
  if [[ "$got" == "$want" ]]; then
    ok "alertmanager routes {$*} to $want"
  else
    bad "alertmanager routes {$*} to $want (got: ${got:-nothing})"
  fi
}
if command -v amtool >/dev/null; then
  check "amtool check-config deploy/alertmanager/alertmanager.yml" \
    amtool check-config "$am_config"
  route_is pagerduty-and-slack severity=critical alertname=APIDown instance=mann-1:8000
  route_is pagerduty-and-slack severity=critical alertname=MannLatencyBudgetBurnFast slo=latency
  route_is slack-and-email severity=warning alertname=HighMemoryUtilization namespace=alice
  route_is slack-and-email severity=warning alertname=MannDiskAlmostFull
  route_is slack-and-email severity=warning alertname=MannAvailabilityBudgetBurnSlow
  route_is slack severity=warning alertname=HighResponseTime instance=mann-2:8000
  route_is slack severity=info alertname=SomethingElse
  route_is slack alertname=NoSeverity
  # Every alert of the rules file: a critical one pages, a warning one reaches Slack.
  alerts="$(/usr/bin/python3 -c '
import sys, yaml
for group in yaml.safe_load(open(sys.argv[1]))["groups"]:
    for rule in group["rules"]:
        if "alert" in rule:
            print(rule["alert"], rule["labels"]["severity"], rule["labels"].get("slo", ""))
' "$deploy/prometheus/rules/mann.rules.yml")"
  while read -r name severity slo; do
    labels=(alertname="$name" severity="$severity")
    [[ -n "$slo" ]] && labels+=(slo="$slo")
    got="$(amtool config routes test --config.file="$am_config" "${labels[@]}" 2>/dev/null)"
    case "$severity:$got" in
      critical:pagerduty-and-slack | warning:slack | warning:slack-and-email)
        ok "alert $name ($severity) goes to $got" ;;
      *) bad "alert $name ($severity) goes to ${got:-nothing}" ;;
    esac
  done <<<"$alerts"
else
  skip "amtool checks: amtool is not installed (Debian package prometheus-alertmanager)"
fi

# --- nginx -t -------------------------------------------------------------------------------------
# The compose service names do not resolve here, and nginx resolves upstream servers while it
# reads the file, so the check runs on a copy that names loopback addresses instead.
nginx_bin="$(command -v nginx || echo /usr/sbin/nginx)"
if [[ -x "$nginx_bin" ]]; then
  mkdir -p "$tmp/nginx"
  sed -E 's/server mann-([0-9]):8000/server 127.0.0.1:800\1/' "$deploy/nginx/mann.conf" \
    >"$tmp/nginx/mann.conf"
  cat >"$tmp/nginx/nginx.conf" <<EOF
pid $tmp/nginx/nginx.pid;
error_log $tmp/nginx/error.log;
events {}
http {
    access_log $tmp/nginx/access.log;
    client_body_temp_path $tmp/nginx/body;
    proxy_temp_path $tmp/nginx/proxy;
    fastcgi_temp_path $tmp/nginx/fastcgi;
    uwsgi_temp_path $tmp/nginx/uwsgi;
    scgi_temp_path $tmp/nginx/scgi;
    include $tmp/nginx/mann.conf;
}
EOF
  check "nginx -t deploy/nginx/mann.conf" \
    "$nginx_bin" -t -q -p "$tmp/nginx" -e "$tmp/nginx/error.log" -c "$tmp/nginx/nginx.conf"
else
  skip "nginx -t: nginx is not installed (Debian package nginx-light)"
fi

# --- systemd units ------------------------------------------------------------------------------
# verify needs the units' executables and systemd's own units under the root it checks; a stub
# stands in for /usr/local/bin/mann. Its warnings (unknown keys, bad values) do not change its
# exit status, so any output is a failure.
if command -v systemd-analyze >/dev/null && [[ -d /usr/lib/systemd/system ]]; then
  sroot="$tmp/systemd-root"
  mkdir -p "$sroot/usr/local/bin" "$sroot/etc/systemd/system" "$sroot/etc/mann" \
    "$sroot/usr/lib/systemd"
  cp -r /usr/lib/systemd/system "$sroot/usr/lib/systemd/"
  printf '#!/bin/sh\nexit 0\n' >"$sroot/usr/local/bin/mann"
  chmod 755 "$sroot/usr/local/bin/mann"
  cp "$deploy"/systemd/*.service "$deploy"/systemd/*.timer "$sroot/etc/systemd/system/"
  cp "$deploy/systemd/mann.env" "$sroot/etc/mann/"
  units=()
  for unit in "$deploy"/systemd/*.service "$deploy"/systemd/*.timer; do
    units+=("$sroot/etc/systemd/system/$(basename "$unit")")
  done
  if out="$(systemd-analyze verify --root="$sroot" "${units[@]}" 2>&1)" && [[ -z "$out" ]]; then
    ok "systemd-analyze verify deploy/systemd/*.service *.timer"
  elif grep -qiE 'Failed to (connect|initialize)|not booted|No such file or directory.*bus' \
         <<<"$out"; then
    skip "systemd-analyze verify: it cannot run in this environment: $(head -n 1 <<<"$out")"
  else
    bad "systemd-analyze verify deploy/systemd/*.service *.timer"
    printf '%s\n' "$out" | sed "s|$sroot||g; s/^/      /" | head -n 40
  fi
else
  skip "systemd-analyze verify: systemd-analyze is not available here"
fi

# --- Docker -------------------------------------------------------------------------------------
# Building the image needs a Docker daemon (and the network for the base images and the model);
# CI has neither, so the Dockerfile is only checked statically by check_files.py.
if command -v docker >/dev/null && timeout 10 docker info >/dev/null 2>&1; then
  skip "docker build: a daemon answers, but this script does not build images (see" \
    "docs/operations/deployment.md); run the command there by hand"
else
  skip "docker: no Docker daemon here, so the image is not built and compose.yaml is not" \
    "started; they are checked statically only"
fi
if command -v docker >/dev/null && docker compose version >/dev/null 2>&1; then
  # On a copy, with the examples standing in for the operator's .env and keys.toml.
  cp -r "$deploy" "$tmp/deploy"
  cp "$tmp/deploy/docker/keys.toml.example" "$tmp/deploy/docker/keys.toml"
  cp "$tmp/deploy/docker/.env.example" "$tmp/deploy/docker/.env"
  check "docker compose config" \
    bash -c 'cd "$1" && docker compose -f compose.yaml config --quiet' _ "$tmp/deploy/docker"
else
  skip "docker compose config: the compose plugin is not installed here"
fi

# --- structure, and the checks against the real binary -----------------------------------------
if /usr/bin/python3 -c 'import yaml' 2>/dev/null; then
  args=(--root "$root")
  [[ -n "$mann" ]] && args+=(--mann "$mann")
  if out="$(/usr/bin/python3 "$deploy/checks/check_files.py" "${args[@]}" 2>&1)"; then
    ok "deploy/checks/check_files.py: $(tail -n 1 <<<"$out")"
    grep '^SKIP' <<<"$out" | sed 's/^SKIP: /SKIP  /' || true
  else
    bad "deploy/checks/check_files.py: $(grep -E '^[0-9]+ passed' <<<"$out" || echo crashed)"
    grep -v -E '^[0-9]+ passed' <<<"$out" | sed 's/^/      /' | head -n 80
  fi
  skipped=$((skipped + $(grep -c '^SKIP' <<<"$out")))
else
  bad "python3-yaml is missing for /usr/bin/python3 (Debian package python3-yaml)"
fi

echo "check-deploy: $passed passed, $failed failed, $skipped skipped"
((failed == 0))

#!/usr/bin/env python3
"""Drives the real `mann serve` with its monitor and pager against real protocol peers on
loopback: Slack, PagerDuty and a JSON webhook played by alert_receiver.py, and a mail server
that requires STARTTLS and a login (smtp_receiver.py, aiosmtpd). Every payload is checked
against its receiver's schema.

Scenarios:
  incident        a memory utilization alert (small memory.memory_size, memories added then
                  deleted) gives exactly one trigger and one resolve on every channel, after its
                  `for`; PagerDuty's resolve carries the trigger's dedup_key
  renotify        a firing alert is repeated no more often than its level's floor
  outcomes        500, 500 then 200 is retried until it succeeds, once; 400 is not retried and
                  is recorded as failed; 429 with Retry-After: 2 waits at least 2 s
  sigkill         a row left pending by a SIGKILLed mann is delivered exactly once by the next
                  process on the same data directory
  stall           a receiver that holds the connection does not slow /health, /health?detail=1
                  or the other channels, and does not hold up SIGTERM
  alert_test      `mann alert test --channel ...` reports the receiver's answer in its exit
                  status, and the receiver got a valid test payload
  takeover        two replicas sharing a Redis, whose alert lock a dead replica still holds
                  (never confirmed): once its TTL runs out exactly one replica delivers its
                  withheld trigger, confirms it, and the other drops its copy
and in each, mann_pager_notifications_sent_total{channel} matches the 2xx answers given.

Usage: pager_test.py --mann PATH/TO/mann
Exit status 0 when every check passed; otherwise the failed checks are listed. Needs Debian's
python3-aiosmtpd for the mail server (run by /usr/bin/python3 when that has it).
"""

import argparse
import email
import email.policy
import json
import os
import re
import select
import signal
import subprocess
import sys
import tempfile
import time

import alert_receiver
import harness
from alert_receiver import answer, stall

TIMEOUT = harness.TIMEOUT
checks = harness.Checks()
check = checks.check
HERE = os.path.dirname(os.path.abspath(__file__))

ROUTING_KEY = "R0UT1NGKEY0F0THE0TEST0INTEGRATION"
SMTP_USER = "mann-alerts"
SMTP_PASSWORD = "not-a-real-password-7"
MAIL_FROM = "mann@alerts.example.com"
MAIL_TO = "oncall@example.com"

# Facts different enough that the write head adds each one rather than merging them.
FACTS = [
    "The lighthouse keeper repaints his fishing boat every winter",
    "Quantum tunnelling lets electrons cross an energy barrier",
    "Grandmother grows purple basil on the balcony in Hanoi",
    "The night train to Hue leaves from platform two at 7:15",
    "Our quarterly budget review moved to the second Thursday",
]
MEMORY_SIZE = 4  # three memories are 0.75 of it, over the rules' 0.5
CHANNELS = ("slack", "pagerduty", "webhook", "email")
PATH_OF = {"slack": "/slack", "pagerduty": "/pagerduty", "webhook": "/webhook"}
# The alert a memory utilization rule raises for the default namespace: "rule:subject".
INCIDENT_KEY = "memory_utilization:default"
TICK = 1.0  # monitoring.health_check_interval, seconds


# ---- the mail server ------------------------------------------------------------------------

def aiosmtpd_python():
    """An interpreter that can import aiosmtpd: this one, or Debian's when `python3` is another
    installation (pyenv, a virtual environment)."""
    for candidate in (sys.executable, "/usr/bin/python3"):
        if candidate and os.access(candidate, os.X_OK) and subprocess.run(
                [candidate, "-c", "import aiosmtpd"], capture_output=True,
                timeout=TIMEOUT).returncode == 0:
            return candidate
    return None


class Mail:
    """smtp_receiver.py as a subprocess: STARTTLS required, AUTH required."""

    def __init__(self, root, python, name="smtp", password=SMTP_PASSWORD):
        directory = os.path.join(root, name)
        os.makedirs(directory, exist_ok=True)
        self.messages_file = os.path.join(directory, "messages.jsonl")
        self.log = open(os.path.join(root, f"{name}.log"), "w")
        self.proc = subprocess.Popen(
            [python, os.path.join(HERE, "smtp_receiver.py"), "--messages", self.messages_file,
             "--user", SMTP_USER, "--password", password, "--cert-dir", directory],
            stdout=subprocess.PIPE, stderr=self.log, text=True)
        ready, _, _ = select.select([self.proc.stdout], [], [], TIMEOUT)
        line = self.proc.stdout.readline() if ready else ""
        try:
            info = json.loads(line)
        except ValueError:
            self.stop()
            raise RuntimeError(f"smtp_receiver.py did not start: {line!r}")
        self.url = f"smtp://{info['host']}:{info['port']}"
        self.ca_file = info["ca_file"]

    def messages(self, since=0):
        """Accepted messages from number `since` on, each the receiver's record plus "parsed"
        (an email.message.EmailMessage)."""
        if not os.path.exists(self.messages_file):
            return []
        with open(self.messages_file, encoding="utf-8") as f:
            lines = [l for l in f.read().splitlines() if l.strip()]
        out = []
        for line in lines[since:]:
            record = json.loads(line)
            record["parsed"] = email.message_from_string(record["data"],
                                                         policy=email.policy.default)
            out.append(record)
        return out

    def wait_for(self, predicate, since=0, timeout=10.0):
        deadline = time.monotonic() + timeout
        while True:
            current = self.messages(since)
            if predicate(current):
                return current, True
            if time.monotonic() >= deadline:
                return current, False
            time.sleep(0.05)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=TIMEOUT)
        self.log.close()


def email_errors(record):
    """What is wrong with one accepted message, as smtp_receiver.py recorded it."""
    errors = []
    if not record["tls"]:
        errors.append("the message came over clear text")
    if record["auth_user"] != SMTP_USER:
        errors.append(f"the session logged in as {record['auth_user']!r}, not {SMTP_USER}")
    if record["mail_from"] != MAIL_FROM or record["rcpt_tos"] != [MAIL_TO]:
        errors.append(f"envelope {record['mail_from']} -> {record['rcpt_tos']}")
    m = record["parsed"]
    for header in ("From", "To", "Subject", "Date", "Message-ID", "MIME-Version", "Content-Type",
                   "Content-Transfer-Encoding", "X-Mann-Kind"):
        if m[header] is None:
            errors.append(f"header {header} is missing")
    if errors:
        return errors
    if m["From"] != MAIL_FROM or m["To"] != MAIL_TO:
        errors.append(f"From {m['From']!r} To {m['To']!r}")
    kind = m["X-Mann-Kind"]
    if kind not in alert_receiver.KINDS:
        errors.append(f"X-Mann-Kind {kind!r}")
    subject = re.match(r"^\[mann\] \[(INFO|WARNING|ERROR|CRITICAL|RESOLVED)\] .+", m["Subject"])
    if not subject:
        errors.append(f"Subject {m['Subject']!r}")
    elif (subject.group(1) == "RESOLVED") != (kind == "resolve"):
        errors.append(f"Subject {m['Subject']!r} does not fit kind {kind}")
    if not re.match(r"^<[^@<>\s]+@alerts\.example\.com>$", m["Message-ID"]):
        errors.append(f"Message-ID {m['Message-ID']!r}")
    if m.get_content_type() != "text/plain" or m["Content-Transfer-Encoding"] != \
            "quoted-printable":
        errors.append(f"Content-Type {m['Content-Type']!r} / {m['Content-Transfer-Encoding']!r}")
    body = m.get_content()
    if f"Kind:    {kind}" not in body or "Level:   " not in body:
        errors.append(f"the body does not list level and kind: {body[:200]!r}")
    raw_body = record["data"].split("\r\n\r\n", 1)[-1]
    if any(len(line) > 76 for line in raw_body.split("\r\n")):
        errors.append("a body line is longer than quoted-printable's 76 characters")
    return errors


# ---- mann -----------------------------------------------------------------------------------

def settings(receiver=None, mail=None, channels=(), **overrides):
    """--set arguments for `mann`: a fast monitor (one tick a second), one memory utilization
    rule, a small bank, the pager with `channels` pointing at the receivers, short backoffs.
    `overrides` use "__" for "." (monitoring__alert_rules=...)."""
    values = {
        "monitoring.enabled": "true",
        "monitoring.health_check_interval": str(int(TICK)),
        "monitoring.alert_rules": "memory_utilization>0.5 for 0s warning",
        "monitoring.renotify_info": "3600",
        "monitoring.renotify_warning": "3600",
        "monitoring.renotify_error": "3600",
        "monitoring.renotify_critical": "3600",
        "memory.memory_size": str(MEMORY_SIZE),
        "pager.enabled": "true",
        "pager.min_level": "info",
        "pager.max_attempts": "10",
        "pager.initial_backoff": "1",
        "pager.max_backoff": "2",
        "pager.request_timeout": "5",
    }
    if "slack" in channels:
        values["pager.webhook"] = receiver.url("/slack")
    if "pagerduty" in channels:
        values["pager.pagerduty_routing_key"] = ROUTING_KEY
        values["pager.pagerduty_url"] = receiver.url("/pagerduty")
    if "webhook" in channels:
        values["pager.json_webhook"] = receiver.url("/webhook")
    if "email" in channels:
        values.update({"pager.smtp_url": mail.url, "pager.smtp_username": SMTP_USER,
                       "pager.smtp_password": SMTP_PASSWORD, "pager.smtp_from": MAIL_FROM,
                       "pager.smtp_to": MAIL_TO, "pager.smtp_ca_file": mail.ca_file})
    for key, value in overrides.items():
        values[key.replace("__", ".")] = str(value)
    args = []
    for key, value in values.items():
        args += ["--set", f"{key}={value}"]
    return args


def add_memories(srv, count, first=0):
    """Adds FACTS[first:first + count] to the default namespace; returns their ids."""
    ids = []
    for fact in FACTS[first:first + count]:
        code, _, body = srv.request("POST", "/memories", {"content": fact})
        if code != 200 or body.get("status") != "created":
            raise RuntimeError(f"POST /memories did not create {fact!r}: {code} {body}")
        ids.append(body["memory_id"])
    return ids


def delete_memories(srv, ids):
    for memory_id in ids:
        code, _, body = srv.request("DELETE", f"/memories/{memory_id}")
        if code != 200:
            raise RuntimeError(f"DELETE /memories/{memory_id}: {code} {body}")


def metric(srv, name, **labels):
    """The value of the sample `name{labels}` on /metrics (labels compared exactly), or None."""
    code, _, text = srv.request("GET", "/metrics")
    if code != 200:
        return None
    for line in text.splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)", line)
        if not m or m.group(1) != name:
            continue
        found = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
        if found == {k: str(v) for k, v in labels.items()}:
            return float(m.group(4))
    return None


def alert_state(srv, dedup_key=None):
    """The state GET /alerts gives the incident's alert ("pending", "firing"), or None when it
    is not active."""
    code, _, body = srv.request("GET", "/alerts")
    if code != 200 or not isinstance(body, dict):
        raise RuntimeError(f"GET /alerts: {code} {str(body)[:300]}")
    for alert in body.get("active", []):
        if alert.get("dedup_key") == (dedup_key or INCIDENT_KEY):
            return alert.get("state")
    return None


def run_mann(mann, root, *args, timeout=TIMEOUT):
    proc = subprocess.run([mann, *args], capture_output=True, text=True, timeout=timeout,
                          env=harness.hermetic_env(root))
    return proc.returncode, proc.stdout, proc.stderr


def outbox_rows(mann, root, data_dir, settings_args):
    """The outbox rows `mann alert list --json` shows, newest first (dicts with channel, state,
    attempts, last_status...), or None after a failed check."""
    args = ["alert", "list", "--json", "--data-dir", data_dir, *settings_args]
    code, out, err = run_mann(mann, root, *args)
    doc = harness.json_document(checks, args, code, out, err)
    rows = doc.get("deliveries") if isinstance(doc, dict) else None
    check(code == 0 and isinstance(rows, list), "mann alert list --json lists the deliveries",
          f"code {code} stdout {out[:300]!r} stderr {err[:300]!r}")
    return rows if isinstance(rows, list) else None


def answered_ok(record):
    return isinstance(record["answered"], int) and 200 <= record["answered"] < 300


def check_sent_metric(srv, receiver, mail_count=None, channels=CHANNELS, where=""):
    """mann_pager_notifications_sent_total{channel} equals the 2xx answers each receiver gave
    (and the messages the mail server accepted)."""
    for channel in channels:
        if channel == "email":
            seen = mail_count
        else:
            seen = sum(1 for r in receiver.records(PATH_OF[channel]) if answered_ok(r))
        value = metric(srv, "mann_pager_notifications_sent_total", channel=channel)
        check(value == seen, f"{where}: mann_pager_notifications_sent_total{{channel=\"{channel}"
              f"\"}} matches what the receiver accepted", f"metric {value}, receiver {seen}")


def no_schema_errors(records, what):
    bad = [(r["path"], r["errors"]) for r in records if r["errors"]]
    check(not bad, f"{what}: every payload passes its receiver's schema", str(bad)[:600])


def webhook_kinds(records):
    return [r["body"].get("kind") if isinstance(r["body"], dict) else None for r in records]


def settle(seconds):
    """Waits `seconds` so that what should NOT happen (a retry, a duplicate) had its chance."""
    time.sleep(seconds)


# ---- scenarios ------------------------------------------------------------------------------

def test_incident(mann, root, mail):
    with alert_receiver.AlertReceiver(routing_key=ROUTING_KEY) as receiver:
        args = settings(receiver, mail, CHANNELS,
                        monitoring__alert_rules="memory_utilization>0.5 for 2s warning")
        mark = len(mail.messages())
        srv = harness.Server(mann, root, os.path.join(root, "incident-data"), *args)
        try:
            # The breach starts with the third memory (3/4 > 0.5); the alert is pending for 2 s.
            ids = add_memories(srv, 2)
            breach_at = time.time()
            ids += add_memories(srv, 1, first=2)
            deadline = time.monotonic() + 5
            states = []
            while time.monotonic() < deadline and "firing" not in states:
                states.append(alert_state(srv))
                time.sleep(0.1)
            check("pending" in states, "incident: GET /alerts shows the alert pending during "
                  "its `for`", str(sorted(set(states), key=str)))

            # The trigger, on every channel.
            def arrived(path):
                return receiver.wait_for(lambda rs: len(rs) >= 1, path, timeout=15)[1]
            for path in PATH_OF.values():
                check(arrived(path), f"incident: the trigger reaches {path}")
            _, mailed = mail.wait_for(lambda ms: len(ms) >= 1, mark, timeout=15)
            check(mailed, "incident: the trigger reaches the mail server")
            firsts = [rs[0]["at"] for rs in (receiver.records(p) for p in PATH_OF.values()) if rs]
            firsts += [m["received_at"] for m in mail.messages(mark)[:1]]
            early = min(firsts) - breach_at if firsts else None
            check(early is not None and early >= 2.0 - 0.1,
                  "incident: nothing is sent before the rule's `for` of 2 s has passed",
                  f"first arrival {early} s after the breach")

            check(alert_state(srv) == "firing", "incident: GET /alerts shows the alert firing",
                  str(srv.request("GET", "/alerts")[2])[:400])

            # The resolve, once the memories are gone.
            delete_memories(srv, ids)
            for path in PATH_OF.values():
                check(receiver.wait_for(lambda rs: len(rs) >= 2, path, timeout=15)[1],
                      f"incident: the resolve reaches {path}")
            check(mail.wait_for(lambda ms: len(ms) >= 2, mark, timeout=15)[1],
                  "incident: the resolve reaches the mail server")
            settle(2.5 * TICK)  # a duplicate would be sent within a tick or two
            code, _, alerts = srv.request("GET", "/alerts")
            history = sorted((e for e in alerts.get("history", [])
                              if e.get("dedup_key") == INCIDENT_KEY),
                             key=lambda e: e.get("sequence", 0)) if code == 200 else []
            kinds = [e.get("kind") for e in history]
            check(alert_state(srv) is None and kinds == ["trigger", "resolve"],
                  "incident: GET /alerts has it no longer active, with trigger and resolve in "
                  "its history", f"{code} {str(alerts)[:400]}")

            slack = receiver.records("/slack")
            pagerduty = receiver.records("/pagerduty")
            webhook = receiver.records("/webhook")
            messages = mail.messages(mark)
            no_schema_errors(slack + pagerduty + webhook, "incident")

            titles = [r["body"]["attachments"][0]["title"] for r in slack if not r["errors"]]
            check(len(slack) == 2 and len(titles) == 2 and titles[0].startswith("[WARNING] ")
                  and titles[1].startswith("[RESOLVED] "),
                  "incident: Slack gets exactly one trigger ([WARNING]) and one resolve",
                  str(titles or [r["body"] for r in slack])[:400])

            actions = [r["body"].get("event_action") for r in pagerduty]
            check(actions == ["trigger", "resolve"],
                  "incident: PagerDuty gets exactly one trigger and one resolve", str(actions))
            if actions == ["trigger", "resolve"]:
                trigger, resolve = (r["body"] for r in pagerduty)
                check(resolve["dedup_key"] == trigger["dedup_key"],
                      "incident: PagerDuty's resolve carries the trigger's dedup_key",
                      f"{trigger['dedup_key']!r} vs {resolve['dedup_key']!r}")
                check(trigger.get("payload", {}).get("severity") == "warning",
                      "incident: PagerDuty's severity is the rule's level", str(trigger)[:300])

            kinds = webhook_kinds(webhook)
            check(kinds == ["trigger", "resolve"],
                  "incident: the webhook gets exactly one trigger and one resolve", str(kinds))
            if kinds == ["trigger", "resolve"]:
                trigger, resolve = (r["body"] for r in webhook)
                check(trigger["dedup_key"] == resolve["dedup_key"] == INCIDENT_KEY and
                      trigger["id"] != resolve["id"] and trigger["level"] == "warning",
                      "incident: the webhook's trigger and resolve share the alert's dedup_key "
                      "and have ids of their own", f"{trigger}\n      {resolve}"[:600])
                if actions == ["trigger", "resolve"]:
                    check(pagerduty[0]["body"]["dedup_key"] == trigger["dedup_key"],
                          "incident: PagerDuty and the webhook name the alert alike")

            mail_kinds = [m["parsed"]["X-Mann-Kind"] for m in messages]
            check(mail_kinds == ["trigger", "resolve"],
                  "incident: email gets exactly one trigger and one resolve, over STARTTLS "
                  "with a login", str(mail_kinds))
            bad_mail = [email_errors(m) for m in messages if email_errors(m)]
            check(not bad_mail, "incident: every email is well-formed", str(bad_mail)[:600])

            check_sent_metric(srv, receiver, len(messages), where="incident")
        finally:
            check(srv.stop() == 0, "incident: mann serve stops with exit 0")


def test_renotify(mann, root):
    floor = 2  # seconds between two notifications of one firing error alert, at least
    with alert_receiver.AlertReceiver(routing_key=ROUTING_KEY) as receiver:
        args = settings(receiver, None, ("pagerduty", "webhook"),
                        monitoring__alert_rules="memory_utilization>0.5 for 0s error",
                        monitoring__renotify_error=floor)
        srv = harness.Server(mann, root, os.path.join(root, "renotify-data"), *args)
        try:
            ids = add_memories(srv, 3)
            _, triggered = receiver.wait_for(lambda rs: len(rs) >= 1, "/webhook", timeout=10)
            check(triggered, "renotify: the trigger arrives")
            firing_for = 7.5  # seconds: room for three re-notifications at the floor
            settle(firing_for)
            delete_memories(srv, ids)
            _, resolved = receiver.wait_for(lambda rs: "resolve" in webhook_kinds(rs),
                                            "/webhook", timeout=10)
            check(resolved, "renotify: the resolve arrives")
            settle(1.5 * TICK)

            webhook = receiver.records("/webhook")
            pagerduty = receiver.records("/pagerduty")
            no_schema_errors(webhook + pagerduty, "renotify")
            kinds = webhook_kinds(webhook)
            renotifies = kinds.count("renotify")
            check(kinds[:1] == ["trigger"] and kinds[-1:] == ["resolve"] and
                  kinds.count("trigger") == 1 and kinds.count("resolve") == 1,
                  "renotify: one trigger, re-notifications, one resolve", str(kinds))

            # Spacing, by the notifications' own times and by their arrival.
            firing = [r for r in webhook if r["body"].get("kind") in ("trigger", "renotify")]
            stamps = [alert_receiver.iso_epoch(r["body"]["time"]) for r in firing]
            gaps = [b - a for a, b in zip(stamps, stamps[1:])]
            arrival_gaps = [b["at"] - a["at"] for a, b in zip(firing, firing[1:])]
            check(gaps and min(gaps) >= floor - 0.05,
                  f"renotify: notifications of the firing alert are at least {floor} s apart",
                  f"gaps {[round(g, 2) for g in gaps]}")
            # Arrival also includes the outbox's delivery delay, which a loaded machine can
            # stretch for one notification and not the next (seen: 1.0 s against a 2 s floor);
            # the event times above carry the exact spacing, this only rules out a burst.
            check(arrival_gaps and min(arrival_gaps) >= floor / 2,
                  f"renotify: they arrive at least {floor / 2} s apart, not in a burst",
                  f"arrival gaps {[round(g, 2) for g in arrival_gaps]}")
            window = stamps[-1] - stamps[0] if stamps else 0
            resolve_time = next((alert_receiver.iso_epoch(r["body"]["time"]) for r in webhook
                                 if r["body"].get("kind") == "resolve"), None)
            firing_window = (resolve_time - stamps[0]) if resolve_time and stamps else window
            check(2 <= renotifies <= int(firing_window // floor),
                  f"renotify: the count is bounded by the floor ({firing_window:.1f} s firing)",
                  f"{renotifies} re-notifications")

            # PagerDuty: every one updates the same incident, then the resolve closes it.
            actions = [r["body"].get("event_action") for r in pagerduty]
            keys = {r["body"].get("dedup_key") for r in pagerduty}
            check(actions == ["trigger"] * (1 + renotifies) + ["resolve"] and len(keys) == 1,
                  "renotify: PagerDuty gets the same events under one dedup_key",
                  f"{actions} {keys}")
            check_sent_metric(srv, receiver, channels=("pagerduty", "webhook"), where="renotify")
        finally:
            check(srv.stop() == 0, "renotify: mann serve stops with exit 0")


def test_outcomes(mann, root):
    """Each channel has its own worker, so one alert exercises three receiver behaviours."""
    with alert_receiver.AlertReceiver(routing_key=ROUTING_KEY) as receiver:
        receiver.script("/webhook", answer(500), answer(500), answer(200))
        receiver.script("/slack", answer(400, body="invalid_payload"))
        receiver.script("/pagerduty", answer(429, retry_after=2), answer(202))
        data_dir = os.path.join(root, "outcomes-data")
        args = settings(receiver, None, ("slack", "pagerduty", "webhook"))
        srv = harness.Server(mann, root, data_dir, *args)
        try:
            add_memories(srv, 3)
            webhook, recovered = receiver.wait_for(
                lambda rs: any(answered_ok(r) for r in rs), "/webhook", timeout=15)
            check(recovered, "outcomes: 500, 500 then 200 is retried until it is delivered",
                  str([r["answered"] for r in webhook]))
            pagerduty, retried = receiver.wait_for(
                lambda rs: any(answered_ok(r) for r in rs), "/pagerduty", timeout=15)
            check(retried, "outcomes: a 429 is retried", str([r["answered"] for r in pagerduty]))
            settle(2.0 + 1.0)  # longer than max_backoff: a further retry would have come

            webhook = receiver.records("/webhook")
            slack = receiver.records("/slack")
            pagerduty = receiver.records("/pagerduty")
            no_schema_errors(webhook + slack + pagerduty, "outcomes")

            answers = [r["answered"] for r in webhook]
            ids = {r["headers"].get("x-mann-notification-id") for r in webhook}
            check(answers == [500, 500, 200] and len(ids) == 1,
                  "outcomes: the webhook is retried through 500, 500 until its 200 and never "
                  "after (one notification id throughout)", f"{answers} {ids}")
            check(metric(srv, "mann_pager_notifications_retried_total", channel="webhook") == 2,
                  "outcomes: mann_pager_notifications_retried_total{channel=\"webhook\"} is 2")

            check([r["answered"] for r in slack] == [400],
                  "outcomes: a 400 is not retried (exactly one request)",
                  str([r["answered"] for r in slack]))
            check(metric(srv, "mann_pager_notifications_failed_total", channel="slack") == 1,
                  "outcomes: mann_pager_notifications_failed_total{channel=\"slack\"} is 1")

            answers = [r["answered"] for r in pagerduty]
            check(answers == [429, 202], "outcomes: after a 429 PagerDuty gets it once",
                  str(answers))
            if len(pagerduty) >= 2:
                gap = pagerduty[1]["at"] - pagerduty[0]["answered_at"]
                check(gap >= 2.0 - 0.05, "outcomes: the attempt after 429 with Retry-After: 2 "
                      "comes no sooner than 2 s later", f"{gap:.2f} s")
                check(gap < 2.0 + 2.5, "outcomes: ... and not much later", f"{gap:.2f} s")
            check_sent_metric(srv, receiver, channels=("slack", "pagerduty", "webhook"),
                              where="outcomes")

            # The refusal is on record for the operator.
            rows = outbox_rows(mann, root, data_dir, args) or []
            slack_rows = [r for r in rows if r.get("channel") == "slack"]
            check(len(slack_rows) == 1 and slack_rows[0].get("state") == "failed" and
                  slack_rows[0].get("last_status") == 400 and slack_rows[0].get("attempts") == 1,
                  "outcomes: mann alert list shows the 400 as failed after one attempt",
                  str(slack_rows)[:500])
            webhook_rows = [r for r in rows if r.get("channel") == "webhook"]
            check(len(webhook_rows) == 1 and webhook_rows[0].get("state") == "delivered" and
                  webhook_rows[0].get("attempts") == 3,
                  "outcomes: mann alert list shows the webhook delivered on attempt 3",
                  str(webhook_rows)[:500])
        finally:
            check(srv.stop() == 0, "outcomes: mann serve stops with exit 0")


def test_sigkill(mann, root):
    with alert_receiver.AlertReceiver(routing_key=ROUTING_KEY) as receiver:
        receiver.script("/webhook", answer(500))
        data_dir = os.path.join(root, "sigkill-data")
        args = settings(receiver, None, ("webhook",), pager__max_attempts=50,
                        pager__max_backoff=1)
        srv = harness.Server(mann, root, data_dir, *args)
        killed = False
        try:
            add_memories(srv, 3)
            before, failing = receiver.wait_for(lambda rs: len(rs) >= 1, "/webhook", timeout=10)
            check(failing, "sigkill: the alert's notification reaches the failing receiver")
            rows = outbox_rows(mann, root, data_dir, args) or []
            check([r.get("state") for r in rows] == ["pending"],
                  "sigkill: its outbox row is pending while the receiver fails",
                  str(rows)[:400])
            srv.stop(signal.SIGKILL)
            killed = True
        finally:
            if not killed:
                srv.stop()
        settle(0.3)  # a request the killed process had on the wire lands before the count
        before = receiver.records("/webhook")
        notification_ids = {r["headers"].get("x-mann-notification-id") for r in before}
        receiver.script("/webhook", answer(200))

        # The next process must not raise a fresh alert of its own: the memories are still
        # there, so its rule is set out of reach and only the outbox can send anything.
        restarted = harness.Server(
            mann, root, data_dir,
            *settings(receiver, None, ("webhook",), pager__max_attempts=50, pager__max_backoff=1,
                      monitoring__alert_rules="memory_utilization>100 for 0s warning"))
        try:
            _, delivered = receiver.wait_for(lambda rs: any(answered_ok(r) for r in rs),
                                             "/webhook", timeout=15)
            check(delivered, "sigkill: the restarted mann delivers the pending notification")
            settle(2.0)
            after = receiver.records("/webhook")[len(before):]
            no_schema_errors(before + after, "sigkill")
            ids_after = [r["headers"].get("x-mann-notification-id") for r in after]
            check(len(after) == 1 and answered_ok(after[0]) and len(notification_ids) == 1 and
                  set(ids_after) == notification_ids,
                  "sigkill: the notification arrives exactly once after the restart, under its "
                  "original id", f"before {notification_ids}, after {ids_after} "
                  f"{[r['answered'] for r in after]}")
            check(metric(restarted, "mann_pager_notifications_sent_total", channel="webhook")
                  == 1, "sigkill: the restarted mann counts one sent notification")
            rows = outbox_rows(mann, root, data_dir, args) or []
            check([r.get("state") for r in rows] == ["delivered"],
                  "sigkill: the outbox row is delivered", str(rows)[:400])
        finally:
            check(restarted.stop() == 0, "sigkill: the restarted mann stops with exit 0")


def test_stall(mann, root):
    with alert_receiver.AlertReceiver(routing_key=ROUTING_KEY) as receiver:
        receiver.script("/slack", stall(10))
        # The request timeout outlasts the stall, so the Slack worker really is held 10 s.
        args = settings(receiver, None, ("slack", "webhook"), pager__request_timeout=15)
        srv = harness.Server(mann, root, os.path.join(root, "stall-data"), *args)
        stopped = False
        try:
            add_memories(srv, 3)
            held, stalled = receiver.wait_for(
                lambda rs: any(r["answered"] == "stall" for r in rs), "/slack", timeout=10)
            check(stalled, "stall: the Slack receiver holds mann's request")
            stall_ends = held[0]["at"] + 10 if held else 0
            _, other = receiver.wait_for(lambda rs: any(answered_ok(r) for r in rs), "/webhook",
                                         timeout=3)
            check(other, "stall: the webhook channel delivers while Slack stalls")

            slow = []
            for _ in range(20):
                started = time.monotonic()
                code, _, _ = srv.request("GET", "/health")
                took = time.monotonic() - started
                if code != 200 or took >= 0.5:
                    slow.append((code, round(took, 3)))
            check(not slow, "stall: 20 GET /health answer 200, each well under 0.5 s", str(slow))
            detail_budget = 5.0  # seconds: HealthChecker's budget of one check
            slow = []
            for _ in range(3):
                started = time.monotonic()
                code, _, body = srv.request("GET", "/health?detail=1")
                took = time.monotonic() - started
                if code not in (200, 503) or took >= 1.0:
                    slow.append((code, round(took, 3), str(body)[:200]))
            check(not slow, "stall: GET /health?detail=1 answers in well under its "
                  f"{detail_budget:.0f} s budget", str(slow))
            names = [c.get("name") for c in body.get("checks", {}).get("checks", [])] \
                if isinstance(body, dict) else []
            check("pager" in names, "stall: GET /health?detail=1 includes the pager's check",
                  str(body)[:400])
            check(time.time() < stall_ends,
                  "stall: the health requests were made while Slack was still stalled")

            started = time.monotonic()
            code = srv.stop()
            stopped = True
            took = time.monotonic() - started
            check(code == 0 and took < 5.0, "stall: SIGTERM stops mann promptly despite the "
                  "stalled transfer", f"exit {code} after {took:.2f} s")
        finally:
            if not stopped:
                srv.stop()


def test_alert_test(mann, root, mail, python):
    data = ["--data-dir", os.path.join(root, "alert-test-data")]
    with alert_receiver.AlertReceiver(routing_key=ROUTING_KEY) as receiver:
        args = [*data, *settings(receiver, mail, CHANNELS)]
        mark = len(mail.messages())
        expected = {"slack": "HTTP 200", "pagerduty": "HTTP 202", "webhook": "HTTP 200",
                    "email": "SMTP 250"}
        for channel in CHANNELS:
            code, out, err = run_mann(mann, root, "alert", "test", "--channel", channel, *args)
            check(code == 0 and f"delivered ({expected[channel]})" in out,
                  f"alert_test: `mann alert test --channel {channel}` exits 0 and reports the "
                  f"receiver's {expected[channel]}",
                  f"code {code} stdout {out[:300]!r} stderr {err[:300]!r}")

        for channel, path in PATH_OF.items():
            records = receiver.records(path)
            check(len(records) == 1 and not records[0]["errors"],
                  f"alert_test: {path} got one valid test payload",
                  str([(r["body"], r["errors"]) for r in records])[:500])
        webhook = receiver.records("/webhook")
        check(webhook_kinds(webhook) == ["test"], "alert_test: the webhook's event is \"test\"",
              str(webhook_kinds(webhook)))
        messages = mail.messages(mark)
        check(len(messages) == 1 and not email_errors(messages[0]) and
              messages[0]["parsed"]["X-Mann-Kind"] == "test",
              "alert_test: the mail server got one valid test message over STARTTLS",
              str([email_errors(m) for m in messages] or "no message"))

        # Refusals are reported as such, in text and in JSON.
        for path in PATH_OF.values():
            receiver.script(path, answer(400, body="no such integration"))
        for channel in PATH_OF:
            code, out, err = run_mann(mann, root, "alert", "test", "--channel", channel, *args)
            check(code == 1 and "refused (HTTP 400)" in out and "no such integration" in out,
                  f"alert_test: a 400 from {channel} makes `mann alert test` exit 1 and say "
                  "what the receiver answered",
                  f"code {code} stdout {out[:300]!r} stderr {err[:300]!r}")
            command = ["alert", "test", "--channel", channel, "--json"]
            code, out, err = run_mann(mann, root, *command, *args)
            doc = harness.json_document(checks, command, code, out, err) or {}
            check(code == 1 and doc.get("delivered") is False and doc.get("http_status") == 400,
                  f"alert_test: --json reports {channel}'s 400 as not delivered", str(doc))
        check(all(len(receiver.records(p)) == 3 for p in PATH_OF.values()),
              "alert_test: each refused test reached its receiver",
              str({p: len(receiver.records(p)) for p in PATH_OF.values()}))

    # A mail server that refuses the login.
    refusing = Mail(root, python, name="refusing-smtp", password="another-password")
    try:
        args = [*data, *settings(None, refusing, ("email",))]
        command = ["alert", "test", "--channel", "email", "--json"]
        code, out, err = run_mann(mann, root, *command, *args)
        doc = harness.json_document(checks, command, code, out, err) or {}
        check(code == 1 and doc.get("delivered") is False and doc.get("smtp_reply") == 535 and
              doc.get("permanent") is True and SMTP_PASSWORD not in out + err,
              "alert_test: a refused SMTP login makes `mann alert test` exit 1, report 535 as "
              "permanent and not show the password", f"code {code} stdout {out[:300]!r} "
              f"stderr {err[:300]!r}")
        check(refusing.messages() == [], "alert_test: nothing was accepted without the login")

        # A channel that is not configured is a usage error, not a refusal.
        code, out, err = run_mann(mann, root, "alert", "test", "--channel", "slack", *args)
        check(code == 2 and "pager.webhook" in err,
              "alert_test: testing an unconfigured channel exits 2 naming its setting",
              f"code {code} stderr {err[:300]!r}")
    finally:
        refusing.stop()


def test_takeover(mann, root):
    ghost_ttl = 4  # seconds the dead replica's lock still has
    key = "mann:alert:disk"
    redis = harness.Redis(root)
    replicas = []
    try:
        # A replica took the lock of the "disk" alert and died before its outbox had the event.
        check(redis.cli("set", key, "dead-replica:1", "px", str(ghost_ttl * 1000)) == "OK",
              "takeover: the dead replica's lock is in place")
        started = time.monotonic()
        with alert_receiver.AlertReceiver(routing_key=ROUTING_KEY) as receiver:
            args = settings(receiver, None, ("webhook",), redis__url=redis.url(),
                            monitoring__alert_rules="disk>-1 for 0s warning")
            for name in ("a", "b"):
                replicas.append(harness.Server(mann, root, os.path.join(root, f"takeover-{name}"),
                                               *args))
            _, delivered = receiver.wait_for(lambda rs: len(rs) >= 1, "/webhook",
                                             timeout=ghost_ttl + 10 * TICK)
            waited = time.monotonic() - started
            check(delivered, "takeover: the withheld trigger is delivered after the lock expires")
            check(waited >= ghost_ttl - 0.5, "takeover: not before the dead replica's lock expired",
                  f"{waited:.1f} s")
            settle(3 * TICK)  # room for a duplicate from the other replica

            webhook = receiver.records("/webhook")
            no_schema_errors(webhook, "takeover")
            check(webhook_kinds(webhook) == ["trigger"], "takeover: exactly one trigger",
                  str(webhook_kinds(webhook)))
            value = redis.cli("get", key)
            check(re.match(r"^\S+:\d+ delivered trigger \d+$", value) is not None,
                  "takeover: the delivering replica confirmed it in the lock", repr(value))

            def total(result):
                values = [metric(r, "mann_alert_lock_decisions_total", result=result)
                          for r in replicas]
                return sum(v or 0 for v in values)
            check(total("taken_over") == 1, "takeover: one replica counts a take-over",
                  str(total("taken_over")))
            check(total("confirmed_elsewhere") >= 1 and total("gave_up") == 0,
                  "takeover: the other drops its copy, nothing is given up",
                  f"confirmed_elsewhere {total('confirmed_elsewhere')} "
                  f"gave_up {total('gave_up')}")
            late = []
            for r in replicas:
                _, _, body = r.request("GET", "/alerts")
                late += [e for e in body.get("history", []) if e.get("taken_over")]
            check(len(late) == 1, "takeover: GET /alerts marks the late delivery taken_over",
                  str(late)[:300])
    finally:
        for r in replicas:
            check(r.stop() == 0, "takeover: mann serve stops with exit 0")
        redis.stop()



def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--mann", required=True)
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="mann-pager-test-")
    started = time.monotonic()
    try:
        python = aiosmtpd_python()
        mail = None
        if python is None:
            checks.fail("python3-aiosmtpd is missing: install it (scripts/setup.sh does)")
        else:
            try:
                mail = Mail(root, python)
            except Exception as e:  # noqa: BLE001 - reported as a failure
                checks.fail(f"smtp_receiver.py: {type(e).__name__}: {e}")
        try:
            if mail is not None:
                checks.scenario("incident", test_incident, args.mann, root, mail)
            checks.scenario("renotify", test_renotify, args.mann, root)
            checks.scenario("outcomes", test_outcomes, args.mann, root)
            checks.scenario("sigkill", test_sigkill, args.mann, root)
            checks.scenario("stall", test_stall, args.mann, root)
            checks.scenario("takeover", test_takeover, args.mann, root)
            if mail is not None:
                checks.scenario("alert_test", test_alert_test, args.mann, root, mail, python)
        finally:
            if mail is not None:
                mail.stop()
    finally:
        harness.clean_up(checks, root)
    print(f"pager_test: {time.monotonic() - started:.1f} s")
    return checks.summary()


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Stand-ins for the pager's HTTP receivers on a loopback port: Slack's incoming webhook
(/slack), PagerDuty's Events API v2 (/pagerduty) and a generic JSON webhook (/webhook).

Every request is recorded (path, headers, raw and parsed body, the schema errors found, when it
arrived and what it was answered) and every body is checked strictly against what that receiver
accepts from mann (src/pager/payloads.cc): required fields, their types, allowed values, no
unknown fields, the Slack colour that belongs to the level in the title, and for the webhook the
X-Mann-Notification-Id and X-Mann-Event headers matching the body. A request with schema errors
is still answered as configured: the test decides, by reading `errors`, what that means.

What each path answers is set through Python calls (there is no control API over HTTP, so
nothing mann does can change it):

    receiver = AlertReceiver(routing_key="R0UTING")
    receiver.start()
    receiver.script("/webhook", answer(500), answer(500), answer(200))   # then 200 forever
    receiver.script("/slack", answer(429, retry_after=2), answer(200))
    receiver.script("/pagerduty", stall(10))   # hold the connection 10 s, then drop it unanswered
    receiver.url("/slack")                      # "http://127.0.0.1:PORT/slack"
    receiver.wait_for(lambda rs: len(rs) >= 3, path="/webhook", timeout=10)
    receiver.stop()

A script is consumed one step per request and its last step repeats. The defaults are what the
real services answer: Slack 200 "ok", PagerDuty 202 with its JSON, the webhook 200.

Run alone, it serves until SIGINT or SIGTERM and prints one JSON line when listening,
{"ready": true, "host": "127.0.0.1", "port": N}, then one JSON line per request:

    alert_receiver.py [--port N] [--routing-key KEY] [--script /webhook=500,500,200]
                      [--script /slack=429:2,200] [--script /pagerduty=stall:10]
"""

import argparse
import copy
import datetime
import http.server
import json
import re
import signal
import sys
import threading
import time

HOST = "127.0.0.1"
PATHS = ("/slack", "/pagerduty", "/webhook")

LEVELS = ("info", "warning", "error", "critical")
KINDS = ("trigger", "renotify", "resolve", "test")
# The attachment colour Slack is sent for each headline tag (see SlackColor).
SLACK_COLORS = {"INFO": "#439FE0", "WARNING": "#FFA500", "ERROR": "#E01E5A",
                "CRITICAL": "#8B0000", "RESOLVED": "good"}
PAGERDUTY_SUMMARY_LIMIT = 1024  # bytes
DEDUP_KEY_LIMIT = 255  # bytes, PagerDuty's limit
ISO_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
HEADLINE = re.compile(r"^\[(INFO|WARNING|ERROR|CRITICAL|RESOLVED)\] (.+)$", re.S)


# ---- what a path answers ----------------------------------------------------------------------

class Step:
    """One answer of a script: an HTTP status (with an optional Retry-After and body), or a stall
    that holds the connection `stall_seconds` and then closes it without answering."""

    def __init__(self, status=200, retry_after=None, body=None, stall_seconds=None):
        self.status = status
        self.retry_after = retry_after
        self.body = body
        self.stall_seconds = stall_seconds

    def describe(self):
        if self.stall_seconds is not None:
            return f"stall {self.stall_seconds}s"
        return f"{self.status}" + (f" Retry-After {self.retry_after}" if self.retry_after else "")


def answer(status, retry_after=None, body=None):
    return Step(status=status, retry_after=retry_after, body=body)


def stall(seconds):
    return Step(stall_seconds=seconds)


def default_step(path):
    if path == "/slack":
        return answer(200, body="ok")
    if path == "/pagerduty":
        return answer(202, body={"status": "success", "message": "Event processed"})
    return answer(200, body={"ok": True})


def parse_step(text):
    """"500", "429:2" (Retry-After 2) or "stall:10", as --script takes them."""
    if text.startswith("stall:"):
        return stall(float(text.split(":", 1)[1]))
    status, _, retry_after = text.partition(":")
    return answer(int(status), retry_after=int(retry_after) if retry_after else None)


# ---- schemas ----------------------------------------------------------------------------------

def _type_errors(obj, where, fields, required=True):
    """Errors for `fields` ({name: type or tuple of types}) of dict `obj`."""
    errors = []
    for name, kind in fields.items():
        if name not in obj:
            if required:
                errors.append(f"{where}.{name} is missing")
            continue
        value = obj[name]
        # bool is an int in Python; a JSON true is never a number here.
        if isinstance(value, bool) and kind is not bool:
            errors.append(f"{where}.{name} is a boolean, not {kind}")
        elif not isinstance(value, kind):
            errors.append(f"{where}.{name} is {type(value).__name__}, not {kind}")
    return errors


def _unknown(obj, where, allowed):
    return [f"{where}.{name} is not a field this receiver knows" for name in obj
            if name not in allowed]


def _time_errors(value, where):
    if not isinstance(value, str) or not ISO_TIME.match(value):
        return [f"{where} {value!r} is not ISO 8601 UTC with milliseconds"]
    return []


def iso_epoch(text):
    """Seconds since the epoch of "2026-12-03T15:28:49.473Z"."""
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()


def slack_errors(body):
    if not isinstance(body, dict):
        return ["the body is not a JSON object"]
    errors = _unknown(body, "body", {"attachments"})
    attachments = body.get("attachments")
    if not isinstance(attachments, list) or len(attachments) != 1:
        return errors + ["body.attachments must be a list of exactly one attachment"]
    a = attachments[0]
    if not isinstance(a, dict):
        return errors + ["the attachment is not an object"]
    fields = {"color": str, "title": str, "text": str, "fallback": str, "fields": list, "ts": int}
    errors += _unknown(a, "attachment", fields) + _type_errors(a, "attachment", fields)
    if errors:
        return errors

    headline = HEADLINE.match(a["title"])
    if not headline:
        errors.append(f"attachment.title {a['title']!r} does not start with [LEVEL] or [RESOLVED]")
    elif a["color"] != SLACK_COLORS[headline.group(1)]:
        errors.append(f"attachment.color {a['color']!r} is not {SLACK_COLORS[headline.group(1)]} "
                      f"for {headline.group(1)}")
    if not a["fallback"].startswith(a["title"]):
        errors.append("attachment.fallback does not start with the title")

    titles = []
    for i, field in enumerate(a["fields"]):
        where = f"attachment.fields[{i}]"
        if not isinstance(field, dict):
            errors.append(f"{where} is not an object")
            continue
        shape = {"title": str, "value": str, "short": bool}
        errors += _unknown(field, where, shape) + _type_errors(field, where, shape)
        titles.append(field.get("title"))
    if titles[:2] != ["Time", "Service"]:
        errors.append(f"the first fields are {titles[:2]}, not Time and Service")
    elif not errors:
        time_text = a["fields"][0]["value"]
        errors += _time_errors(time_text, "the Time field")
        if not errors and int(iso_epoch(time_text)) != a["ts"]:
            errors.append(f"attachment.ts {a['ts']} is not the Time field {time_text}")
    return errors


def pagerduty_errors(body, routing_key=None):
    if not isinstance(body, dict):
        return ["the body is not a JSON object"]
    top = {"routing_key": str, "event_action": str, "dedup_key": str}
    errors = _type_errors(body, "body", top)
    if errors:
        return errors
    if routing_key is not None and body["routing_key"] != routing_key:
        errors.append("body.routing_key is not the configured integration key")
    if not body["dedup_key"] or len(body["dedup_key"].encode()) > DEDUP_KEY_LIMIT:
        errors.append(f"body.dedup_key must hold 1 to {DEDUP_KEY_LIMIT} bytes")
    action = body["event_action"]
    if action == "resolve":
        return errors + _unknown(body, "body", top)
    if action != "trigger":
        return errors + [f"body.event_action {action!r} is not trigger or resolve"]

    errors += _unknown(body, "body", {**top, "payload": dict})
    errors += _type_errors(body, "body", {"payload": dict})
    if errors:
        return errors
    p = body["payload"]
    shape = {"summary": str, "source": str, "severity": str, "timestamp": str,
             "custom_details": dict}
    errors += _unknown(p, "payload", shape) + _type_errors(p, "payload", shape)
    if errors:
        return errors
    if not p["summary"] or len(p["summary"].encode()) > PAGERDUTY_SUMMARY_LIMIT:
        errors.append(f"payload.summary must hold 1 to {PAGERDUTY_SUMMARY_LIMIT} bytes")
    if not p["source"]:
        errors.append("payload.source is empty")
    if p["severity"] not in ("critical", "error", "warning", "info"):
        errors.append(f"payload.severity {p['severity']!r} is not critical, error, warning "
                      "or info")
    errors += _time_errors(p["timestamp"], "payload.timestamp")
    if not isinstance(p["custom_details"].get("message"), str):
        errors.append("payload.custom_details.message is not a string")
    return errors


def webhook_errors(body, headers):
    if not isinstance(body, dict):
        return ["the body is not a JSON object"]
    shape = {"id": str, "dedup_key": str, "kind": str, "event": str, "level": str, "title": str,
             "message": str, "time": str, "service": str, "metadata": dict}
    errors = _unknown(body, "body", shape) + _type_errors(body, "body", shape)
    if errors:
        return errors
    if not UUID.match(body["id"]):
        errors.append(f"body.id {body['id']!r} is not a UUID")
    if body["kind"] not in KINDS:
        errors.append(f"body.kind {body['kind']!r} is not one of {', '.join(KINDS)}")
    if body["event"] != body["kind"]:
        errors.append(f"body.event {body['event']!r} is not body.kind {body['kind']!r}")
    if body["level"] not in LEVELS:
        errors.append(f"body.level {body['level']!r} is not one of {', '.join(LEVELS)}")
    if not body["title"]:
        errors.append("body.title is empty")
    if len(body["dedup_key"].encode()) > DEDUP_KEY_LIMIT:
        errors.append(f"body.dedup_key is longer than {DEDUP_KEY_LIMIT} bytes")
    errors += _time_errors(body["time"], "body.time")
    for key, value in body["metadata"].items():
        if not key or not isinstance(value, str):
            errors.append(f"body.metadata[{key!r}] must be a non-empty key with a string value")
    if headers.get("x-mann-notification-id") != body["id"]:
        errors.append(f"header X-Mann-Notification-Id {headers.get('x-mann-notification-id')!r} "
                      f"is not body.id")
    if headers.get("x-mann-event") != body["kind"]:
        errors.append(f"header X-Mann-Event {headers.get('x-mann-event')!r} is not body.kind")
    return errors


# ---- the server -------------------------------------------------------------------------------

class AlertReceiver:
    """The three receivers on one loopback port. Thread-safe: the test thread sets behaviour and
    reads records while handler threads serve."""

    def __init__(self, port=0, routing_key=None, on_request=None):
        self.routing_key = routing_key  # when set, PagerDuty events must carry exactly it
        self._on_request = on_request   # called with each finished record (the CLI prints them)
        self._lock = threading.Condition()
        self._records = []
        self._scripts = {}
        self._closing = threading.Event()  # ends every stall at stop()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):  # noqa: N802 - the name http.server dispatches to
                receiver._serve(self)

            def do_GET(self):  # noqa: N802
                receiver._refuse(self, 405)

            do_PUT = do_DELETE = do_GET

            def log_message(self, *args):
                pass  # the records are the log

        self._server = http.server.ThreadingHTTPServer((HOST, port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = None

    # -- lifecycle

    def start(self):
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self._closing.set()
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- control

    def url(self, path):
        return f"http://{HOST}:{self.port}{path}"

    def script(self, path, *steps):
        """What `path` answers from now on: steps in order, the last repeating. No steps: the
        receiver's default again."""
        if path not in PATHS:
            raise ValueError(f"unknown path {path}; the receivers are {', '.join(PATHS)}")
        with self._lock:
            self._scripts[path] = list(steps)

    def clear(self):
        """Forgets the requests seen so far (behaviours stay)."""
        with self._lock:
            self._records = []

    # -- what arrived

    def records(self, path=None):
        """Copies of the records so far, oldest first; of one path when given. A record is a dict:
        path, method, headers (lower-case names), raw (bytes), body (parsed JSON or None), errors
        (schema errors, a list), at (time.time() of arrival), answered (the status sent, "stall"
        while or after stalling), answered_at (when the answer went out, None during a stall)."""
        with self._lock:
            return [copy.deepcopy(r) for r in self._records if path is None or r["path"] == path]

    def wait_for(self, predicate, path=None, timeout=10.0):
        """Waits until predicate(records(path)) is true or `timeout` seconds pass; returns the last
        records and whether the predicate held."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                current = [copy.deepcopy(r) for r in self._records
                           if path is None or r["path"] == path]
                if predicate(current):
                    return current, True
                left = deadline - time.monotonic()
                if left <= 0:
                    return current, False
                self._lock.wait(min(left, 0.1))

    # -- serving

    def _next_step(self, path):
        with self._lock:
            steps = self._scripts.get(path)
            if not steps:
                return default_step(path)
            return steps.pop(0) if len(steps) > 1 else steps[0]

    def _refuse(self, handler, status):
        handler.send_response(status)
        handler.send_header("Content-Length", "0")
        handler.send_header("Connection", "close")
        handler.end_headers()

    def _serve(self, handler):
        path = handler.path
        headers = {k.lower(): v for k, v in handler.headers.items()}
        length = int(headers.get("content-length", "0") or "0")
        raw = handler.rfile.read(length) if length > 0 else b""
        record = {"path": path, "method": handler.command, "headers": headers, "raw": raw,
                  "body": None, "errors": [], "at": time.time(), "answered": None,
                  "answered_at": None}
        if path not in PATHS:
            record["errors"].append(f"no receiver at {path}")
        elif not headers.get("content-type", "").startswith("application/json"):
            record["errors"].append(f"Content-Type is {headers.get('content-type')!r}")
        try:
            record["body"] = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            record["errors"].append(f"the body is not UTF-8 JSON: {e}")
        if record["body"] is not None:
            if path == "/slack":
                record["errors"] += slack_errors(record["body"])
            elif path == "/pagerduty":
                record["errors"] += pagerduty_errors(record["body"], self.routing_key)
            elif path == "/webhook":
                record["errors"] += webhook_errors(record["body"], headers)

        step = self._next_step(path) if path in PATHS else answer(404)
        with self._lock:
            self._records.append(record)
            index = len(self._records) - 1
            self._lock.notify_all()

        if step.stall_seconds is not None:
            self._set_answer(index, "stall", None)
            self._closing.wait(step.stall_seconds)
            handler.close_connection = True
            return

        body = step.body
        if body is None:
            data = b""
        elif isinstance(body, (dict, list)):
            data = json.dumps(body).encode()
        else:
            data = str(body).encode()
        try:
            handler.send_response(step.status)
            if step.retry_after is not None:
                handler.send_header("Retry-After", str(step.retry_after))
            ctype = "application/json" if isinstance(body, (dict, list)) else "text/plain"
            handler.send_header("Content-Type", ctype)
            handler.send_header("Content-Length", str(len(data)))
            handler.send_header("Connection", "close")
            handler.end_headers()
            handler.wfile.write(data)
        except OSError:
            pass  # the client gave up; what was answered is still recorded
        handler.close_connection = True
        self._set_answer(index, step.status, time.time())

    def _set_answer(self, index, answered, at):
        with self._lock:
            if index < len(self._records):  # clear() may have run meanwhile
                self._records[index]["answered"] = answered
                self._records[index]["answered_at"] = at
            self._lock.notify_all()
            finished = dict(self._records[index]) if index < len(self._records) else None
        if finished is not None and self._on_request is not None:
            self._on_request(finished)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=0, help="loopback port (0: a free one)")
    parser.add_argument("--routing-key", help="the PagerDuty routing key events must carry")
    parser.add_argument("--script", action="append", default=[], metavar="PATH=STEP,...",
                        help="answers of PATH in order, e.g. /webhook=500,500,200, "
                             "/slack=429:2,200 or /pagerduty=stall:10")
    args = parser.parse_args()

    def show(record):
        shown = {k: v for k, v in record.items() if k != "raw"}
        print(json.dumps(shown), flush=True)

    receiver = AlertReceiver(port=args.port, routing_key=args.routing_key, on_request=show)
    for spec in args.script:
        path, _, steps = spec.partition("=")
        try:
            receiver.script(path, *[parse_step(s) for s in steps.split(",") if s])
        except ValueError as e:
            parser.error(f"--script {spec}: {e}")

    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    receiver.start()
    print(json.dumps({"ready": True, "host": HOST, "port": receiver.port}), flush=True)
    try:
        stopped.wait()
    finally:
        receiver.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""`mann serve` and `mann chat` with a language model: a fake OpenAI-compatible model server on
loopback (fake_llm.py) records every request and is told how to misbehave. Checked: prompts
carry the recalled memories and stay within the token budget; streamed text reaches the SSE
client and the terminal in order; every failure falls back to the memory-only reply and is
counted in /metrics; the circuit breaker opens and closes; model memory decisions are applied
only when valid; the API key never appears in logs or in `mann config show`.

Usage: llm_test.py --mann PATH/TO/mann
"""

import argparse
import http.client
import json
import os
import re
import select
import subprocess
import sys
import tempfile
import time

import harness
from fake_llm import FakeLlm

TIMEOUT = harness.TIMEOUT
KEY = "sk-fake-llm-key-7f3a9c"
BUDGET = 600
checks = harness.Checks()
check = checks.check


def estimate_tokens(text):
    """The client's estimate (docs/llm.md): 4 ASCII bytes a token, a token per other code point,
    4 tokens of framing per message."""
    ascii_bytes = sum(1 for c in text if ord(c) < 0x80)
    other = sum(1 for c in text if ord(c) >= 0x80)
    return (ascii_bytes + 3) // 4 + other


def prompt_tokens(messages):
    return sum(4 + estimate_tokens(m["content"]) for m in messages)


def llm_args(fake, *extra):
    return ["--set", f"llm.base_url={fake.base_url}", "--set", "llm.model=fake-model",
            "--set", "llm.timeout=2", "--set", "llm.connect_timeout=1",
            "--set", "llm.breaker_failures=3", "--set", "llm.breaker_open_duration=2",
            "--set", f"llm.max_prompt_tokens={BUDGET}", "--set", "log.level=debug", *extra]


def start(mann, root, fake, *extra, name="data"):
    return harness.Server(mann, root, os.path.join(root, name), *llm_args(fake, *extra),
                          env={"MANN_LLM_API_KEY": KEY})


def query(server, text, **fields):
    code, _, body = server.request("POST", "/query", {"input_text": text, **fields})
    return code, body


def metric(server, name, **labels):
    _, _, text = server.request("GET", "/metrics")
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    pattern = re.escape(name) + (r"\{" + re.escape(want) + r"\}" if labels else "") + r" (\S+)"
    m = re.search(r"^" + pattern + r"$", text, re.M)
    return float(m.group(1)) if m else 0.0


def model_requests(fake, decisions=None):
    out = []
    for r in fake.recorded():
        is_decision = (r["body"].get("response_format") or {}).get("type") == "json_object"
        if decisions is None or decisions == is_decision:
            out.append(r)
    return out


def read_sse(server, body):
    """POSTs /query with stream and returns (status, content type, [(event, data)])."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=TIMEOUT)
    try:
        conn.request("POST", "/query", body=json.dumps(body),
                     headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        text = resp.read().decode()
        events = []
        for block in text.split("\n\n"):
            if not block.strip():
                continue
            name, data = "message", []
            for line in block.split("\n"):
                if line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("data: "):
                    data.append(line[6:])
            events.append((name, json.loads("\n".join(data))))
        return resp.status, resp.getheader("Content-Type", ""), events
    finally:
        conn.close()


# ---- scenarios ---------------------------------------------------------------------------------

def test_grounded_prompts(mann, root, fake):
    server = start(mann, root, fake)
    try:
        code, _, _ = server.request("POST", "/memories",
                                    {"content": "I live in Hanoi", "importance_weight": 2})
        check(code == 200, "a memory is stored", str(code))
        fake.reset()
        code, body = query(server, "where do I live?")
        check(code == 200 and body.get("output") == "Hello from the model.",
              "the reply is the model's", str(body))
        sent = model_requests(fake, decisions=False)
        check(len(sent) == 1, "one request reached the model", str(len(sent)))
        if sent:
            request = sent[-1]
            messages = request["body"]["messages"]
            system = messages[0]["content"]
            check(messages[0]["role"] == "system" and "I live in Hanoi" in system,
                  "the system prompt carries the recalled memory", system)
            check("importance 2.0" in system and re.search(r"\d{4}-\d\d-\d\d", system),
                  "each memory comes with its importance and day", system)
            check(messages[-1] == {"role": "user", "content": "where do I live?"},
                  "the message comes last", str(messages[-1]))
            check(request["headers"].get("authorization") == f"Bearer {KEY}",
                  "the key goes in the Authorization header", str(request["headers"]))
            check(request["body"]["model"] == "fake-model" and not request["body"]["stream"],
                  "model named, a JSON answer asked for", str(request["body"]))

        # A Vietnamese message asks for a Vietnamese reply.
        fake.reset()
        query(server, "tôi sống ở đâu?")
        sent = model_requests(fake, decisions=False)
        check(sent and "Vietnamese" in sent[-1]["body"]["messages"][0]["content"],
              "a Vietnamese message asks for a Vietnamese reply",
              sent[-1]["body"]["messages"][0]["content"] if sent else "no request")

        # A long session: the oldest turns go, the memory and the message stay, within budget.
        fake.reset()
        session = None
        for i in range(8):
            fields = {"session_id": session} if session else {}
            long_question = f"question {i}: what do you know about " + "tea " * 150 + "?"
            _, body = query(server, long_question, **fields)
            session = body.get("session_id", session)
        sent = model_requests(fake, decisions=False)
        last = sent[-1]["body"]["messages"] if sent else []
        tokens = [prompt_tokens(r["body"]["messages"]) for r in sent]
        check(tokens and max(tokens) <= BUDGET, f"every prompt stays within {BUDGET} tokens",
              str(tokens))
        check(len(last) >= 2 and "question 7" in last[-1]["content"],
              "the newest message is sent whole", str(last[-1:]))
        check(not any("question 0" in m["content"] for m in last[1:-1]),
              "the oldest turns were left out", str([m["content"][:12] for m in last]))
        check(2 < len(last) < 12, "some recent turns are kept, fewer than the 10 available",
              str(len(last)))
    finally:
        server.stop()


def test_sse(mann, root, fake):
    server = start(mann, root, fake)
    try:
        server.request("POST", "/memories", {"content": "My name is Alice"})
        fake.reset()
        status, ctype, events = read_sse(server, {"input_text": "what is my name?",
                                                  "stream": True})
        check(status == 200 and ctype.startswith("text/event-stream"),
              "stream: true answers text/event-stream", f"{status} {ctype}")
        chunks = [data["text"] for name, data in events if name == "chunk"]
        check(chunks == ["Hello", " from", " the", " model", "."],
              "the chunks arrive in order", str(chunks))
        done = [data for name, data in events if name == "done"]
        check(len(done) == 1 and events[-1][0] == "done", "one final done event", str(events))
        if done:
            final = done[0]
            for field in ("output", "memory_info", "processing_time", "memory_utilization",
                          "session_id"):
                check(field in final, f"the done event carries {field}", str(final))
            check(final.get("output") == "".join(chunks), "output is the chunks joined",
                  str(final))
            check(any("Alice" in m["content"] for m in final.get("memory_info", [])),
                  "memory_info lists the recalled memory", str(final))
        sent = model_requests(fake, decisions=False)
        check(sent and sent[-1]["body"]["stream"] is True,
              "the model was asked for a stream", str(sent[-1]["body"] if sent else None))

        # Without stream: one JSON answer, as before.
        code, _, body = server.request("POST", "/query", {"input_text": "what is my name?"})
        check(code == 200 and isinstance(body, dict) and "output" in body,
              "without stream one JSON answer", str(body))
        code, _, body = server.request("POST", "/query", {"input_text": "x", "stream": "yes"})
        check(code == 422 and "stream" in json.dumps(body), "a non-boolean stream is a 422",
              f"{code} {body}")
    finally:
        server.stop()


def test_sse_as_made(mann, root, fake):
    """The events leave as the model makes the pieces, not when the turn is over; meanwhile the
    fast routes keep answering."""
    server = start(mann, root, fake, "--set", "llm.timeout=10")
    try:
        server.request("POST", "/memories", {"content": "My name is Alice"})
        fake.set_mode(mode="ok", piece_delay=0.4)  # 5 pieces: the stream takes 2 s or more
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=TIMEOUT)
        try:
            start_time = time.monotonic()
            conn.request("POST", "/query", body=json.dumps({"input_text": "what is my name?",
                                                            "stream": True}),
                         headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            check(resp.status == 200 and resp.getheader("Transfer-Encoding") == "chunked",
                  "the stream is sent in chunks", f"{resp.status} {resp.getheaders()}")
            first_chunk = None
            health_ms = None
            events = []
            for _ in range(1000):  # bounded: a few lines per event
                line = resp.readline().decode()
                if not line:
                    break
                if line.startswith("event: "):
                    events.append(line[7:].strip())
                    if events[-1] == "chunk" and first_chunk is None:
                        first_chunk = time.monotonic() - start_time
                        health_start = time.monotonic()
                        code, _, _ = server.request("GET", "/health")
                        health_ms = (time.monotonic() - health_start) * 1000
                        check(code == 200, "/health answers during the stream", str(code))
                    if events[-1] == "done":
                        resp.read()  # the chunked body's end
                        break
            total = time.monotonic() - start_time
        finally:
            conn.close()
        check(events.count("chunk") == 5 and events[-1:] == ["done"],
              "five chunk events, then done", str(events))
        check(total >= 1.8, "the fake model took its time", f"{total:.2f} s")
        check(first_chunk is not None and first_chunk < total - 1.0,
              "the first chunk arrives well before the stream ends",
              f"first {first_chunk} s, end {total:.2f} s")
        check(health_ms is not None and health_ms < 500,
              "/health is not held up by the streaming turn", f"{health_ms} ms")
    finally:
        server.stop()


FAILURES = [
    # (mode settings, failure kind, ask for a stream)
    ({"mode": "slow", "delay": 4}, "timeout", False),
    ({"mode": "status", "status": 429}, "rate_limited", False),
    ({"mode": "status", "status": 500}, "server", False),
    ({"mode": "status", "status": 503}, "server", False),
    ({"mode": "garbage"}, "bad_answer", False),
    ({"mode": "cut"}, "cut_stream", True),
]


def test_failures(mann, root, fake):
    server = start(mann, root, fake)
    try:
        server.request("POST", "/memories", {"content": "I live in Hanoi"})
        for mode, kind, stream in FAILURES:
            # A success first, so the breaker (3 failures) never opens in this scenario.
            fake.reset()
            query(server, "where do I live?")
            before = metric(server, "mann_llm_failures_total", kind=kind)
            fallbacks = metric(server, "mann_llm_fallbacks_total", reason=kind)
            fake.set_mode(**mode)
            if stream:
                status, _, events = read_sse(server, {"input_text": "where do I live?",
                                                      "stream": True})
                final = events[-1][1] if events else {}
                code, reply = status, final.get("output", "")
                chunks = "".join(d["text"] for n, d in events if n == "chunk")
                check(chunks == reply, f"{kind}: the chunks joined are the reply", repr(reply))
            else:
                code, body = query(server, "where do I live?")
                reply = body.get("output", "") if isinstance(body, dict) else ""
            check(code == 200 and "Hanoi" in reply,
                  f"{kind}: the turn falls back to the memory-only reply", f"{code} {reply!r}")
            check(not re.search(r"error|model|fail|timeout|unavailable", reply, re.I)
                  or reply.startswith("Hello"),
                  f"{kind}: nothing alarming is said", repr(reply))
            check(metric(server, "mann_llm_failures_total", kind=kind) == before + 1,
                  f"{kind}: counted in mann_llm_failures_total", kind)
            check(metric(server, "mann_llm_fallbacks_total", reason=kind) == fallbacks + 1,
                  f"{kind}: counted in mann_llm_fallbacks_total", kind)
        fake.reset()
        check(metric(server, "mann_llm_request_duration_seconds_count", purpose="reply") > 0,
              "request durations are observed", "")
        check(metric(server, "mann_llm_prompt_tokens_total") > 0 and
              metric(server, "mann_llm_completion_tokens_total") > 0,
              "token usage reported by the server is counted", "")
    finally:
        server.stop()

    # Connection refused: a model server address where nothing listens.
    dead = FakeLlm()
    dead.stop()
    server = harness.Server(
        mann, root, os.path.join(root, "refused"),
        "--set", f"llm.base_url={dead.base_url}", "--set", "llm.model=m",
        "--set", "llm.connect_timeout=1")
    try:
        server.request("POST", "/memories", {"content": "I live in Hanoi"})
        code, body = query(server, "where do I live?")
        check(code == 200 and "Hanoi" in body.get("output", ""),
              "connect: a refused connection falls back", str(body))
        check(metric(server, "mann_llm_failures_total", kind="connect") == 1,
              "connect: counted", "")
    finally:
        server.stop()


def test_breaker(mann, root, fake):
    server = start(mann, root, fake)
    try:
        server.request("POST", "/memories", {"content": "I live in Hanoi"})
        fake.reset()
        fake.set_mode(mode="status", status=500)
        for _ in range(3):
            query(server, "where do I live?")
        check(metric(server, "mann_llm_breaker_state") == 1, "three failures open the breaker",
              str(metric(server, "mann_llm_breaker_state")))
        sent = len(model_requests(fake))
        code, body = query(server, "where do I live?")
        check(code == 200 and "Hanoi" in body.get("output", ""),
              "an open breaker still answers from memory", str(body))
        check(len(model_requests(fake)) == sent, "an open breaker sends nothing to the model",
              f"{sent} -> {len(model_requests(fake))}")
        check(metric(server, "mann_llm_fallbacks_total", reason="breaker_open") >= 1,
              "breaker fallbacks are counted", "")

        time.sleep(2.3)  # llm.breaker_open_duration=2
        fake.set_mode(mode="ok")
        code, body = query(server, "where do I live?")
        check(body.get("output") == "Hello from the model.", "the probe's reply is the model's",
              str(body))
        check(len(model_requests(fake)) == sent + 1, "after the open duration one probe goes out",
              str(len(model_requests(fake))))
        check(metric(server, "mann_llm_breaker_state") == 0, "a good probe closes the breaker",
              str(metric(server, "mann_llm_breaker_state")))
    finally:
        server.stop()


def history(server, memory_id):
    _, _, body = server.request("GET", f"/memories/{memory_id}/history")
    return body.get("history", []) if isinstance(body, dict) else []


def all_memories(server):
    _, _, body = server.request("GET", "/memories?limit=100")
    return body.get("memories", []) if isinstance(body, dict) else []


def test_decisions(mann, root, fake):
    server = start(mann, root, fake, "--set", "llm.memory_decisions=true")
    try:
        _, _, added = server.request("POST", "/memories", {"content": "I live in Hanoi"})
        home = added.get("memory_id", "")

        # A valid UPDATE of a memory it was shown is applied, and history says "llm".
        fake.reset()
        fake.set_mode(mode="decisions", decisions=json.dumps({"decisions": [
            {"action": "UPDATE", "memory_id": home, "content": "I live in Da Nang",
             "reason": "moved"}]}))
        code, _ = query(server, "I moved from Hanoi to Da Nang")
        asked = model_requests(fake, decisions=True)
        check(asked and home in asked[-1]["body"]["messages"][0]["content"],
              "the decision request shows the similar memory's id",
              asked[-1]["body"]["messages"][0]["content"] if asked else "no request")
        _, _, entry = server.request("GET", f"/memories/{home}")
        check(code == 200 and entry.get("content") == "I live in Da Nang",
              "a valid model UPDATE is applied", str(entry))
        rows = history(server, home)
        check(rows and rows[-1].get("source") == "llm", "history records source llm", str(rows))

        # A valid ADD.
        fake.set_mode(mode="decisions", decisions=json.dumps({"decisions": [
            {"action": "ADD", "content": "The user has a dog named Rex"}]}))
        query(server, "I got a dog, his name is Rex")
        added = [m for m in all_memories(server) if m["content"] == "The user has a dog named Rex"]
        check(len(added) == 1 and history(server, added[0]["id"])[-1].get("source") == "llm",
              "a valid model ADD stores the model's fact with source llm", str(added))

        # Malformed JSON, and a decision naming a memory it was not shown: similarity rules.
        for label, decisions, message in [
                ("malformed", "Sure! Here you go: {decisions: [", "My cat is called Tom"),
                ("unknown id", json.dumps({"decisions": [
                    {"action": "DELETE", "memory_id": "01939000-0000-7000-8000-000000000000"}]}),
                 "My sister lives in Paris")]:
            invalid = metric(server, "mann_llm_failures_total", kind="invalid_decisions")
            fake.set_mode(mode="decisions", decisions=decisions)
            code, _ = query(server, message)
            stored = [m for m in all_memories(server) if m["content"] == message]
            check(code == 200 and len(stored) == 1,
                  f"{label}: the similarity rules store the statement", str(stored))
            if stored:
                rows = history(server, stored[0]["id"])
                check(rows and rows[0].get("source") == "similarity",
                      f"{label}: history records source similarity", str(rows))
            check(metric(server, "mann_llm_failures_total", kind="invalid_decisions") ==
                  invalid + 1, f"{label}: counted as invalid_decisions", "")
        _, _, entry = server.request("GET", f"/memories/{home}")
        check(entry.get("content") == "I live in Da Nang",
              "an invalid DELETE leaves the memory alone", str(entry))
    finally:
        server.stop()


def test_terminal(mann, root, fake):
    fake.reset()
    fake.set_mode(mode="ok", piece_delay=0.4)
    env = harness.hermetic_env(root, MANN_DATA_DIR=os.path.join(root, "chat-data"),
                               MANN_LLM_BASE_URL=fake.base_url, MANN_LLM_MODEL="fake-model",
                               MANN_LLM_API_KEY=KEY, MANN_ENCODER="hashed",
                               MANN_LOG_LEVEL="debug")
    # stderr (debug logs) goes to a file, so a full pipe can never block the chat.
    err_path = os.path.join(root, "chat-stderr.log")
    err_file = open(err_path, "wb")
    proc = subprocess.Popen([mann, "chat"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=err_file, env=env)
    try:
        proc.stdin.write(b"what is the weather like?\n")
        proc.stdin.flush()
        seen, arrivals = b"", {}
        deadline = time.monotonic() + TIMEOUT
        while b"model." not in seen and time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], 0.1)
            if ready:
                piece = os.read(proc.stdout.fileno(), 4096)
                if not piece:
                    break
                seen += piece
                for word in (b"Hello", b"model."):
                    if word in seen and word not in arrivals:
                        arrivals[word] = time.monotonic()
        proc.stdin.close()  # EOF ends the chat
        while time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], 0.2)
            piece = os.read(proc.stdout.fileno(), 4096) if ready else b""
            if ready and not piece:
                break
            seen += piece
        proc.wait(timeout=TIMEOUT)
        err_file.close()
        with open(err_path, "rb") as f:
            err = f.read()
        text = seen.decode("utf-8", "replace")
        check("Hello from the model." in text, "the terminal shows the reply in order", text)
        if len(arrivals) == 2:
            check(arrivals[b"model."] - arrivals[b"Hello"] >= 1.0,
                  "the terminal prints the reply as it streams, not at the end",
                  f"{arrivals[b'model.'] - arrivals[b'Hello']:.2f}s between first and last")
        else:
            check(False, "the terminal prints the streamed words", text)
        check(KEY not in text and KEY not in err.decode("utf-8", "replace"),
              "the key is not printed by mann chat", "")
        sent = model_requests(fake, decisions=False)
        check(sent and sent[-1]["body"]["stream"] is True, "mann chat asks for a stream", "")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=TIMEOUT)
        err_file.close()

    # `mann config show` redacts the key.
    shown = subprocess.run([mann, "config", "show"], env=env, capture_output=True, text=True,
                           timeout=TIMEOUT)
    check(shown.returncode == 0 and "llm.api_key" in shown.stdout, "config show lists llm keys",
          shown.stdout + shown.stderr)
    check(KEY not in shown.stdout + shown.stderr and "<redacted>" in shown.stdout,
          "config show redacts llm.api_key", shown.stdout)


def test_key_not_logged(root):
    logs = [n for n in os.listdir(root) if n.endswith(".log")]
    check(logs, "servers wrote logs", str(os.listdir(root)))
    for name in logs:
        with open(os.path.join(root, name), errors="replace") as f:
            text = f.read()
        check(KEY not in text, f"{name}: the key is not in the log", "")
    check(any("llm" in open(os.path.join(root, n), errors="replace").read() for n in logs),
          "the logs do speak of the model (so the check above looked at real lines)", "")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--mann", required=True)
    mann = os.path.abspath(parser.parse_args().mann)
    root = tempfile.mkdtemp(prefix="mann-llm-")
    fake = FakeLlm()
    try:
        for name, test in [("grounded prompts", test_grounded_prompts), ("sse", test_sse),
                           ("sse as made", test_sse_as_made), ("failures", test_failures),
                           ("breaker", test_breaker),
                           ("decisions", test_decisions), ("terminal", test_terminal)]:
            fake.reset()
            checks.scenario(name, test, mann, root, fake)
        checks.scenario("key not logged", test_key_not_logged, root)
    finally:
        fake.stop()
        harness.clean_up(checks, root)
    return checks.summary()


if __name__ == "__main__":
    sys.exit(main())

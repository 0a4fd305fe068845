#!/usr/bin/env python3
"""The dense encoders end to end, against the real binary: recall by meaning with the default
sentence encoder (English, and Vietnamese through the gloss), the fallback when the model is
missing or damaged (one warning, `stats --json` says why, `reindex` refuses), the stored vectors
surviving a fallback, `mann reindex`, and the remote encoder against a fake OpenAI-compatible
embeddings server on 127.0.0.1 (the protocol, the bearer key that must never be printed, and the
fallback when the server fails).

Usage: encoder_test.py --mann PATH/TO/mann
Exit status 0 when every check passed; otherwise the failed checks are listed.
"""

import argparse
import http.server
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import zlib

import harness

TIMEOUT = harness.TIMEOUT

checks = harness.Checks()
check = checks.check

# Facts, each with a question that shares no word with it: only an encoder that reads meaning
# can rank the fact first (the lexical half of the search has nothing to match).
FACTS = [
    ("I live in Hanoi, in a small flat near West Lake.", "Which city is my home?"),
    ("I work as a nurse at Bach Mai hospital.", "What is my job?"),
    ("My dog is called Bim and he loves chasing cats.", "Do I have a pet?"),
    ("My favourite food is grilled pork with rice noodles.", "What do I like to eat?"),
]
DISTRACTORS = ["I play the guitar every weekend.", "My sister Linh studies physics in Hue."]
VIETNAMESE_FACTS = [
    ("Tôi sống ở Đà Nẵng", "Nhà mình nằm tại thành phố nào?"),  # "Which city is my home in?"
    ("Tôi làm giáo viên ở trường tiểu học", "Công việc của bạn là gì?"),  # "What is your job?"
    ("Con mèo của tôi tên là Mướp", "Bạn nuôi thú cưng gì?"),  # "What pet do you keep?"
]
VIETNAMESE_DISTRACTORS = ["Tôi thích ăn phở bò", "Em gái tôi học đại học ở Huế"]
API_KEY = "sk-test-secret-123"


def words(text):
    return set(re.findall(r"\w+", text.lower()))


for _fact, _question in FACTS + VIETNAMESE_FACTS:
    # The premise of the recall checks; a fact edited into sharing a word would prove nothing.
    assert not words(_fact) & words(_question), (_fact, _question)


class Mann:
    """Runs the binary in a hermetic environment with one data directory and fixed --set flags."""

    def __init__(self, binary, root, data, sets=(), env=None):
        self.binary = binary
        self.env = harness.hermetic_env(root, **(env or {}))
        self.data_dir = os.path.join(root, data)
        self.sets = [arg for s in sets for arg in ("--set", s)]
        self.stdouts, self.stderrs = [], []  # of every run, for the leak checks

    def run(self, *args, sets=(), env=None):
        argv = [self.binary, "--data-dir", self.data_dir] + self.sets
        argv += [arg for s in sets for arg in ("--set", s)] + list(args)
        proc = subprocess.run(argv, env=dict(self.env, **(env or {})), capture_output=True,
                              timeout=TIMEOUT)
        out, err = proc.stdout.decode(), proc.stderr.decode()
        self.stdouts.append(out)
        self.stderrs.append(err)
        return proc.returncode, out, err

    def json(self, *args, sets=(), env=None):
        code, out, err = self.run(*args, "--json", sets=sets, env=env)
        return code, harness.json_document(checks, args, code, out, err), err

    def add(self, text, *extra, **kw):
        code, doc, err = self.json("memory", "add", text, *extra, **kw)
        check(code == 0 and doc and doc["action"] == "ADD", f"memory add {text!r}",
              f"code {code} {doc} {err!r}")
        return doc["id"] if doc else None

    def top(self, query, *extra, **kw):
        """The content of the first hit of a search, and the whole answer."""
        code, doc, err = self.json("memory", "search", query, *extra, **kw)
        hits = doc["hits"] if code == 0 and doc else []
        return (hits[0]["memory"]["content"] if hits else None), doc, err

    def encoder(self, **kw):
        code, doc, err = self.json("stats", **kw)
        return (doc or {}).get("encoder", {}), err


def check_ranks_first(m, pairs, label, *extra, **kw):
    for fact, question in pairs:
        top, doc, err = m.top(question, *extra, **kw)
        check(top == fact, f"{label}: {question!r} finds {fact!r} first",
              f"first hit {top!r}; {json.dumps(doc, ensure_ascii=False)[:600]} {err!r}")


def check_one_warning(err, what, *needles):
    """stderr is exactly one line, a warning that the encoder is unavailable naming `needles`."""
    lines = err.splitlines()
    check(len(lines) == 1 and "warning" in lines[0] and "unavailable" in lines[0]
          and all(n in lines[0] for n in needles),
          f"{what}: stderr is one warning line saying the encoder is unavailable, naming "
          f"{', '.join(needles)}", repr(err))


def test_meaning(binary, root):
    m = Mann(binary, root, "meaning")
    for fact, _ in FACTS:
        m.add(fact)
    for text in DISTRACTORS:
        m.add(text)
    check_ranks_first(m, FACTS, "use-lite")

    enc, err = m.encoder()
    check(enc.get("configured") == "use-lite" and enc.get("active") == "use-lite"
          and enc.get("fallback") is False and "fallback_reason" not in enc
          and "use-lite" in enc.get("description", ""),
          "stats --json: use-lite configured and active, no fallback", str(enc))
    check(all(e == "" for e in m.stderrs), "a working encoder logs nothing on stderr",
          repr([e for e in m.stderrs if e][:2]))

    # Vietnamese goes to the sentence encoder through the gloss, in its own namespace so the
    # English home fact does not compete with the Vietnamese one.
    for text in [fact for fact, _ in VIETNAMESE_FACTS] + VIETNAMESE_DISTRACTORS:
        m.add(text, "-u", "vi")
    check_ranks_first(m, VIETNAMESE_FACTS, "use-lite via gloss", "-u", "vi")


def test_fallback_missing(binary, root):
    empty = os.path.join(root, "no-model")
    os.makedirs(empty)
    m = Mann(binary, root, "missing", sets=[f"encoder.model_dir={empty}"])

    code, added, err = m.json("memory", "add", "I live in Hanoi, in a small flat near West Lake.")
    check(code == 0 and added and added["action"] == "ADD", "fallback: memory add still works",
          f"code {code} {added} {err!r}")
    check_one_warning(err, "fallback: memory add", empty)
    m.add("My dog is called Bim.")
    top, _, err = m.top("West Lake flat")
    check(top == "I live in Hanoi, in a small flat near West Lake.",
          "fallback: memory search finds by words", str(top))
    check_one_warning(err, "fallback: memory search", empty)

    enc, err = m.encoder()
    reason = enc.get("fallback_reason", "")
    check(enc.get("configured") == "use-lite" and enc.get("active") == "hashed"
          and enc.get("fallback") is True and empty in reason and "missing" in reason,
          "fallback: stats --json shows hashed active, fallback true and the missing directory",
          str(enc))
    check_one_warning(err, "fallback: stats", empty)

    for args in (["reindex"], ["reindex", "--json"]):
        code, out, err = m.run(*args)
        errors = [line for line in err.splitlines() if line.startswith("error:")]
        check(code == 1 and len(errors) == 1 and empty in errors[0]
              and "nothing was re-embedded" in errors[0],
              f"fallback: mann {' '.join(args)} exits 1 with an error naming the model directory",
              f"code {code} stdout {out!r} stderr {err!r}")

    # The environment variable selects the directory as well as --set.
    env_m = Mann(binary, root, "missing-env", env={"MANN_MODEL_DIR": empty})
    enc, err = env_m.encoder()
    check(enc.get("fallback") is True and empty in enc.get("fallback_reason", ""),
          "MANN_MODEL_DIR pointing at an empty directory falls back too", str(enc))


def test_fallback_damaged(binary, root, model_dir):
    damaged = os.path.join(root, "damaged-model")
    shutil.copytree(model_dir, damaged)
    shards = sorted(f for f in os.listdir(damaged) if "shard" in f)
    if not shards:
        checks.fail(f"damaged: no shard files in {model_dir}")
        return
    victim = shards[len(shards) // 2]
    path = os.path.join(damaged, victim)
    os.truncate(path, os.path.getsize(path) // 4)

    m = Mann(binary, root, "damaged", sets=[f"encoder.model_dir={damaged}"])
    code, _, err = m.json("memory", "add", "I work as a nurse at Bach Mai hospital.")
    check(code == 0, "damaged model: memory add still works", err)
    check_one_warning(err, "damaged model: memory add", damaged)
    top, _, _ = m.top("nurse hospital")
    check(top == "I work as a nurse at Bach Mai hospital.",
          "damaged model: search finds by words", str(top))
    enc, _ = m.encoder()
    reason = enc.get("fallback_reason", "")
    check(enc.get("active") == "hashed" and enc.get("fallback") is True
          and victim in reason and "checksum" in reason,
          f"damaged model: the reason names {victim} and its checksum", str(enc))
    code, _, err = m.run("reindex")
    check(code == 1 and "error:" in err, "damaged model: mann reindex exits 1", err)


def test_fallback_corrupted_same_size(binary, root, model_dir):
    """Bytes changed inside a shard, its size intact: only the recorded checksum can tell."""
    corrupted = os.path.join(root, "corrupted-model")
    shutil.copytree(model_dir, corrupted)
    victim = "group1-shard2of7"
    path = os.path.join(corrupted, victim)
    with open(path, "r+b") as f:
        f.seek(1000)
        original = f.read(4)
        f.seek(1000)
        f.write(bytes(b ^ 0xFF for b in original))
    m = Mann(binary, root, "corrupted", sets=[f"encoder.model_dir={corrupted}"])
    code, _, err = m.json("memory", "add", "I keep bees on the roof.")
    check(code == 0, "corrupted model: memory add still works", err)
    check_one_warning(err, "corrupted model: memory add", corrupted)
    enc, _ = m.encoder()
    reason = enc.get("fallback_reason", "")
    check(enc.get("active") == "hashed" and victim in reason and "checksum" in reason,
          f"corrupted model: the reason names {victim} and its checksum", str(enc))


def test_vectors_survive_fallback(binary, root, model_dir):
    empty = os.path.join(root, "no-model-2")
    os.makedirs(empty)
    m = Mann(binary, root, "survive")
    for fact, _ in FACTS:
        m.add(fact)

    # A search in the fallback re-makes the vectors for the stand-in, and writes bookkeeping
    # (usage counts); it must not overwrite the stored vectors of the configured encoder.
    top, _, err = m.top("West Lake", sets=[f"encoder.model_dir={empty}"])
    check(top == FACTS[0][0], "fallback over sentence vectors: search by words works", str(top))
    check_one_warning(err, "fallback over sentence vectors: search", empty)
    code, doc, err = m.json("reindex", sets=[f"encoder.model_dir={model_dir}"])
    check(code == 0 and doc and doc["reembedded"] == 0 and doc["memories"] == len(FACTS),
          "with the model back nothing has to be re-embedded", f"code {code} {doc} {err!r}")
    check_ranks_first(m, FACTS, "after a fallback")

    # A memory written during a fallback carries the stand-in's vector: the next opening with the
    # model re-makes that one only.
    m.add("I play the guitar every weekend.", sets=[f"encoder.model_dir={empty}"])
    code, doc, err = m.json("reindex")
    check(code == 0 and doc and doc["reembedded"] == 1 and doc["memories"] == len(FACTS) + 1,
          "a memory added in a fallback is re-embedded when the model is back",
          f"code {code} {doc} {err!r}")


def test_reindex(binary, root):
    m = Mann(binary, root, "reindex")
    for fact, _ in FACTS:
        m.add(fact, sets=["encoder.kind=hashed"])
    for fact, _ in VIETNAMESE_FACTS:  # apart, as the two home facts answer the same question
        m.add(fact, "-u", "vi", sets=["encoder.kind=hashed"])
    texts = FACTS + VIETNAMESE_FACTS
    # Japanese goes to the hashed encoder under use-lite too: its vector is already right.
    m.add("東京の小さなアパートに住んでいます。", sets=["encoder.kind=hashed"])
    total = len(texts) + 1

    enc, _ = m.encoder(sets=["encoder.kind=hashed"])
    check(enc.get("configured") == "hashed" and enc.get("active") == "hashed"
          and enc.get("fallback") is False, "encoder.kind=hashed is active without a fallback",
          str(enc))

    runs = [((), len(texts), "the first opening with use-lite re-embeds the English and "
             "Vietnamese memories"),
            ((), 0, "a second reindex has nothing to do"),
            (("--all",), total, "reindex --all re-embeds every memory")]
    for extra, expected, what in runs:
        code, doc, err = m.json("reindex", *extra)
        check(code == 0 and doc and doc["reembedded"] == expected and doc["memories"] == total
              and doc["encoder"]["active"] == "use-lite",
              f"{what} ({expected} of {total})", f"code {code} {doc} {err!r}")
        check("\r" not in err and "re-embedding" not in err,
              f"reindex {' '.join(extra)}: no progress bar on a stderr that is not a terminal",
              repr(err))
    code, out, err = m.run("reindex")
    check(code == 0 and re.search(rf"re-embedded 0 of {total} memories", out)
          and "use-lite" in out, "reindex prints what it did as text", f"{out!r} {err!r}")
    check_ranks_first(m, FACTS, "after reindex")
    check_ranks_first(m, VIETNAMESE_FACTS, "after reindex", "-u", "vi")


class FakeEmbeddings:
    """An OpenAI-compatible embeddings server on 127.0.0.1. Its vectors are a bag of words with
    a few synonym groups folded into one dimension each, so a question that shares no word with
    a fact can still be near it, the way a real model's would be. Every request is recorded."""

    DIMENSION = 64
    GROUPS = [
        {"home", "live", "city", "flat", "house", "hanoi"},
        {"job", "work", "nurse", "hospital"},
        {"pet", "dog", "cat", "cats"},
        {"eat", "food", "favourite", "pork", "noodles"},
    ]
    STOP = {"i", "a", "in", "is", "my", "the", "which", "what", "do", "to", "and", "at", "he",
            "as", "near", "with", "have", "like", "called", "every"}

    def __init__(self):
        self.requests = []
        self.mode = "ok"  # or "error": HTTP 500 whose body echoes the Authorization header
        self.lock = threading.Lock()
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, and 100-continue for large bodies
            timeout = TIMEOUT

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = None
                with fake.lock:
                    fake.requests.append({"path": self.path, "headers": dict(self.headers),
                                          "body": body})
                    mode = fake.mode
                if mode == "error":
                    auth = self.headers.get("Authorization", "")
                    self.reply(500, {"error": {"message": f"backend crashed serving {auth}"}})
                elif (self.path != "/v1/embeddings" or not isinstance(body, dict)
                      or not isinstance(body.get("input"), list)):
                    self.reply(400, {"error": {"message": "expected POST /v1/embeddings"}})
                else:
                    data = [{"object": "embedding", "index": i, "embedding": fake.vector(text)}
                            for i, text in enumerate(body["input"])]
                    self.reply(200, {"object": "list", "data": data, "model": body.get("model"),
                                     "usage": {"prompt_tokens": 0, "total_tokens": 0}})

            def reply(self, status, doc):
                payload = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass  # the test's output is its checks

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def vector(self, text):
        v = [0.0] * self.DIMENSION
        tokens = re.findall(r"\w+", str(text).lower())
        for word in tokens:
            if word in self.STOP:
                continue
            group = next((i for i, g in enumerate(self.GROUPS) if word in g), None)
            if group is None:
                group = len(self.GROUPS) + zlib.crc32(word.encode()) % (
                    self.DIMENSION - len(self.GROUPS))
            v[group] += 1.0
        if not any(v):  # only stop words: still a unit vector
            v[self.DIMENSION - 1] = 1.0
        norm = math.sqrt(sum(x * x for x in v))
        return [x / norm for x in v]

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(TIMEOUT)


def test_remote(binary, root):
    server = FakeEmbeddings()
    try:
        remote_scenario(binary, root, server)
    finally:
        server.stop()


def remote_scenario(binary, root, server):
    url = f"http://127.0.0.1:{server.port}/v1"
    m = Mann(binary, root, "remote",
             sets=["encoder.kind=remote", f"encoder.url={url}", "encoder.model=test-embed",
                   "encoder.timeout=5"],
             env={"MANN_ENCODER_API_KEY": API_KEY})

    for fact, _ in FACTS:
        m.add(fact)
    check_ranks_first(m, FACTS, "remote")
    enc, _ = m.encoder()
    check(enc.get("configured") == "remote" and enc.get("active") == "remote"
          and enc.get("fallback") is False and "test-embed" in enc.get("description", ""),
          "stats --json: remote configured and active, no fallback", str(enc))
    check(all(e == "" for e in m.stderrs), "a working remote encoder logs nothing on stderr",
          repr([e for e in m.stderrs if e][:2]))

    # What the server saw: the real protocol, the key, the model and the texts.
    with server.lock:
        seen = list(server.requests)
    check(len(seen) > 0 and all(r["path"] == "/v1/embeddings" for r in seen),
          "every request is POST /v1/embeddings", str([r["path"] for r in seen][:5]))
    check(all(r["headers"].get("Authorization") == f"Bearer {API_KEY}" for r in seen),
          "every request carries Authorization: Bearer <key>",
          str([r["headers"].get("Authorization") for r in seen][:3]))
    check(all("application/json" in r["headers"].get("Content-Type", "") for r in seen),
          "requests are sent as application/json",
          str([r["headers"].get("Content-Type") for r in seen][:3]))
    check(all(isinstance(r["body"], dict) and r["body"].get("model") == "test-embed"
              and isinstance(r["body"].get("input"), list) for r in seen),
          "every body is {model: test-embed, input: [...]}", str([r["body"] for r in seen][:3]))
    sent = {t for r in seen if isinstance(r["body"], dict)
            for t in r["body"].get("input") or []}
    for fact, question in FACTS:
        check(fact in sent and question in sent, f"the server was sent {fact!r} and {question!r}",
              str(sorted(sent))[:400])

    # Proxies are never used for a loopback endpoint, whatever the environment says.
    dead_proxy = "http://127.0.0.1:9"
    enc, err = m.encoder(env={"http_proxy": dead_proxy, "HTTP_PROXY": dead_proxy,
                              "ALL_PROXY": dead_proxy, "all_proxy": dead_proxy})
    check(enc.get("active") == "remote", "a loopback endpoint bypasses the configured proxy",
          f"{enc} {err!r}")

    # The key is never shown by config show.
    code, out, _ = m.run("config", "show")
    key_line = next((line for line in out.splitlines() if "encoder.api_key" in line), "")
    check(code == 0 and API_KEY not in out and "<redacted>" in key_line
          and "MANN_ENCODER_API_KEY" in key_line,
          "config show redacts encoder.api_key and names its origin", key_line or out[:400])
    code, doc, _ = m.json("config", "show")
    check(doc is not None and API_KEY not in json.dumps(doc)
          and doc.get("encoder.api_key", {}).get("value") == "<redacted>",
          "config show --json redacts encoder.api_key", str(doc and doc.get("encoder.api_key")))

    # The server fails (and echoes the key in its error): fall back to the sentence encoder.
    with server.lock:
        server.mode = "error"
    enc, err = m.encoder()
    reason = enc.get("fallback_reason", "")
    check(enc.get("configured") == "remote" and enc.get("active") == "use-lite"
          and enc.get("fallback") is True and f"{url}/embeddings" in reason and "500" in reason,
          "server answering 500: stats --json shows use-lite active, the URL and the status",
          str(enc))
    check_one_warning(err, "server answering 500", url)
    check_ranks_first(m, FACTS, "remote down, use-lite")
    m.add("My sister Linh studies physics in Hue.")

    # The server is back: only the memory written meanwhile is re-made by the remote encoder.
    with server.lock:
        server.mode = "ok"
    code, doc, err = m.json("reindex")
    check(code == 0 and doc and doc["reembedded"] == 1 and doc["memories"] == len(FACTS) + 1
          and doc["encoder"]["active"] == "remote",
          "server back: reindex re-embeds only the memory added in the fallback",
          f"code {code} {doc} {err!r}")

    # The server is gone altogether.
    server.stop()
    top, _, err = m.top(FACTS[1][1])
    check(top == FACTS[1][0], "server stopped: search by meaning still works (use-lite)",
          str(top))
    check_one_warning(err, "server stopped", url)

    check(all(API_KEY not in e for e in m.stderrs),
          "the API key never appears on stderr", repr([e for e in m.stderrs if API_KEY in e][:2]))
    check(all(API_KEY not in o for o in m.stdouts),
          "the API key never appears on stdout", repr([o for o in m.stdouts if API_KEY in o][:2]))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--mann", required=True)
    binary = os.path.abspath(parser.parse_args().mann)
    # Where the binary finds its model by default (encoder.model_dir empty): the first of these
    # holding a model.json.
    base = os.path.dirname(os.path.dirname(binary))
    candidates = [os.path.join(base, "models", "use-lite"),
                  os.path.join(base, "share", "mann", "models", "use-lite")]
    model_dir = next((d for d in candidates if os.path.exists(os.path.join(d, "model.json"))),
                     candidates[0])
    root = tempfile.mkdtemp(prefix="mann-encoder-")
    try:
        if not os.path.exists(os.path.join(model_dir, "model.json")):
            checks.fail(f"the sentence encoder's model is not in {model_dir}: run "
                        "scripts/fetch-model.sh")
        else:
            tests = [
                ("meaning", lambda: test_meaning(binary, root)),
                ("fallback-missing", lambda: test_fallback_missing(binary, root)),
                ("fallback-damaged", lambda: test_fallback_damaged(binary, root, model_dir)),
                ("fallback-corrupted",
                 lambda: test_fallback_corrupted_same_size(binary, root, model_dir)),
                ("survive", lambda: test_vectors_survive_fallback(binary, root, model_dir)),
                ("reindex", lambda: test_reindex(binary, root)),
                ("remote", lambda: test_remote(binary, root)),
            ]
            checks.run_all(tests)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return checks.summary()


if __name__ == "__main__":
    sys.exit(main())

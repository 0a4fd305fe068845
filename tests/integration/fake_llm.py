"""A fake OpenAI-compatible chat model on loopback, for the integration tests of `mann`'s
language-model client. It speaks the real protocol: POST /v1/chat/completions answers one JSON
document, or with "stream": true server-sent events (`data: {chunk}` lines, a usage chunk when
stream_options.include_usage asks for it, then `data: [DONE]`).

It records every request it receives, and obeys a mode set by the test:

  GET  /_requests            the recorded requests: [{"path", "headers", "body"}]
  POST /_mode {"mode": ...}  how to answer from now on:
       "ok"                  reply with `reply` (default: a sentence naming the memories it saw)
       "slow"                wait `delay` seconds before answering
                             (any mode: `piece_delay` seconds between streamed pieces)
       "status"              answer HTTP `status` (429, 500, 503, ...) with an error body
       "cut"                 stream two chunks, then close the connection without [DONE]
       "garbage"             answer 200 with a body that is not the protocol
       "decisions"           for decision requests (response_format json_object), answer
                             `decisions` (any JSON text, valid or not) as the content
  POST /_reset               forget the recorded requests and go back to "ok"

Decision requests get `decisions` only in mode "decisions"; otherwise an empty list.

Usage: FakeLlm() starts it on a free port in a thread; .stop() shuts it down.
"""

import http.server
import json
import threading
import time

DEFAULT_REPLY_PIECES = ["Hello", " from", " the", " model", "."]


class FakeLlm:
    def __init__(self):
        self.lock = threading.Lock()
        self.requests = []
        self.mode = {"mode": "ok"}
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)

    def set_mode(self, **mode):
        with self.lock:
            self.mode = mode

    def reset(self):
        with self.lock:
            self.requests = []
            self.mode = {"mode": "ok"}

    def recorded(self):
        with self.lock:
            return list(self.requests)

    def _handler(self):
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet: the test prints what matters
                pass

            def _json(self, status, doc):
                data = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                if self.path == "/_requests":
                    return self._json(200, fake.recorded())
                self._json(404, {"error": {"message": "not found"}})

            def do_POST(self):
                length = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(length) if length else b""
                if self.path == "/_mode":
                    fake.set_mode(**json.loads(raw or b"{}"))
                    return self._json(200, {"ok": True})
                if self.path == "/_reset":
                    fake.reset()
                    return self._json(200, {"ok": True})
                if self.path != "/v1/chat/completions":
                    return self._json(404, {"error": {"message": f"no route {self.path}"}})
                try:
                    body = json.loads(raw)
                except ValueError:
                    return self._json(400, {"error": {"message": "body is not JSON"}})
                with fake.lock:
                    fake.requests.append({"path": self.path,
                                          "headers": {k.lower(): v for k, v in
                                                      self.headers.items()},
                                          "body": body})
                    mode = dict(fake.mode)
                self._answer(body, mode)

            def _answer(self, body, mode):
                kind = mode.get("mode", "ok")
                is_decision = (body.get("response_format") or {}).get("type") == "json_object"
                if kind == "slow":
                    time.sleep(float(mode.get("delay", 5)))
                if kind == "status":
                    status = int(mode.get("status", 500))
                    return self._json(status, {"error": {"message": f"fake failure {status}"}})
                if kind == "garbage":
                    data = b"<html>this is not an answer</html>"
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                if is_decision:
                    content = mode.get("decisions", '{"decisions": []}') \
                        if kind == "decisions" else '{"decisions": []}'
                    pieces = [content]
                elif "reply" in mode:
                    pieces = list(mode["reply"])
                else:
                    pieces = list(DEFAULT_REPLY_PIECES)
                text = "".join(pieces)
                prompt_tokens = sum(len(m.get("content", "")) for m in body.get("messages", []))
                usage = {"prompt_tokens": prompt_tokens, "completion_tokens": len(pieces),
                         "total_tokens": prompt_tokens + len(pieces)}
                if not body.get("stream"):
                    return self._json(200, {
                        "id": "chatcmpl-fake", "object": "chat.completion",
                        "model": body.get("model"),
                        "choices": [{"index": 0, "finish_reason": "stop",
                                     "message": {"role": "assistant", "content": text}}],
                        "usage": usage})
                self._stream(body, pieces, usage, mode)

            def _stream(self, body, pieces, usage, mode):
                cut = mode.get("mode") == "cut"
                # No Content-Length: the body ends when the connection closes, as many model
                # servers send a stream.
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True

                def send(text):
                    self.wfile.write(text.encode())
                    self.wfile.flush()

                def chunk(delta, finish=None):
                    return {"id": "chatcmpl-fake", "object": "chat.completion.chunk",
                            "choices": [{"index": 0, "delta": delta,
                                         "finish_reason": finish}]}

                send(": keep-alive comment\r\n\r\n")
                send("data: " + json.dumps(chunk({"role": "assistant"})) + "\r\n\r\n")
                for i, piece in enumerate(pieces):
                    if cut and i == 2:
                        return  # the connection closes mid-answer, no [DONE]
                    event = "data: " + json.dumps(chunk({"content": piece})) + "\n\n"
                    # Split inside the line, so the client must join reads.
                    half = len(event) // 2
                    send(event[:half])
                    time.sleep(0.02)
                    send(event[half:])
                    time.sleep(float(mode.get("piece_delay", 0)))
                send("data: " + json.dumps(chunk({}, "stop")) + "\n\n")
                if (body.get("stream_options") or {}).get("include_usage"):
                    send("data: " + json.dumps({"id": "chatcmpl-fake", "choices": [],
                                                "usage": usage}) + "\n\n")
                send("data: [DONE]\n\n")

        return Handler

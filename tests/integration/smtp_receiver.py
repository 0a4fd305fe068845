#!/usr/bin/env python3
"""A mail server for tests: aiosmtpd on a loopback port that REQUIRES TLS, with a throwaway
certificate, writing every accepted message as one JSON line to a file.

By default it speaks plain SMTP and refuses every command but EHLO, NOOP, QUIT and STARTTLS
until the client has upgraded (require_starttls), so a client that would fall back to clear
text cannot deliver. --implicit-tls serves TLS from the first byte instead (smtps://).
--user/--password require AUTH (PLAIN or LOGIN, over TLS only).

The certificate is self-signed for localhost and 127.0.0.1, made with `openssl req -x509` into
--cert-dir (a new temporary directory by default); clients verify the server with it as their
CA file (SmtpOptions::ca_file).

Once listening it prints one JSON line to standard output and flushes it:
  {"ready": true, "host": "127.0.0.1", "port": 40123, "ca_file": "/tmp/.../cert.pem"}
Each accepted message is appended to --messages as:
  {"mail_from": "...", "rcpt_tos": ["..."], "data": "<the message, CRLF line ends>",
   "tls": true, "auth_user": "mann" or null, "received_at": 1764720000.123}
It runs until SIGTERM or SIGINT, then exits 0.

Needs Debian's python3-aiosmtpd (apt-get install python3-aiosmtpd), importable by the
interpreter that runs this script: on a machine where `python3` is another installation, run
it as /usr/bin/python3 tests/integration/smtp_receiver.py.

Usage: smtp_receiver.py --messages FILE [--port N] [--implicit-tls] [--user U --password P]
                        [--cert-dir DIR]
"""

import argparse
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

try:
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword
except ImportError:
    sys.exit("smtp_receiver.py: aiosmtpd is missing; install python3-aiosmtpd and run this "
             "script with the interpreter it belongs to (/usr/bin/python3)")

HOST = "127.0.0.1"


def make_certificate(directory):
    """A self-signed certificate for localhost and 127.0.0.1; returns (cert, key) paths."""
    cert = os.path.join(directory, "cert.pem")
    key = os.path.join(directory, "key.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out",
         cert, "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return cert, key


def free_port():
    """A port that was free a moment ago. aiosmtpd's Controller cannot listen on port 0: it
    checks readiness by connecting to the port it was given."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class Recorder:
    """The aiosmtpd handler: appends each accepted message to a JSON Lines file."""

    def __init__(self, path, implicit_tls):
        self.path = path
        self.implicit_tls = implicit_tls  # then every session is TLS, and session.ssl is unset
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        data = envelope.original_content or envelope.content
        if isinstance(data, bytes):
            data = data.decode("utf-8", errors="replace")
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "data": data,
            "tls": self.implicit_tls or bool(session.ssl),
            "auth_user": _auth_user(session),
            "received_at": time.time(),
        }
        with self.lock, open(self.path, "a", encoding="utf-8") as out:
            out.write(json.dumps(record) + "\n")
        return "250 2.0.0 Message accepted"


def _auth_user(session):
    data = getattr(session, "auth_data", None)
    if isinstance(data, LoginPassword):
        return data.login.decode("utf-8", errors="replace")
    return None


def make_authenticator(user, password):
    def authenticate(server, session, envelope, mechanism, auth_data):
        ok = (isinstance(auth_data, LoginPassword)
              and auth_data.login == user.encode() and auth_data.password == password.encode())
        # handled=False makes aiosmtpd answer a failure with 535 itself; auth_data becomes
        # session.auth_data, which the recorder reads the user from.
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)
    return authenticate


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", required=True, help="JSON Lines file to append to")
    parser.add_argument("--port", type=int, default=0, help="loopback port (0: a free one)")
    parser.add_argument("--implicit-tls", action="store_true",
                        help="TLS from the first byte (smtps://) instead of STARTTLS")
    parser.add_argument("--user", help="require AUTH with this user")
    parser.add_argument("--password", help="... and this password")
    parser.add_argument("--cert-dir", help="where to write cert.pem and key.pem")
    args = parser.parse_args()
    if (args.user is None) != (args.password is None):
        parser.error("--user and --password go together")

    cert_dir = args.cert_dir or tempfile.mkdtemp(prefix="mann_smtp_")
    os.makedirs(cert_dir, exist_ok=True)
    cert, key = make_certificate(cert_dir)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    port = args.port or free_port()
    smtp_options = {}
    if args.user is not None:
        # aiosmtpd counts only STARTTLS as TLS for auth_require_tls; with implicit TLS the whole
        # connection is encrypted, and requiring it would hide AUTH from EHLO.
        smtp_options.update(authenticator=make_authenticator(args.user, args.password),
                            auth_required=True, auth_require_tls=not args.implicit_tls)
    recorder = Recorder(args.messages, args.implicit_tls)
    if args.implicit_tls:
        controller = Controller(recorder, hostname=HOST, port=port, ssl_context=context,
                                server_hostname="localhost", **smtp_options)
    else:
        controller = Controller(recorder, hostname=HOST, port=port, tls_context=context,
                                require_starttls=True, **smtp_options)

    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    controller.start()
    print(json.dumps({"ready": True, "host": HOST, "port": port, "ca_file": cert}), flush=True)
    try:
        stopped.wait()
    finally:
        controller.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

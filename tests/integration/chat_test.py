#!/usr/bin/env python3
"""Drives `mann chat` the way a person and a script would: through a pseudo-terminal (libedit
line editing, colour) and through a plain pipe. Facts told in one run must be recalled by the
next run on the same data directory, in English and in Vietnamese with and without diacritics.

Usage: chat_test.py --mann PATH/TO/mann
Exit status 0 when every check passed; otherwise the failed checks are listed.
"""

import argparse
import os
import re
import select
import shutil
import subprocess
import sys
import tempfile
import termios
import time

import harness

TIMEOUT = harness.TIMEOUT
PROMPT = b"you> "
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

STATEMENTS = [
    "My name is Alice",
    "I live in Hanoi",
    "tôi thích phở bò",
    "toi lam viec o Da Nang",
]
FACT_WORDS = ["Alice", "Hanoi", "phở", "Da Nang"]
# (question, text its reply must contain)
QUESTIONS = [
    ("where do I live?", "Hanoi"),
    ("what is my name?", "Alice"),
    ("tôi thích gì?", "phở"),
    ("tôi làm việc ở đâu?", "Da Nang"),  # asked with diacritics, stored without
    ("toi thich gi", "phở"),  # asked without diacritics, stored with
]
UNKNOWN = "what is my favourite car?"

checks = harness.Checks()
check = checks.check


def hermetic_env(root, **extra):
    """A hermetic environment with its own data dir and a terminal type that allows colour."""
    return harness.hermetic_env(
        root, **dict({"MANN_DATA_DIR": os.path.join(root, "data"), "TERM": "xterm"}, **extra))


class PtyChat:
    """One `mann chat` process on a pseudo-terminal."""

    def __init__(self, mann, env, args=()):
        master, slave = os.openpty()
        self.master = master
        self.transcript = b""
        self.buffer = b""
        self.proc = subprocess.Popen(
            [mann, "chat", *args], stdin=slave, stdout=slave, stderr=slave, env=env,
            close_fds=True, start_new_session=True)
        os.close(slave)
        self.banner = self.read_until(PROMPT).decode("utf-8", "replace")

    def read_until(self, marker, timeout=TIMEOUT):
        deadline = time.monotonic() + timeout
        while marker not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {marker!r} within {timeout}s; got {self.buffer[-400:]!r}")
            ready, _, _ = select.select([self.master], [], [], min(left, 0.2))
            if ready:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:  # the child closed the terminal
                    chunk = b""
                if not chunk:
                    if self.proc.poll() is not None:
                        raise EOFError(f"mann exited ({self.proc.returncode}) before {marker!r}; "
                                       f"got {self.buffer[-400:]!r}")
                    continue
                self.buffer += chunk
                self.transcript += chunk
        out, sep, rest = self.buffer.partition(marker)
        self.buffer = rest
        return out + sep

    def wait_for_line_editor(self, timeout=5):
        """Waits until libedit has put the terminal in raw mode for the next line.

        libedit prints the prompt before it switches the terminal from cooked to raw mode.
        Input typed in between is handled by the kernel's line discipline instead: it is
        echoed twice and, worse, a Ctrl-D there becomes a cooked-mode end-of-file that raw mode
        never delivers. A person's typing is slow enough; a test's is not, so it waits.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not termios.tcgetattr(self.master)[3] & termios.ICANON:
                return
            time.sleep(0.01)

    def send(self, line):
        """Types a line; returns everything printed up to the next prompt, echo included."""
        self.wait_for_line_editor()
        os.write(self.master, line.encode() + b"\r")
        return self.read_until(PROMPT).decode("utf-8", "replace")

    def reply(self, line):
        """Like send(), but only what mann printed after echoing the line back."""
        out = self.send(line)
        echo = line + "\r\n"  # libedit's echo of the typed line
        return out.rsplit(echo, 1)[-1] if echo in out else out

    def finish(self, how="/quit"):
        """Leaves with /quit or Ctrl-D; returns the exit status."""
        self.wait_for_line_editor()
        os.write(self.master, b"\x04" if how == "eof" else how.encode() + b"\r")
        try:
            code = self.proc.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        try:
            while True:
                ready, _, _ = select.select([self.master], [], [], 0.1)
                if not ready:
                    break
                chunk = os.read(self.master, 65536)
                if not chunk:
                    break
                self.transcript += chunk
        except OSError:
            pass
        os.close(self.master)
        return code


def pipe_chat(mann, env, lines, args=()):
    proc = subprocess.run([mann, "chat", *args], input=("\n".join(lines) + "\n").encode(),
                          env=env,
                          capture_output=True, timeout=TIMEOUT)
    return proc.returncode, proc.stdout.decode(), proc.stderr.decode()


def split_by_separator(stdout):
    """Pipe-mode output, cut at each `/session` reply: chunk i answers the i-th question."""
    chunks, current = [], []
    for line in stdout.splitlines()[2:]:  # banner and session id
        if line.startswith("session "):
            chunks.append("\n".join(current))
            current = []
        else:
            current.append(line)
    chunks.append("\n".join(current))
    return chunks


def test_pipe(mann, root):
    env = hermetic_env(root)
    code, out, err = pipe_chat(mann, env, STATEMENTS + ["/quit"])
    check(code == 0, "pipe: first run exits 0", f"code {code}, stderr {err!r}")
    check("0 memories" in out.splitlines()[0], "pipe: banner counts no memories at first", out)
    check("/help" in out.splitlines()[0], "pipe: banner mentions /help", out)
    session = UUID.search(out)
    check(session is not None, "pipe: the banner names the session", out)

    # A second process on the same data dir proves the memories were persisted.
    lines = []
    for question, _ in QUESTIONS:
        lines += [question, "/session"]
    lines += [UNKNOWN, "/session"]
    code, out, err = pipe_chat(mann, env, lines)  # ends by EOF, not /quit
    check(code == 0, "pipe: EOF exits 0", f"code {code}, stderr {err!r}")
    check("4 memories" in out.splitlines()[0], "pipe: restart sees 4 memories", out.splitlines()[0])
    chunks = split_by_separator(out)
    for (question, expected), reply in zip(QUESTIONS, chunks):
        check(expected in reply, f"pipe: {question!r} is answered with {expected!r}", reply)
    unknown = chunks[len(QUESTIONS)] if len(chunks) > len(QUESTIONS) else ""
    check("don't know" in unknown, "pipe: an unknown question gets a plain don't-know", unknown)
    check(not any(w in unknown for w in FACT_WORDS),
          "pipe: the don't-know reply quotes no unrelated memory", unknown)
    check("\x1b" not in out and "\x1b" not in err, "pipe: no ESC characters ever", repr(out[:200]))

    # Resuming a session works; a made-up one is refused with exit 1.
    if session:
        code, out, err = pipe_chat(mann, env, ["/session"], ["--session", session.group(0)])
        check(code == 0 and session.group(0) in out, "pipe: --session resumes", out + err)
    code, _, err = pipe_chat(mann, env, [], ["--session", "01939000-0000-7000-8000-000000000000"])
    check(code == 1 and "error:" in err, "pipe: unknown --session exits 1", f"{code} {err!r}")


def test_pty(mann, root):
    env = hermetic_env(root)

    # First run: tell the facts, leave with /quit.
    chat = PtyChat(mann, env)
    check("0 memories" in chat.banner and "/help" in chat.banner,
          "pty: banner counts memories and mentions /help", chat.banner)
    for statement in STATEMENTS:
        chat.send(statement)
    check(chat.finish("/quit") == 0, "pty: /quit exits 0")
    check(b"\x1b[" in chat.transcript, "pty: colour is used on a terminal without NO_COLOR",
          repr(chat.transcript[-200:]))

    # Second run (restart): recall, then the slash commands, with NO_COLOR set and no locale
    # in the environment (as under CI): UTF-8 input must still arrive intact.
    quiet_env = hermetic_env(root, NO_COLOR="1")
    for name in ("LANG", "LC_ALL", "LC_CTYPE"):
        quiet_env.pop(name, None)
    chat = PtyChat(mann, quiet_env)
    check("4 memories" in chat.banner, "pty: restart sees 4 memories", chat.banner)
    for question, expected in QUESTIONS:
        reply = chat.reply(question)
        check(expected in reply, f"pty: {question!r} is answered with {expected!r}", reply)
    reply = chat.reply(UNKNOWN)
    check("don't know" in reply, "pty: an unknown question gets a plain don't-know", reply)
    check(not any(w in reply for w in FACT_WORDS),
          "pty: the don't-know reply quotes no unrelated memory", reply)

    help_text = chat.reply("/help")
    for command in ["/search", "/remember", "/forget", "/history", "/stats", "/health", "/quit"]:
        check(command in help_text, f"pty: /help lists {command}", help_text)
    stats = chat.reply("/stats")
    check("memories: 4" in stats, "pty: /stats counts 4 memories", stats)
    health = chat.reply("/health")
    check("healthy" in health, "pty: /health reports a healthy store", health)
    search = chat.reply("/search Hanoi")
    hanoi_id = UUID.search(search)
    check("I live in Hanoi" in search and hanoi_id is not None,
          "pty: /search Hanoi finds the memory and shows its id", search)
    if hanoi_id:
        history = chat.reply(f"/history {hanoi_id.group(0)}")
        check("create" in history and "I live in Hanoi" in history,
              "pty: /history shows the creation", history)
    remembered = chat.reply("/remember my cat is called Miso")
    check("remembered" in remembered, "pty: /remember stores", remembered)
    check("Miso" in chat.reply("what is my cat called?"), "pty: a /remember-ed fact is recalled")

    forgot = chat.reply("/forget I live in Hanoi")
    check("forgot" in forgot, "pty: /forget <text> forgets the matching memory", forgot)
    reply = chat.reply("where do I live?")
    check("Hanoi" not in reply, "pty: a forgotten fact is no longer found", reply)
    check("Hanoi" not in chat.reply("/search Hanoi"), "pty: /search no longer finds it")
    unknown_command = chat.reply("/frobnicate")
    check("unknown command" in unknown_command, "pty: an unknown command is named", unknown_command)

    # Ctrl-D leaves with status 0 too.
    code = chat.finish("eof")
    check(code == 0, "pty: Ctrl-D exits 0", f"exit {code}, last output {chat.transcript[-300:]!r}")
    check(b"\x1b" not in chat.transcript, "pty: NO_COLOR=1 means no ESC character at all",
          repr([line for line in chat.transcript.split(b"\n") if b"\x1b" in line][:3]))

    # /forget <id> purges the entry and its history.
    chat = PtyChat(mann, hermetic_env(root), ["--no-color"])
    search = chat.reply("/search Alice")
    alice = UUID.search(search)
    check(alice is not None, "pty: /search Alice shows an id", search)
    if alice:
        out = chat.reply(f"/forget {alice.group(0)}")
        check("forgot" in out, "pty: /forget <id> forgets", out)
        out = chat.reply(f"/history {alice.group(0)}")
        check("error" in out, "pty: a purged memory has no history left", out)
    check(chat.finish("/quit") == 0, "pty: --no-color run exits 0")
    check(b"\x1b" not in chat.transcript, "pty: --no-color means no ESC character at all")

    history_file = os.path.join(env["MANN_DATA_DIR"], "chat_history")
    check(os.path.exists(history_file), "pty: the line history is saved in the data dir")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--mann", required=True)
    mann = os.path.abspath(parser.parse_args().mann)
    for name, test in [("pipe", test_pipe), ("pty", test_pty)]:
        root = tempfile.mkdtemp(prefix=f"mann-chat-{name}-")
        try:
            checks.scenario(name, test, mann, root)
        finally:
            shutil.rmtree(root, ignore_errors=True)
    return checks.summary()


if __name__ == "__main__":
    sys.exit(main())

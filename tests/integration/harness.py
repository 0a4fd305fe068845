"""Shared plumbing of the integration tests: counting checks, running named scenarios so one
crash or hang fails only its own scenario, a hermetic environment, and the closing summary line
("N passed, M failed") that CI reads."""

import json
import os
import sys

TIMEOUT = 60  # seconds, for every subprocess and every wait


class Checks:
    def __init__(self):
        self.passed = 0
        self.failures = []

    def check(self, condition, what, detail=""):
        if condition:
            self.passed += 1
        else:
            self.failures.append(what + (f"\n      {detail}" if detail else ""))

    def fail(self, what):
        self.failures.append(what)

    def scenario(self, name, fn, *args):
        """Runs fn(*args); an exception (a crash or a timeout) fails the scenario with its story."""
        try:
            fn(*args)
        except Exception as e:  # noqa: BLE001 - every failure must be reported, not raised
            self.failures.append(f"{name}: {type(e).__name__}: {e}")

    def run_all(self, scenarios):
        """Runs each (name, fn) of `scenarios` as a scenario, in order."""
        for name, fn in scenarios:
            self.scenario(name, fn)

    def summary(self):
        """Prints the failed checks and the summary line; returns the exit status."""
        for failure in self.failures:
            print("FAIL:", failure)
        print(f"{self.passed} passed, {len(self.failures)} failed")
        sys.stdout.flush()
        return 1 if self.failures else 0


def hermetic_env(root, **extra):
    """An environment that sees nothing of the developer's: its own HOME, no MANN_ settings."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("MANN_") and k not in ("NO_COLOR", "XDG_DATA_HOME")}
    env["HOME"] = os.path.join(root, "home")
    env["LANG"] = "C.UTF-8"
    os.makedirs(env["HOME"], exist_ok=True)
    env.update(extra)
    return env


def json_document(checks, args, code, out, err):
    """The one JSON document a `--json` command printed on stdout, or None after a failed check
    that shows what it printed instead."""
    try:
        doc = json.loads(out)
    except ValueError:
        doc = None
    checks.check(doc is not None, f"{' '.join(args[:2])} --json prints one JSON document",
                 f"code {code} stdout {out[:300]!r} stderr {err[:300]!r}")
    return doc

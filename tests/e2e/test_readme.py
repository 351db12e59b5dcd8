"""The README's shell examples, run as written, command by command.

Every ```sh block of README.md follows a marker that a rendered page does
not show:

  <!-- readme-test: run -->           run against a demo system;
  <!-- readme-test: skip: REASON -->  not run (it builds, installs, or
                                      starts servers of its own).

A block without a marker fails test_every_shell_block_is_marked: a new
example must be decided on.

The system is the one `make demo` leaves (scripts/demo.sh): the three
services with their default settings, after the demo journey (Alice is
user 1, with her account and a 50.00 order dated April 2025, and her April
invoice applied). The journey's creates are read from demo.sh itself, so
the two cannot drift apart. One difference: every service gets
ADMIN_TOKEN=s3cret, as the README's admin examples start them (the demo
gives them none).

The run blocks' commands (a line with its `\\` and `|` continuations) run
in README order in one bash process, so variables ($token) carry from one
to the next. The only change made to them: `localhost:8081`, `:8082` and
`:8083` become 127.0.0.1 and the harness's ports (any other host:port in
a run block fails the test, so no command leaves the test's servers).
Each command must exit 0, and

  - a comment line right under it that begins with `{`, `[` or `HTTP/`,
    with the comment lines after it that are indented further (`#  `),
    is its expected output: the output must match it
    from its start, `...` or `…` standing for anything, a run of spaces
    or a line break for any (or no) white space;
  - a trailing `# e.g. EXAMPLE` asks for output of the example's shape
    (each run of letters and digits standing for any run of token
    characters).
"""
import os
import queue
import re
import subprocess
import threading
import uuid

import pytest

from harness import REPO
from helpers import http, wait_until

README = REPO / "README.md"
DEMO_SH = REPO / "scripts" / "demo.sh"
MARKER = re.compile(r"^<!-- readme-test: (run|skip: (.+)) -->$")
FENCE = "```"
DEMO_PORTS = {"8081": "user", "8082": "order", "8083": "invoice"}
ADMIN_TOKEN = "s3cret"     # README.md, "Dead letters and admin routes"
READY_TIMEOUT = 60         # seconds for the services' /readyz
DEMO_TIMEOUT = 60          # seconds for the journey's invoice to be applied
COMMAND_TIMEOUT = 60       # seconds per README command (a read waits 5 s at most)
LOG_TIMEOUT = 30           # seconds for the tracing example's log line
EXPECT_START = re.compile(r"^(\{|\[|HTTP/)")
EXAMPLE = re.compile(r"#\s*e\.g\.\s+(\S+)\s*$")
ELLIPSIS = re.compile(r"\.\.\.|…")
TRACEPARENT = re.compile(r"traceparent: 00-([0-9a-f]{32})-([0-9a-f]{16})-01")


class Block:
    def __init__(self, line_no, marker, lines):
        self.line_no = line_no      # of the opening fence, 1-based
        self.marker = marker        # "run", "skip: ..." or None
        self.lines = lines

    @property
    def runs(self):
        return self.marker == "run"


class Command:
    def __init__(self, line_no, text):
        self.line_no = line_no
        self.text = text
        self.expect = []            # the expected output's comment lines
        m = EXAMPLE.search(text.splitlines()[-1])
        self.example = m.group(1) if m else None

    def __repr__(self):
        return f"README.md:{self.line_no}: {self.text}"


def shell_blocks(text):
    """The ```sh blocks of text, with the marker on the line before each."""
    blocks, lines = [], text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].strip() == FENCE + "sh":
            prev = lines[i - 1].strip() if i > 0 else ""
            m = MARKER.match(prev)
            start, body = i + 1, []
            i += 1
            while i < len(lines) and lines[i].strip() != FENCE:
                body.append(lines[i])
                i += 1
            blocks.append(Block(start, m.group(1) if m else None, body))
        i += 1
    return blocks


def commands(block):
    """The commands of a block, each with the expected output it shows."""
    out, cur, cur_line, last = [], [], 0, None
    in_expect = False
    for k, line in enumerate(block.lines):
        line_no = block.line_no + 1 + k
        stripped = line.strip()
        if cur:
            cur.append(line)
            if not stripped.endswith(("\\", "|")):
                last = Command(cur_line, "\n".join(cur))
                out.append(last)
                cur = []
            continue
        if not stripped:
            last, in_expect = None, False
            continue
        if stripped.startswith("#"):
            comment = stripped[1:].strip()
            indented = stripped[1:].startswith("  ")
            if last is not None and ((in_expect and indented) or
                                     (not last.expect and EXPECT_START.match(comment))):
                last.expect.append(comment)
                in_expect = True
            else:
                last, in_expect = None, False
            continue
        in_expect = False
        if stripped.endswith(("\\", "|")):
            cur, cur_line = [line], line_no
        else:
            last = Command(line_no, line)
            out.append(last)
    assert not cur, f"README.md:{cur_line}: a command continues past its block"
    return out


def expect_pattern(lines):
    """The regular expression an expected-output comment stands for."""
    parts = []
    for piece in ELLIPSIS.split("\n".join(lines)):
        parts.append(r"\s*".join(re.escape(w) for w in piece.split()))
    return re.compile(r"\s*" + ".*".join(parts), re.S)


def example_pattern(example):
    return re.compile(re.sub(r"[A-Za-z0-9]+", "[A-Za-z0-9_-]+", re.escape(example)))


def rewrite(text, ports):
    """localhost:8081/8082/8083 -> 127.0.0.1:<the harness's port>."""
    return re.sub(r"\blocalhost:(808[123])\b",
                  lambda m: f"127.0.0.1:{ports[m.group(1)]}", text)


def foreign_addresses(text):
    """host:port pairs of a run block that the rewrite does not cover."""
    found = re.findall(r"\b((?:localhost|127\.0\.0\.1|0\.0\.0\.0|\[::1\]):\d+)", text)
    return [a for a in found if a not in {f"localhost:{p}" for p in DEMO_PORTS}]


class Shell:
    """One bash process; run() feeds it a command and reads its output up
    to a marker line that carries the exit status."""

    def __init__(self, cwd):
        env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
        env["no_proxy"] = env["NO_PROXY"] = "*"
        self.proc = subprocess.Popen(["bash", "--noprofile", "--norc"], cwd=cwd, env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        self.lines = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def run(self, command, timeout=COMMAND_TIMEOUT):
        """(exit status, output) of command."""
        mark = f"__readme_test_{uuid.uuid4().hex}__"
        # In a group reading /dev/null, so that nothing it runs can read
        # the commands that follow; a group keeps its variables.
        self.proc.stdin.write(f"{{\n{command}\n}} </dev/null\nprintf '\\n{mark} %d\\n' $?\n")
        self.proc.stdin.flush()
        out = []
        while True:
            try:
                line = self.lines.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"no end of {command!r} within {timeout}s; "
                                     f"output so far: {''.join(out)!r}")
            if line is None:
                raise AssertionError(f"bash ended during {command!r}: {''.join(out)!r}")
            if line.startswith(mark):
                text = "".join(out)
                return int(line.split()[1]), text[:-1] if text.endswith("\n") else text
            out.append(line)

    def close(self):
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait(timeout=10)


def demo_journey():
    """[(service, path, body)] of demo.sh's creates, and its invoice query."""
    text = DEMO_SH.read_text()
    svc = {"U": ("user", "/system-api"), "O": ("order", "/order-service")}
    creates = [(svc[m.group(1)][0], svc[m.group(1)][1] + m.group(2), m.group(3))
               for m in re.finditer(r"""^show POST "\$([UO])(/[^"]+)" '([^']+)'$""",
                                    text, re.M)]
    query = re.search(r'^query="\$I(/[^"]+)"$', text, re.M).group(1)
    return creates, "/invoice-service" + query


def run_blocks():
    return [b for b in shell_blocks(README.read_text()) if b.runs]


def test_every_shell_block_is_marked():
    blocks = shell_blocks(README.read_text())
    unmarked = [f"README.md:{b.line_no}" for b in blocks if b.marker is None]
    assert not unmarked, ("sh blocks without a <!-- readme-test: run --> or "
                          f"<!-- readme-test: skip: REASON --> line before them: {unmarked}")
    runs = [b for b in blocks if b.runs]
    assert runs, "no runnable block found"
    walk = README.read_text().split("## Walk-through with curl", 1)[1]
    assert shell_blocks(walk)[0].runs, "the walk-through is not run"
    cmds = [c for b in runs for c in commands(b)]
    assert len(cmds) >= 20 and sum(1 for c in cmds if c.expect) >= 3, cmds
    for b in runs:
        foreign = foreign_addresses("\n".join(b.lines))
        assert not foreign, f"README.md:{b.line_no}: a run block names {foreign}"


def test_the_demo_journey_is_found():
    creates, query = demo_journey()
    assert [c[1] for c in creates] == ["/system-api/users", "/system-api/accounts",
                                       "/order-service/orders"], creates
    assert query.startswith("/invoice-service/invoices?user_id=1&"), query


def start_demo(fresh_system):
    """A system as `make demo` leaves it (see the module's docstring)."""
    s = fresh_system(env={"ADMIN_TOKEN": ADMIN_TOKEN})
    for svc in s.services:
        wait_until(lambda: http("GET", svc.base_url + "/readyz").status == 200,
                   timeout=READY_TIMEOUT, message=f"{svc.name}-service ready")
    creates, query = demo_journey()
    for name, path, body in creates:
        resp = http("POST", getattr(s, name).base_url + path, raw=body,
                    headers={"Content-Type": "application/json"})
        assert resp.status == 201, (path, resp)

    def journey_applied():
        resp = http("GET", s.invoice.base_url + query)
        inv = resp.json[0] if resp.status == 200 and resp.json else None
        return (inv and inv["order_count"] == 1 and inv["name"] is not None
                and inv["shipping_address"] is not None)
    wait_until(journey_applied, timeout=DEMO_TIMEOUT, message="the demo's April invoice")
    return s


def check(cmd, status, output):
    """What is wrong with cmd's result, or None."""
    if status != 0:
        return f"exit status {status}"
    if cmd.expect and not expect_pattern(cmd.expect).match(output):
        return "output does not match\n    # " + "\n    # ".join(cmd.expect)
    if cmd.example and not example_pattern(cmd.example).fullmatch(output.strip()):
        return f"output is not shaped like the example {cmd.example}"
    return None


def test_readme_examples_run_as_written(fresh_system, tmp_path):
    s = start_demo(fresh_system)
    ports = {p: getattr(s, name).port for p, name in DEMO_PORTS.items()}
    shell = Shell(tmp_path)
    failures, ran = [], 0
    try:
        for block in run_blocks():
            for cmd in commands(block):
                status, output = shell.run(rewrite(cmd.text, ports))
                ran += 1
                problem = check(cmd, status, output)
                if problem:
                    failures.append(f"{cmd!r}\n  {problem}\n  output: {output[:2000]!r}")
    finally:
        shell.close()
    assert ran >= 20
    assert not failures, f"{len(failures)} of {ran} README commands failed:\n" + \
        "\n".join(failures)

    # The tracing example: the consumer's log line shows the trace that
    # the example's traceparent began, as the README's comment shows it
    # (the harness runs the services with --log-level debug).
    trace_id, _ = TRACEPARENT.search(README.read_text()).groups()
    line = re.compile(r"DEBUG invoice-service rid=\S+ order\.created \S+ from order: applied "
                      rf"trace_id={trace_id} span_id=[0-9a-f]{{16}} parent_id=[0-9a-f]{{16}}")
    wait_until(lambda: line.search(s.invoice.log_text()), timeout=LOG_TIMEOUT,
               message="the tracing example's log line")

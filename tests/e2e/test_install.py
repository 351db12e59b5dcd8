"""Installation (issue 14, item 5; README.md, "Installing").

`make install PREFIX=/usr DESTDIR=<tmp>` is run once for the module with
BUILD set to the build the suite tests (the folder above $BIN_DIR, so
build/asan under `make test`: the binaries are there already and nothing is
compiled again; SAN=1 for a sanitizer build, so that anything out of date
would be rebuilt with the right flags). Then:

- the staged tree holds exactly the expected files, with their modes;
- the INSTALLED binaries (from DESTDIR) walk the demo journey against a
  private broker: a user, an account, an order, then the invoice with the
  order and its total (on PostgreSQL too, with TEST_DB=postgres), each
  service started with every setting of its example env file;
- every unit passes `systemd-analyze verify` with no warning at all, and
  `systemd-analyze security --offline` rates its exposure at most
  MAX_EXPOSURE. systemd 252 has `--root`, but verify then looks for the
  whole unit tree (sysinit.target ...) under that root, which a staged
  install has not got; so verify reads copies of the units whose ExecStart
  path points into DESTDIR, everything else unchanged;
- each unit holds the hardening directives of the task with their values;
  its ExecStart follows PREFIX; TimeoutStopSec exceeds the services' own
  shutdown bound;
- MemoryDenyWriteExecute=yes is safe for the binaries: neither they nor a
  library they load has an executable stack or text relocations (the two
  things that make the loader map memory writable and executable). Like
  the system call filter, it can only really be exercised under a running
  systemd, which this container has not;
- `make install PREFIX=/usr/local` points the units at /usr/local, and
  `make uninstall` removes everything it installed.
"""

import os
import re
import shutil
import stat
import subprocess
from decimal import Decimal

import pytest

from conftest import _require_binaries
from contract import ACCOUNTS, ORDERS, USERS, describe, post
from harness import REPO, SERVICE_NAMES, Broker, Service, bin_dir
from helpers import unique_email, wait_until
from invoice_helpers import list_invoices, rare_year

MAKE_TIMEOUT = 900          # seconds; only spent when the build is out of date
TOOL_TIMEOUT = 60           # seconds for systemd-analyze, readelf, ldd
INVOICE_WAIT = 30           # seconds for the order to reach the invoice
MAX_EXPOSURE = 20           # systemd-analyze security, in tenths (2.0 = "OK")
SHUTDOWN_TIMEOUT = 10       # the services' default (--help says so; checked)
RELAY_STOP_GRACE = 2        # src/lib/outbox.c OUTBOX_STOP_GRACE_MS

NAMES = [f"{n}-service" for n in SERVICE_NAMES]


def _make(*args):
    """make -C REPO args, outside any make that runs the suite (its
    MAKEFLAGS would point at a jobserver this process has not got)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")}
    res = subprocess.run(["make", "--no-print-directory", "-C", str(REPO), *args],
                         stdin=subprocess.DEVNULL, capture_output=True, text=True,
                         timeout=MAKE_TIMEOUT, env=env)
    assert res.returncode == 0, f"make {' '.join(args)}:\n{res.stdout}\n{res.stderr}"
    return res.stdout


def _build_args():
    """BUILD (and SAN) for the build whose binaries the suite tests."""
    build = bin_dir().parent
    try:
        build_arg = str(build.relative_to(REPO))
    except ValueError:
        build_arg = str(build)
    args = [f"BUILD={build_arg}"]
    if build.name == "asan":
        args.append("SAN=1")
    return args


@pytest.fixture(scope="module")
def staged(tmp_path_factory):
    """DESTDIR of `make install PREFIX=/usr`."""
    _require_binaries()
    dest = tmp_path_factory.mktemp("destdir")
    _make("install", "PREFIX=/usr", f"DESTDIR={dest}", *_build_args())
    return dest


def parse_unit(text):
    """{(section, key): [values]} of a unit file, comments skipped."""
    out, section = {}, None
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        out.setdefault((section, key.strip()), []).append(value.strip())
    return out


def unit_of(dest, name):
    return parse_unit((dest / "usr/lib/systemd/system" / f"{name}.service").read_text())


def example_settings(dest, name):
    """{NAME: value} of the commented settings of an example env file."""
    text = (dest / "usr/share/cqrs-c/examples" / f"{name}.env").read_text()
    return dict(m.groups() for m in re.finditer(r"^#([A-Z][A-Z0-9_]*)=(.*)$", text, re.M))


def readme_settings():
    """The environment variables of README.md's configuration table."""
    text = (REPO / "README.md").read_text()
    return re.findall(r"^\| `--[a-z-]+` \| `([A-Z][A-Z0-9_]*)` \|", text, re.M)


def help_settings(binary):
    out = subprocess.run([str(binary), "--help"], capture_output=True, text=True,
                         timeout=TOOL_TIMEOUT, check=True).stdout
    return re.findall(r"^\s+--[a-z-]+\s+([A-Z][A-Z0-9_]*)\s", out, re.M), out


# ---------------------------------------------------------------- the files

def expected_files():
    """{path relative to DESTDIR: mode} of `make install PREFIX=/usr`."""
    files = {f"usr/bin/{n}": 0o755 for n in NAMES}
    files.update({f"usr/lib/systemd/system/{n}.service": 0o644 for n in NAMES})
    files.update({f"usr/share/cqrs-c/examples/{n}.env": 0o644 for n in NAMES})
    share = REPO / "share"
    for p in share.rglob("*"):
        if p.is_file():
            files[f"usr/share/cqrs-c/{p.relative_to(share).as_posix()}"] = 0o644
    files["usr/share/doc/cqrs-c/README.md"] = 0o644
    for p in (REPO / "docs").glob("*.md"):
        files[f"usr/share/doc/cqrs-c/docs/{p.name}"] = 0o644
    return files


def test_installed_files_and_modes(staged):
    want = expected_files()
    assert "usr/share/cqrs-c/README.md" in want  # the share/ tree is installed
    got = {p.relative_to(staged).as_posix(): stat.S_IMODE(p.lstat().st_mode)
           for p in staged.rglob("*") if not p.is_dir()}
    assert sorted(got) == sorted(want)
    wrong = {p: oct(m) for p, m in got.items() if m != want[p]}
    assert not wrong, f"modes: {wrong}"
    for p in want:
        assert (staged / p).is_file() and not (staged / p).is_symlink(), p
    for d in ("usr/bin", "usr/lib/systemd/system", "usr/share/cqrs-c",
              "usr/share/cqrs-c/examples", "usr/share/doc/cqrs-c",
              "usr/share/doc/cqrs-c/docs"):
        assert stat.S_IMODE((staged / d).stat().st_mode) == 0o755, d
    for n in NAMES:  # the binaries are those of the build, byte for byte
        assert (staged / "usr/bin" / n).read_bytes() == (bin_dir() / n).read_bytes(), n
    # Files of the repository, unchanged.
    assert ((staged / "usr/share/cqrs-c/README.md").read_bytes()
            == (REPO / "share/README.md").read_bytes())
    assert (staged / "usr/share/doc/cqrs-c/README.md").read_bytes() == \
        (REPO / "README.md").read_bytes()


def test_installed_binaries_answer_version(staged):
    version = (REPO / "VERSION").read_text().strip()
    for n in NAMES:
        out = subprocess.run([str(staged / "usr/bin" / n), "--version"], capture_output=True,
                             text=True, timeout=TOOL_TIMEOUT)
        assert out.returncode == 0 and out.stdout.strip() == f"{n} {version}", out


# ---------------------------------------------------------------- the env files

def test_example_env_files_hold_every_setting_commented(staged):
    documented = readme_settings()
    assert len(documented) >= 10, "README.md's configuration table not found"
    for n in NAMES:
        path = staged / "usr/share/cqrs-c/examples" / f"{n}.env"
        text = path.read_text()
        active = [l for l in text.splitlines() if l.strip() and not l.lstrip().startswith("#")]
        assert not active, f"{path.name}: settings not commented out: {active}"
        settings = example_settings(staged, n)
        from_help, _ = help_settings(staged / "usr/bin" / n)
        missing = [v for v in documented + from_help if v not in settings]
        assert not missing, f"{path.name} lacks {missing}"
        unit = unit_of(staged, n)
        # The example shows the unit's own database default and the
        # service's port; the unit reads it where the example says.
        assert f"DATABASE_URL={settings['DATABASE_URL']}" in unit[("Service", "Environment")]
        assert settings["PORT"] == {"user-service": "8081", "order-service": "8082",
                                    "invoice-service": "8083"}[n]
        assert f"/etc/cqrs-c/{n}.env" in text


def test_example_env_values_are_accepted(staged):
    # Every value of the example, uncommented, passes the service's own
    # parsing (which exits 2 on a bad value before it answers --help).
    for n in NAMES:
        env = dict(os.environ, **example_settings(staged, n))
        res = subprocess.run([str(staged / "usr/bin" / n), "--help"], capture_output=True,
                             text=True, timeout=TOOL_TIMEOUT, env=env)
        assert res.returncode == 0, f"{n}: {res.stderr}"


# ---------------------------------------------------------------- the journey

def test_installed_binaries_walk_the_demo_journey(staged, tmp_path):
    broker = Broker()
    services = {}
    try:
        broker.start()
        for name in SERVICE_NAMES:
            # Flags (port, bind, database, broker) override the example's
            # addresses; its other settings apply as they would under the unit.
            svc = Service(name, tmp_path, broker.amqp_url,
                          binary=staged / "usr/bin" / f"{name}-service",
                          env=example_settings(staged, f"{name}-service"))
            services[name] = svc
            svc.start()
        for name, svc in services.items():
            assert svc.proc.args[0] == str(staged / "usr/bin" / f"{name}-service")
        ub, ob = services["user"].base_url, services["order"].base_url

        user = post(ub, USERS, {"name": "Ines Tall", "email": unique_email("install")})
        assert user.status == 201, describe(user)
        uid = user.json["id"]
        acc = post(ub, ACCOUNTS, {"user_id": uid, "address1": "5 Install Rd",
                                  "city": "Prefix", "state": "US", "zip": "10101"})
        assert acc.status == 201, describe(acc)
        year = rare_year()
        order = post(ob, ORDERS, {"user_id": uid, "amount": 42.5,
                                  "description": "installed", "created_at":
                                  f"{year}-06-15T12:00:00.000Z"})
        assert order.status == 201, describe(order)
        oid = order.json["id"]

        class Invoices:  # what invoice_helpers.list_invoices needs
            invoice = services["invoice"]

        def invoice():
            rows = list_invoices(Invoices, {"user_id": uid, "year": year, "month": 6})
            done = [r for r in rows if [l["order_id"] for l in r["orders"]] == [oid]
                    and r["name"] == "Ines Tall"
                    and r["shipping_address"] is not None]
            return done[0] if done else None

        inv = wait_until(invoice, timeout=INVOICE_WAIT,
                         message="the invoice of the installed services")
        assert inv["total"] == Decimal("42.50") and inv["order_count"] == 1, inv
        assert inv["shipping_address"]["address1"] == "5 Install Rd", inv
    finally:
        errors = []
        for svc in reversed(list(services.values())):
            try:
                if svc.running():
                    svc.stop()  # graceful: exit 0, clean sanitizer log
            except Exception as e:
                errors.append(e)
            finally:
                svc.release_port()
        broker.close()
    assert not errors, errors[0]


# ---------------------------------------------------------------- the units

def _analyze(*args, cwd):
    tool = shutil.which("systemd-analyze")
    assert tool, "systemd-analyze is missing: scripts/install-deps.sh installs systemd"
    return subprocess.run([tool, *args], capture_output=True, text=True,
                          timeout=TOOL_TIMEOUT, cwd=str(cwd))


@pytest.fixture(scope="module")
def verifiable_units(staged, tmp_path_factory):
    """Copies of the units with ExecStart pointing into DESTDIR."""
    out = tmp_path_factory.mktemp("units")
    for n in NAMES:
        text = (staged / "usr/lib/systemd/system" / f"{n}.service").read_text()
        copy, count = re.subn(r"^ExecStart=/usr/bin/", f"ExecStart={staged}/usr/bin/",
                              text, flags=re.M)
        assert count == 1, f"{n}: ExecStart not in /usr/bin"
        (out / f"{n}.service").write_text(copy)
    return out


def test_units_pass_systemd_analyze_verify(verifiable_units):
    paths = [str(verifiable_units / f"{n}.service") for n in NAMES]
    res = _analyze("verify", *paths, cwd=verifiable_units)
    assert res.returncode == 0 and not res.stdout.strip() and not res.stderr.strip(), \
        f"exit {res.returncode}\n{res.stdout}\n{res.stderr}"


def test_verify_does_catch_a_broken_unit(verifiable_units, tmp_path):
    # The check above can fail: a misspelt value and an unknown key are
    # reported (as warnings, on stderr), and so is a missing binary.
    text = (verifiable_units / "user-service.service").read_text()
    bad = tmp_path / "user-service.service"
    bad.write_text(text.replace("Restart=on-failure", "Restart=on-fialure")
                   .replace("ExecStart=", "ExecStart=/nonexistent") + "ProtectFoo=yes\n")
    res = _analyze("verify", str(bad), cwd=tmp_path)
    for what in ("on-fialure", "ProtectFoo", "/nonexistent"):
        assert what in res.stderr, res.stderr


def test_units_exposure_is_low(verifiable_units):
    for n in NAMES:
        res = _analyze("security", "--offline=yes", f"--threshold={MAX_EXPOSURE}",
                       str(verifiable_units / f"{n}.service"), cwd=verifiable_units)
        assert res.returncode == 0, f"{n}:\n{res.stdout[-3000:]}\n{res.stderr}"
        assert "Overall exposure level" in res.stdout, res.stdout[-3000:]


HARDENING = {
    "DynamicUser": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "NoNewPrivileges": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectControlGroups": "yes",
    "PrivateDevices": "yes",
    "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    "CapabilityBoundingSet": "",
    "MemoryDenyWriteExecute": "yes",
    "Restart": "on-failure",
    "KillSignal": "SIGTERM",
}


def test_units_hold_the_hardening_directives(staged):
    for n in NAMES:
        unit = unit_of(staged, n)
        svc = lambda key: unit.get(("Service", key), [])  # noqa: E731
        for key, value in HARDENING.items():
            assert svc(key) == [value], f"{n}: {key}={svc(key)}, want {value!r}"
        assert "@system-service" in svc("SystemCallFilter"), n
        state = f"cqrs-c-{n.split('-')[0]}"
        assert svc("StateDirectory") == [state], n
        assert svc("Environment") == [f"DATABASE_URL=sqlite:/var/lib/{state}/{n}.db"], n
        assert svc("EnvironmentFile") == [f"-/etc/cqrs-c/{n}.env"], n
        assert svc("ExecStart") == [f"/usr/bin/{n}"], n
        assert svc("Type") == ["exec"], n
        for key in ("After", "Wants"):
            words = " ".join(unit.get(("Unit", key), [])).split()
            assert {"network-online.target", "rabbitmq-server.service"} <= set(words), \
                f"{n}: {key}={words}"
        for key in ("Requires", "BindsTo", "Requisite"):  # the broker is optional
            assert ("Unit", key) not in unit, f"{n}: {key}"
        assert unit[("Install", "WantedBy")] == ["multi-user.target"], n


def test_units_stop_timeout_exceeds_the_shutdown_bound(staged):
    for n in NAMES:
        _, out = help_settings(staged / "usr/bin" / n)
        line = next(l for l in out.splitlines() if "--shutdown-timeout" in l)
        assert f"default {SHUTDOWN_TIMEOUT})" in line, line
        value = unit_of(staged, n)[("Service", "TimeoutStopSec")]
        m = re.fullmatch(r"(\d+)s?", value[0])
        assert m, value
        assert int(m.group(1)) > SHUTDOWN_TIMEOUT + RELAY_STOP_GRACE, value


# ------------------------------------------------- MemoryDenyWriteExecute

def _tool(*args):
    res = subprocess.run(list(args), capture_output=True, text=True, timeout=TOOL_TIMEOUT)
    assert res.returncode == 0, f"{args}: {res.stderr}"
    return res.stdout


def test_binaries_and_libraries_need_no_writable_executable_memory(staged):
    checked = set()
    for n in NAMES:
        binary = staged / "usr/bin" / n
        libs = re.findall(r"=> (/\S+) \(", _tool("ldd", str(binary)))
        assert any("libmicrohttpd" in l for l in libs), libs
        for path in [str(binary), *libs]:
            if path in checked:
                continue
            checked.add(path)
            heads = _tool("readelf", "-lW", path)
            stack = [l for l in heads.splitlines() if "GNU_STACK" in l]
            assert stack and "RWE" not in stack[0], f"{path}: executable stack {stack}"
            assert "TEXTREL" not in _tool("readelf", "-dW", path), f"{path}: text relocations"


# ---------------------------------------------------------------- PREFIX, uninstall

def test_prefix_is_followed_and_uninstall_removes_everything(tmp_path):
    _require_binaries()
    dest = tmp_path / "root"
    _make("install", "PREFIX=/usr/local", f"DESTDIR={dest}", *_build_args())
    installed = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*")
                       if p.is_file())
    assert "usr/local/bin/user-service" in installed, installed
    assert not [p for p in installed if not p.startswith("usr/local/")], installed
    for n in NAMES:
        unit = parse_unit((dest / "usr/local/lib/systemd/system" / f"{n}.service").read_text())
        assert unit[("Service", "ExecStart")] == [f"/usr/local/bin/{n}"]
        assert unit[("Unit", "Documentation")] == [
            "file:/usr/local/share/doc/cqrs-c/README.md"]
        # Settings stay under /etc and the database under /var/lib
        # whatever the prefix (systemd's own places).
        assert unit[("Service", "EnvironmentFile")] == [f"-/etc/cqrs-c/{n}.env"]
        example = (dest / "usr/local/share/cqrs-c/examples" / f"{n}.env").read_text()
        unit_text = (dest / "usr/local/lib/systemd/system" / f"{n}.service").read_text()
        for text in (example, unit_text):
            assert not re.search(r"@[A-Z]+@", text), f"{n}: a placeholder left"

    _make("uninstall", "PREFIX=/usr/local", f"DESTDIR={dest}")
    left = [p.relative_to(dest).as_posix() for p in dest.rglob("*") if not p.is_dir()]
    assert not left, left
    dirs = {p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_dir()}
    assert not any(d.startswith(("usr/local/share/cqrs-c", "usr/local/share/doc/cqrs-c"))
                   for d in dirs), sorted(dirs)
    # Only the system's shared folders stay (they may hold other packages).
    assert {"usr/local/bin", "usr/local/lib/systemd/system"} <= dirs

"""Fixtures for the end-to-end tests.

system        -- one System for the whole session (contract tests); it is
                 shared, so tests use unique data (uuid-based emails).
fresh_system  -- a factory: fresh_system(**kw) returns a new System that is
                 closed (services stopped gracefully and checked) at the end
                 of the test; for tests that kill or restart things.

Every test also checks, when it ends, that each answer it received
conforms to the service's OpenAPI document (openapi_check.py).

With TEST_DB=postgres every service runs on a fresh database of one
private PostgreSQL cluster that the session starts on first use and stops
at its end (harness.shared_postgres); the default is SQLite files.

The binaries come from $BIN_DIR (scripts/run-tests.sh sets it), else from
build/asan/bin. When BIN_DIR is set and a binary is missing, the tests that
need it fail; when it is not set, they are skipped.
"""

import os
import signal

import pytest

import openapi_check
from harness import System, bin_dir, close_shared_postgres, db_mode


def _on_sigterm(signum, frame):
    # `timeout` ends a run with SIGTERM: turn it into an interrupt so that
    # fixtures tear down and every server we started is stopped.
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_configure(config):
    signal.signal(signal.SIGTERM, _on_sigterm)


# Parallel runs (pytest-xdist, `-n N --dist loadgroup`, as
# scripts/run-tests.sh runs the suite): every worker is a process with its
# own session System and PostgreSQL cluster, and ports come from one
# registry (harness.reserve_port), so workers never meet. Each test is its
# own unit of work, except the modules whose tests share a module-scoped
# System: those stay together on one worker. The slow modules (faults,
# restarts, deadlines that must pass) are collected first, so that the
# long tests start early and the short ones fill the gaps at the end.
SLOW_MODULES = ("test_scaleout", "test_chaos", "test_resources", "test_faults",
                "test_shutdown", "test_hostile_http")
GROUPED_MODULES = ("test_scaleout", "test_resources", "test_shutdown", "test_hostile_http",
                   "test_install", "test_rebuild")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    def module(item):
        return item.module.__name__ if item.module else ""

    for item in items:
        if module(item) in GROUPED_MODULES:
            item.add_marker(pytest.mark.xdist_group(module(item)))
    rank = {name: i for i, name in enumerate(SLOW_MODULES)}
    items.sort(key=lambda item: rank.get(module(item), len(rank)))


def pytest_report_header(config):
    return f"e2e database: {db_mode()} (TEST_DB)"


@pytest.fixture(scope="session", autouse=True)
def _session_postgres():
    # Set up before any other session fixture, so torn down after them:
    # the services are stopped before their cluster is.
    yield
    close_shared_postgres()


@pytest.fixture(autouse=True)
def _answers_match_openapi():
    """Fails the test if an answer it received breaks its service's
    OpenAPI document (openapi_check: every HTTP client of the tests reports
    the answers it gets). A fixture's own requests count for the test that
    uses it."""
    yield
    problems = openapi_check.take()
    if problems:
        pytest.fail("answers that do not conform to openapi/*.json:\n  "
                    + "\n  ".join(problems), pytrace=False)


def _require_binaries():
    missing = [n for n in ("user", "order")
               if not (bin_dir() / f"{n}-service").exists()]
    if missing:
        msg = f"no {', '.join(m + '-service' for m in missing)} in {bin_dir()}"
        if os.environ.get("BIN_DIR"):
            pytest.fail(msg)
        pytest.skip(msg + " (build with `make asan` or set BIN_DIR)")


@pytest.fixture(scope="session")
def system():
    """Ready before the first test: every service's /readyz answers 200
    (the relays and the consumer have connected to the broker)."""
    _require_binaries()
    s = System()
    s.wait_ready()
    yield s
    s.close()


@pytest.fixture
def fresh_system():
    _require_binaries()
    made = []

    def make(**kw):
        s = System(**kw)
        made.append(s)
        return s

    yield make
    errors = []
    for s in reversed(made):
        try:
            s.close()
        except Exception as e:
            errors.append(e)
    if errors:
        raise errors[0]

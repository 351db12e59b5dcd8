"""The dashboard in a real browser (README.md, "The dashboard").

Runs tests/browser/journey.mjs (playwright-core driving Debian's headless
chromium, never a downloaded browser) against the session's system: it
creates a user, an account and an order by clicking, and waits for the
invoice to show the order's total live. The screenshot it takes is kept
as a test artifact, one per database backend (TEST_DB), so that the
PostgreSQL pass does not overwrite the SQLite one:
build/browser/dashboard-sqlite.png and build/browser/dashboard-postgres.png.

Not skipped when a tool is missing: chromium, node and npm are installed
by scripts/install-deps.sh, and their absence is a failure saying so.
"""
import os
import shutil
import subprocess
from urllib.parse import urlencode

import pytest

from harness import REPO, db_mode

BROWSER_DIR = REPO / "tests" / "browser"
CHROMIUM = "/usr/bin/chromium"
ARTIFACT_DIR = REPO / "build" / "browser"
NPM_TIMEOUT = 300      # seconds for npm ci (from npm's cache when warm)
JOURNEY_TIMEOUT = 180  # seconds for the whole journey


def _tools():
    missing = [t for t in (CHROMIUM, shutil.which("node"), shutil.which("npm"))
               if not t or not os.path.exists(t)]
    if missing or not shutil.which("node") or not shutil.which("npm"):
        pytest.fail("the browser test needs chromium (/usr/bin/chromium), node and npm;"
                    " run scripts/install-deps.sh (make deps) to install them")


@pytest.fixture(scope="module")
def playwright_installed():
    _tools()
    if not (BROWSER_DIR / "node_modules" / "playwright-core").is_dir():
        res = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=BROWSER_DIR,
                             capture_output=True, text=True, timeout=NPM_TIMEOUT)
        assert res.returncode == 0, f"npm ci in tests/browser failed:\n{res.stdout}\n{res.stderr}"


def artifact():
    """This backend's screenshot (db_mode() is "sqlite" or "postgres")."""
    return ARTIFACT_DIR / f"dashboard-{db_mode()}.png"


def test_dashboard_journey_in_chromium(system, playwright_installed):
    shot = artifact()
    shot.parent.mkdir(parents=True, exist_ok=True)
    shot.unlink(missing_ok=True)
    query = urlencode({"user": system.user.base_url, "order": system.order.base_url})
    env = dict(os.environ, DASHBOARD_URL=f"{system.invoice.base_url}/invoice-service/ui/?{query}",
               SCREENSHOT=str(shot), CHROMIUM=CHROMIUM, AMOUNT="12.34")
    res = subprocess.run(["node", str(BROWSER_DIR / "journey.mjs")], cwd=BROWSER_DIR, env=env,
                         capture_output=True, text=True, timeout=JOURNEY_TIMEOUT)
    assert res.returncode == 0, f"journey failed:\n{res.stdout}\n{res.stderr}"
    assert "invoice total 12.34" in res.stdout
    assert shot.exists() and shot.stat().st_size > 0, "no screenshot"

"""The short version of the fault-injection run of chaos.py (the long one
is `make chaos DURATION=600`): load with random creates while services are
killed (-9), stopped (SIGTERM), frozen (SIGSTOP past their heartbeat) and
the broker restarted; then every 201 order must be on exactly one invoice
line with exact totals, and nothing else may have changed.

The broker offers a 10 s heartbeat here (the services ask for 30 s and get
the smaller), so a 35 s pause is enough for the broker to drop the frozen
service's connections (it gives up after 2 to 3 intervals); `make chaos`
keeps the services' 30 s and pauses for 95 s. CHAOS_SEED=N replays a run's choices."""

import os


from chaos import FAULTS, Options, run
from conftest import _require_binaries


def test_chaos_short():
    _require_binaries()
    seed = int(os.environ["CHAOS_SEED"]) if os.environ.get("CHAOS_SEED") else None
    opts = Options(duration=30, seed=seed, heartbeat=10, pause=35, users=24,
                   workers=4, rate=20, fault_gap=(1.0, 4.0), settle=150,
                   each_kind=True, verbose=True)
    lines = []
    res = run(opts, out=lines.append)
    report = "\n".join(lines)
    print(report)  # shown by pytest -s or on failure
    assert res.ok, report
    assert all(res.faults[k] >= 1 for k in FAULTS), report
    # The pause did what it is for: the broker gave up on the frozen
    # service's connections (a writer's relay, or the consumer's two).
    assert res.heartbeat_expiries >= 1, report
    orders_201 = sum(n for (kind, how), n in res.requests.items()
                     if kind == "order" and how == 201)
    assert orders_201 >= 200, report

#!/usr/bin/env python3
"""Where a figure's time goes: the bench's set-up (private RabbitMQ, the
three services of --build on fresh SQLite files or a private PostgreSQL
cluster, the hello-world server, the seeded customer), the figure's load
(the same wrk script, threads and connections as `make bench`), and
`perf record` (call graphs) attached to the serving process while the load runs.
Prints the top of the profile by symbol and by library, and keeps
perf.data in the run's folder for `perf report -i`.

    /usr/bin/python3 bench/profile.py [--db postgres] [--seconds 10] get-invoices

Run it on an idle machine, as a benchmark (docs/performance.md). It needs
root (the private broker), perf (Debian linux-perf) and wrk.
"""
import argparse
import os
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402 - the bench's own set-up, reused as is

# figure: (server, path of the load, wrk script)
FIGURES = {
    "hello-get": ("hello", lambda b: "/order-service/orders?limit=10", "get.lua"),
    "get-orders": ("order", lambda b: "/order-service/orders?limit=10", "get.lua"),
    "get-invoices": ("invoice", lambda b: b.invoice_path, "get.lua"),
    "post-orders": ("order", lambda b: "/order-service/orders", "post_order.lua"),
}
WARMUP_S = 2
TOP = 25


def perf_report(data, sort):
    out = subprocess.run(["perf", "report", "-i", data, "--stdio", "--no-children",
                          "--sort", sort, "--percent-limit", "0.8"],
                         capture_output=True, text=True, timeout=300, check=False).stdout
    rows = [line for line in out.splitlines() if line.strip() and not line.startswith("#")
            and "%" in line.split()[0]]
    return rows[:TOP]


def profile(bench, figure, seconds, freq, call_graph):
    server, path_of, script = FIGURES[figure]
    url = bench.url(server, path_of(bench))
    pid = bench.pids[server]
    data = os.path.join(bench.tmp, f"perf-{figure}.data")
    argv = ["wrk", f"-t{run.WRK_THREADS}", f"-c{run.WRK_CONNECTIONS}",
            f"-d{WARMUP_S + seconds + 1}s", "-s", os.path.join(run.ROOT, "bench/wrk", script),
            url]
    wrk = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(WARMUP_S)
        subprocess.run(["perf", "record", "--call-graph", call_graph, "-F", str(freq),
                        "-p", str(pid), "-o", data, "--", "sleep", str(seconds)],
                       capture_output=True, timeout=seconds + 60, check=True)
        out, _ = wrk.communicate(timeout=seconds + 60)
    finally:
        if wrk.poll() is None:
            wrk.kill()
            wrk.wait()
    rps = next((line.split()[-1] for line in out.splitlines()
                if line.startswith("Requests/sec")), "?")
    print(f"\n## {figure}: {url} ({rps} req/s under perf), pid {pid}")
    print(f"### by symbol (self time)")
    for line in perf_report(data, "sym"):
        print(line)
    print(f"### by library")
    for line in perf_report(data, "dso"):
        print(line)
    print(f"(perf report -i {data})")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("figures", nargs="+", choices=sorted(FIGURES))
    ap.add_argument("--build", default=os.path.join(run.ROOT, "build/release"))
    ap.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    ap.add_argument("--seconds", type=int, default=10, help="how long perf records each figure")
    ap.add_argument("--freq", type=int, default=999, help="perf's samples per second")
    ap.add_argument("--orders", type=int, default=0,
                    help="first grow the order service to this many orders, as `make bench"
                         " SCALE=1` does (through the API, applied to the invoices)")
    ap.add_argument("--call-graph", default="fp", choices=("fp", "dwarf"),
                    help="dwarf: callers through libraries built without frame pointers")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("profile: run as root (the private RabbitMQ node runs as user rabbitmq)")
    for tool in ("perf", "wrk"):
        if shutil.which(tool) is None:
            sys.exit(f"profile: {tool} is missing (Debian: linux-perf, wrk)")
    signal.signal(signal.SIGTERM, run.on_signal)
    signal.signal(signal.SIGINT, run.on_signal)
    bench = run.Bench(argparse.Namespace(build=args.build, quick=True, db=args.db, scale=False,
                                         keep=True, scale_sizes=[]))
    try:
        bench.start_broker()
        if args.db == "postgres":
            bench.start_postgres()
        bench.start_all()
        bench.seed()
        if args.orders:
            bench.scale_next, bench.scale_seed_s = 0, 0.0
            bench.grow_to(args.orders, {})
        bench.drain()
        print(f"profile: load {os.getloadavg()[0]:.2f} at the start (idle is < 0.3)")
        for figure in args.figures:
            profile(bench, figure, args.seconds, args.freq, args.call_graph)
    except (run.Stopped, KeyboardInterrupt) as e:
        sys.exit(f"profile: stopped ({e})")
    finally:
        bench.cleanup()


if __name__ == "__main__":
    main()

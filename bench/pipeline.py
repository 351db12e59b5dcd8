#!/usr/bin/python3
"""The event pipeline figures of `make bench` (bench/run.py runs this).

Orders go in through `POST /order-service/orders` and come out on
`GET /invoice-service/invoices`; in between are the order service's outbox
and relay, RabbitMQ, and the invoice service's consumer and projection.

1. Sustained rate. Orders are posted at a steady offered rate, in arrays
   (one transaction each) sized for about REQUESTS_PER_S requests a second,
   at most --max-batch orders, so that the HTTP write path is not what
   limits (single-order POSTs have their own figure), from --connections
   keep-alive connections paced by one schedule. Each step lasts --step-s
   seconds; the rate grows by --factor per step until the pipeline falls
   behind (or, when --start-rate is already too much, shrinks until it
   keeps up, down to --min-rate), then --bisect steps narrow the gap. A step "kept up" when the
   poster achieved at least 95% of the offered rate and, at some moment in
   the last third of the step (sampled every SAMPLE_S), less than a quarter
   second of events (plus two requests' worth) was posted but not yet
   applied to the read model: a pipeline that is really behind only falls
   further behind, while one stall of the disk late in a step is forgiven.
   A step with more than ABORT_BACKLOG_S of events in flight is cut short,
   so that an overload leaves a bounded backlog behind.
   Applied events are counted from the invoice service's /metrics
   (events_total{type="order.created"}), which count an event once its
   projection transaction has committed, i.e. once it is visible to GET.
   The fastest rate that kept up is run --repeats times in all; the
   sustained figure is the median of the applied rates measured over those
   steps (so it is what went through, never just what was offered). The
   stages that fell behind in the first step that did not keep up are
   named from the backlogs at its end: the poster (http-write-path),
   posted but not yet published (outbox-relay; the relay counts a batch
   once it is marked in the outbox), published but not applied
   (broker-to-projection).
2. Freshness. At half the sustained rate as background load (a separate
   process), a probe posts one order at a time for a user id of its own and
   polls `GET /invoice-service/invoices?user_id=..&month=..&year=..` every
   --poll-ms until the order is on the invoice. Freshness is the time from
   receiving the 201 to receiving the first answer that shows the order (an
   upper bound, by at most one poll interval and round trip).

Prints progress on stderr and one JSON object on stdout.
"""
import argparse
import http.client
import json
import math
import multiprocessing
import statistics
import sys
import threading
import time
import urllib.parse

KEPT_UP_POST_SHARE = 0.95    # achieved / offered post rate
KEPT_UP_BACKLOG_S = 0.25     # seconds of events allowed in flight at step end
SAMPLE_S = 0.25              # metrics sampling period during a step
ABORT_BACKLOG_S = 2.0        # a step with more in flight than this stops
REQUESTS_PER_S = 100         # pacing of the poster: rate / batch
PROBE_TIMEOUT_S = 10.0
FRESHNESS_BUCKETS_MS = [5, 10, 25, 50, 100, 250, 500, 1000]
REQUEST_TIMEOUT_S = 30.0
LOAD_USER_BASE = 2_000_000   # user ids of the background orders
LOAD_USERS = 1000
PROBE_USER_BASE = 3_000_000  # one fresh user id per freshness probe


def log(msg):
    print(f"pipeline: {msg}", file=sys.stderr, flush=True)


class Client:
    """One keep-alive HTTP/1.1 connection that reconnects when dropped."""

    def __init__(self, base_url):
        u = urllib.parse.urlsplit(base_url)
        self.host, self.port = u.hostname, u.port
        self.conn = None

    def request(self, method, path, body=None):
        headers = {"Content-Type": "application/json"} if body is not None else {}
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port,
                                                       timeout=REQUEST_TIMEOUT_S)
            try:
                self.conn.request(method, path, body=body, headers=headers)
                resp = self.conn.getresponse()
                data = resp.read()
                return resp.status, data
            except (OSError, http.client.HTTPException):
                self.conn.close()
                self.conn = None
                if attempt == 1:
                    raise
        raise AssertionError("unreachable")

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def scrape(client):
    """Prometheus text -> {series: value} for the lines we read."""
    status, data = client.request("GET", "/metrics")
    if status != 200:
        raise RuntimeError(f"/metrics answered {status}")
    out = {}
    for line in data.decode().splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        try:
            out[name] = float(value)
        except ValueError:
            pass
    return out


class Counters:
    """Published (order service) and applied (invoice service) order events."""

    def __init__(self, order_url, invoice_url):
        self.order = Client(order_url)
        self.invoice = Client(invoice_url)

    def read(self):
        om = scrape(self.order)
        im = scrape(self.invoice)
        applied = sum(v for k, v in im.items()
                      if k.startswith("events_total{") and 'type="order.created"' in k)
        return {"t": time.monotonic(),
                "published": om.get("events_published_total", 0.0),
                "pending": om.get("outbox_pending", 0.0),
                "applied": applied}


def batch_bodies(batch, variants=16):
    bodies = []
    for v in range(variants):
        orders = [{"user_id": LOAD_USER_BASE + (v * batch + i) % LOAD_USERS,
                   "amount": 12.34, "description": "pipeline order"} for i in range(batch)]
        bodies.append(json.dumps(orders, separators=(",", ":")).encode())
    return bodies


def batch_for(rate, max_batch):
    """Orders per request: about REQUESTS_PER_S requests a second."""
    return int(min(max_batch, max(1, round(rate / REQUESTS_PER_S))))


def post_load(order_url, rate, seconds, batch, connections, stop=None):
    """Posts `rate` orders/s for `seconds`, `batch` per request (or until
    the event `stop` is set); returns what was achieved."""
    bodies = batch_bodies(batch)
    interval = batch / rate
    lock = threading.Lock()
    state = {"next": 0, "orders": 0, "requests": 0, "errors": 0, "late": 0.0}
    start = time.monotonic() + 0.05
    end = start + seconds

    def worker():
        client = Client(order_url)
        try:
            while True:
                with lock:
                    k = state["next"]
                    state["next"] += 1
                due = start + k * interval
                if due >= end or (stop is not None and stop.is_set()):
                    return
                now = time.monotonic()
                if due > now:
                    time.sleep(due - now)
                try:
                    status, _ = client.request("POST", "/order-service/orders",
                                               bodies[k % len(bodies)])
                except (OSError, http.client.HTTPException):
                    status = 0
                with lock:
                    state["requests"] += 1
                    if status == 201:
                        state["orders"] += batch
                    else:
                        state["errors"] += 1
        finally:
            client.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Requests are due over [start, end): the schedule's length is the
    # denominator unless the last answers came later than that.
    elapsed = time.monotonic() - start
    if stop is None or not stop.is_set():
        elapsed = max(elapsed, seconds)
    return {"offered_per_s": rate, "orders": state["orders"], "requests": state["requests"],
            "errors": state["errors"], "seconds": elapsed,
            "posted_per_s": state["orders"] / elapsed}


def _load_process(order_url, rate, seconds, batch, connections, queue):
    queue.put(post_load(order_url, rate, seconds, batch, connections))


class Pipeline:
    def __init__(self, args):
        self.args = args
        self.counters = Counters(args.order_url, args.invoice_url)
        self.base = self.counters.read()
        self.posted = 0  # orders posted by this driver (201) since base

    def backlog(self, c):
        return {"unapplied": self.posted - (c["applied"] - self.base["applied"]),
                "unpublished": self.posted - (c["published"] - self.base["published"]),
                "published_unapplied": (c["published"] - self.base["published"])
                - (c["applied"] - self.base["applied"])}

    def drain(self):
        """Waits (bounded) until every order posted so far is applied."""
        deadline = time.monotonic() + self.args.drain_timeout
        while True:
            c = self.counters.read()
            left = self.backlog(c)["unapplied"]
            if left <= 0:
                return True
            if time.monotonic() > deadline:
                log(f"not drained after {self.args.drain_timeout}s: {left:.0f} events left")
                return False
            time.sleep(0.1)

    def step(self, rate):
        a = self.args
        batch = batch_for(rate, a.max_batch)
        result = {}
        abort = threading.Event()
        poster = threading.Thread(
            target=lambda: result.update(
                post_load(a.order_url, rate, a.step_s, batch, a.connections, abort)),
            daemon=True)
        c0 = self.counters.read()
        poster.start()
        # In-flight events (posted by the schedule, not yet applied) sampled
        # over the last third of the step.
        # A step far behind is cut short, so that the backlog it leaves
        # (and the time to drain it) stays bounded.
        late = []
        while poster.is_alive():
            poster.join(SAMPLE_S)
            c = self.counters.read()
            share = (c["t"] - c0["t"]) / a.step_s
            in_flight = (self.posted + rate * a.step_s * min(share, 1.0)
                         - (c["applied"] - self.base["applied"]))
            if poster.is_alive() and share >= 2 / 3:
                late.append(in_flight)
            if in_flight > ABORT_BACKLOG_S * rate + 2 * batch:
                abort.set()
        c1 = self.counters.read()
        self.posted += result["orders"]
        applied_rate = (c1["applied"] - c0["applied"]) / (c1["t"] - c0["t"])
        b = self.backlog(c1)
        late.append(b["unapplied"])
        allowed = KEPT_UP_BACKLOG_S * rate + 2 * batch
        kept_up = (result["posted_per_s"] >= KEPT_UP_POST_SHARE * rate
                   and min(late) <= allowed and not abort.is_set())
        step = {"offered_per_s": round(rate, 1), "batch": batch,
                "posted_per_s": round(result["posted_per_s"], 1),
                "applied_per_s": round(applied_rate, 1), "post_errors": result["errors"],
                "in_flight_late_min": round(min(late)), "in_flight_allowed": round(allowed),
                "unapplied_at_end": b["unapplied"], "unpublished_at_end": b["unpublished"],
                "kept_up": kept_up, "cut_short": abort.is_set()}
        if not kept_up:
            step["behind"] = self.stage_behind(rate, result, b, allowed)
        log(f"offered {rate:.0f}/s ({batch}/request): posted {result['posted_per_s']:.0f}/s, "
            f"applied {applied_rate:.0f}/s, in flight late in the step >= {min(late):.0f} "
            f"(allowed {allowed:.0f}), at end {b['unapplied']:.0f} "
            f"(unpublished {b['unpublished']:.0f}) -> "
            f"{'kept up' if kept_up else 'behind: ' + step['behind']}"
            f"{' (cut short)' if abort.is_set() else ''}")
        return step

    @staticmethod
    def stage_behind(rate, posted, b, allowed):
        """The stages that fell behind in a step, '+'-joined, slowest first.
        (The relay counts a batch as published after marking it in the
        outbox, so a relay that waits to mark shows as unpublished.)"""
        stages = []
        if posted["posted_per_s"] < KEPT_UP_POST_SHARE * rate:
            stages.append("http-write-path")
        lag = sorted([(b["unpublished"], "outbox-relay"),
                      (b["published_unapplied"], "broker-to-projection")], reverse=True)
        stages += [name for n, name in lag if n > allowed]
        return "+".join(stages) or "http-write-path"

    def run_step(self, rate, steps):
        self.drain()
        s = self.step(rate)
        steps.append(s)
        return s

    def sustained(self):
        """Rate search, then repeats at the fastest rate that kept up."""
        a = self.args
        steps = []
        best = None    # fastest step that kept up
        worst = None   # slowest step that fell behind
        rate = a.start_rate
        while rate <= a.max_rate:
            s = self.run_step(rate, steps)
            if not s["kept_up"]:
                worst = s
                break
            best = s
            rate *= a.factor
        # Behind at the start rate already: come down until a rate keeps up.
        rate = a.start_rate / a.factor
        while best is None and rate >= a.min_rate:
            s = self.run_step(rate, steps)
            if s["kept_up"]:
                best = s
            else:
                worst = s
            rate /= a.factor
        for _ in range(a.bisect if best and worst else 0):
            s = self.run_step((best["offered_per_s"] + worst["offered_per_s"]) / 2, steps)
            if s["kept_up"]:
                best = s
            elif s["offered_per_s"] < worst["offered_per_s"]:
                worst = s
        runs = [best] if best else []
        for _ in range(a.repeats - 1 if best else 0):
            runs.append(self.run_step(best["offered_per_s"], steps))
        self.drain()
        behind = [s for s in steps if not s["kept_up"]]
        return {
            "sustained_per_s": statistics.median(r["applied_per_s"] for r in runs)
            if runs else None,
            "sustained_offered_per_s": best["offered_per_s"] if best else None,
            "sustained_runs": len(runs),
            "sustained_runs_kept_up": sum(1 for r in runs if r["kept_up"]),
            "first_behind_offered_per_s": worst["offered_per_s"] if worst else None,
            "bottleneck": worst["behind"] if worst else "not reached (max rate)",
            "overloaded_applied_per_s": max(s["applied_per_s"] for s in behind)
            if behind else None,
            "steps": steps,
        }

    def freshness(self, rate):
        a = self.args
        client = Client(a.order_url)
        reader = Client(a.invoice_url)
        queue = multiprocessing.Queue()
        load = None
        if rate and rate > 0:
            load = multiprocessing.Process(
                target=_load_process,
                args=(a.order_url, rate, a.freshness_s + 1.0, batch_for(rate, a.max_batch),
                      a.connections, queue),
                daemon=True)
            load.start()
            time.sleep(1.0)  # let the background load settle
        samples, timeouts, probe = [], 0, 0
        end = time.monotonic() + a.freshness_s
        try:
            while time.monotonic() < end:
                probe += 1
                user = PROBE_USER_BASE + probe
                body = json.dumps({"user_id": user, "amount": 1.23,
                                   "description": "freshness probe"}).encode()
                status, data = client.request("POST", "/order-service/orders", body)
                t201 = time.monotonic()
                if status != 201:
                    raise RuntimeError(f"probe POST answered {status}: {data[:200]!r}")
                self.posted += 1
                order = json.loads(data)
                year, month = int(order["created_at"][0:4]), int(order["created_at"][5:7])
                path = f"/invoice-service/invoices?user_id={user}&month={month}&year={year}"
                needle = f'"order_id":{order["id"]}'.encode()
                while True:
                    status, data = reader.request("GET", path)
                    now = time.monotonic()
                    if status == 200 and needle in data.replace(b" ", b""):
                        samples.append((now - t201) * 1000.0)
                        break
                    if now - t201 > PROBE_TIMEOUT_S:
                        timeouts += 1
                        break
                    time.sleep(a.poll_ms / 1000.0)
                time.sleep(a.probe_gap_ms / 1000.0)
        finally:
            client.close()
            reader.close()
        background = None
        if load is not None:
            load.join(a.freshness_s + 30)
            if load.is_alive():
                load.terminate()
            try:
                background = queue.get(timeout=5)
                self.posted += background["orders"]
            except Exception:  # noqa: BLE001 - the figure is still usable
                background = None
        self.drain()
        samples.sort()

        def pct(p):  # nearest rank
            if not samples:
                return None
            return round(samples[max(0, math.ceil(p / 100 * len(samples)) - 1)], 2)

        histogram = {}
        for upper in FRESHNESS_BUCKETS_MS + [math.inf]:
            label = f"<={upper:g}" if upper != math.inf else ">" + str(FRESHNESS_BUCKETS_MS[-1])
            histogram[label] = sum(1 for x in samples if x <= upper) - sum(histogram.values())
        log(f"freshness at {rate or 0:.0f}/s: {len(samples)} probes, p50 {pct(50)} ms, "
            f"p99 {pct(99)} ms, {timeouts} timeouts")
        return {"load_offered_per_s": rate,
                "load_posted_per_s": round(background["posted_per_s"], 1) if background else None,
                "probes": len(samples), "timeouts": timeouts,
                "p50_ms": pct(50), "p99_ms": pct(99),
                "max_ms": round(samples[-1], 2) if samples else None,
                "histogram_ms": histogram}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--order-url", required=True)
    p.add_argument("--invoice-url", required=True)
    p.add_argument("--max-batch", type=int, default=100)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--start-rate", type=float, default=500)
    p.add_argument("--max-rate", type=float, default=100000)
    p.add_argument("--min-rate", type=float, default=50)
    p.add_argument("--factor", type=float, default=1.5)
    p.add_argument("--bisect", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--step-s", type=float, default=6)
    p.add_argument("--warmup-s", type=float, default=2)
    p.add_argument("--freshness-s", type=float, default=15)
    p.add_argument("--poll-ms", type=float, default=1.0)
    p.add_argument("--probe-gap-ms", type=float, default=20.0)
    p.add_argument("--drain-timeout", type=float, default=60)
    args = p.parse_args()

    pipe = Pipeline(args)
    log(f"warm-up: {args.warmup_s:.0f}s at {args.start_rate:.0f}/s")
    r = post_load(args.order_url, args.start_rate, args.warmup_s,
                  batch_for(args.start_rate, args.max_batch), args.connections)
    pipe.posted += r["orders"]
    pipe.drain()
    result = pipe.sustained()
    half = result["sustained_per_s"] / 2 if result["sustained_per_s"] else None
    result["freshness"] = pipe.freshness(half)
    # One order at a time on an otherwise idle pipeline: what a lone client
    # waits between its 201 and the invoice.
    result["freshness_idle"] = pipe.freshness(0)
    result["max_batch"] = args.max_batch
    result["requests_per_s"] = REQUESTS_PER_S
    result["connections"] = args.connections
    print(json.dumps(result))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""A small, bounded load generator for the cluster's own test hosts.

A few client threads send a mix of requests through the load balancer (page views, logged-in
pages, static assets, uploads and writes) and record every outcome, so a test can assert that
an operation (a rolling upgrade, a rollback, a maintenance run) caused no failed request.
Every run is bounded in time and in request count, and stops by itself.

    loadgen.py https://LB_ADDRESS --seconds 30 --clients 4
"""

from __future__ import annotations

import argparse
import io
import logging
import random
import statistics
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import requests
import urllib3

LOG = logging.getLogger("loadgen")
# The local cluster's certificate is self-signed; the load test checks availability, not TLS.
urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)


@dataclass
class Outcome:
    """One request: when it started, what it was, how long it took, and whether it failed."""

    started: float
    kind: str
    seconds: float
    status: int  # 0 for a socket-level error
    error: str = ""

    @property
    def failed(self) -> bool:
        return self.status == 0 or self.status >= 500


@dataclass
class Summary:
    """Counts and latency percentiles of a set of outcomes."""

    sent: int
    failed: int
    p50_ms: float
    p99_ms: float
    errors: list[str] = field(default_factory=list)

    def line(self, label: str) -> str:
        return (f"{label}: {self.sent} requests, {self.failed} failed, "
                f"p50 {self.p50_ms:.0f} ms, p99 {self.p99_ms:.0f} ms")


def summarize(outcomes: list[Outcome]) -> Summary:
    """Summarise outcomes; percentiles are over all requests, failed ones included."""
    times = sorted(o.seconds * 1000 for o in outcomes)
    if len(times) >= 2:
        cuts = statistics.quantiles(times, n=100, method="inclusive")
        p50, p99 = cuts[49], cuts[98]
    else:
        p50 = p99 = times[0] if times else 0.0
    failures = [o for o in outcomes if o.failed]
    errors = [f"{o.kind} -> {o.status or o.error}" for o in failures[:20]]
    return Summary(len(outcomes), len(failures), p50, p99, errors)


class Client:
    """One simulated user: logs in once, then mixes reads, writes, statics and uploads."""

    def __init__(self, base_url: str, username: str, password: str, paths: dict[str, str]) -> None:
        self.base = base_url.rstrip("/")
        self.session = requests.Session()
        self.session.verify = False
        # Environment CA bundles and proxies would override verify=False; traffic stays direct.
        self.session.trust_env = False
        self.username, self.password = username, password
        self.paths = paths
        self.static_url: str | None = None

    def _csrf(self) -> str:
        self.session.get(self.base + self.paths["login"], timeout=10)
        return self.session.cookies.get("csrftoken", "")

    def login(self) -> None:
        """Log in through the site's login form (sessions must then survive any host switch)."""
        token = self._csrf()
        resp = self.session.post(self.base + self.paths["login"], timeout=10, allow_redirects=False,
                                 data={"username": self.username, "password": self.password,
                                       "csrfmiddlewaretoken": token},
                                 headers={"Referer": self.base + self.paths["login"]})
        if resp.status_code not in (200, 302):
            raise RuntimeError(f"login failed: HTTP {resp.status_code}")

    def actions(self) -> list[tuple[str, Callable[[], requests.Response]]]:
        """The request mix, as (kind, call) pairs; one is picked at random per request."""
        headers = {"Referer": self.base + "/"}

        def write() -> requests.Response:
            return self.session.post(self.base + self.paths["write"], timeout=30, headers=headers,
                                     data={"text": f"load {uuid.uuid4().hex[:8]}",
                                           "csrfmiddlewaretoken": self.session.cookies.get("csrftoken", "")})

        def upload() -> requests.Response:
            body = io.BytesIO(uuid.uuid4().bytes * 64)
            return self.session.post(self.base + self.paths["upload"], timeout=30, headers=headers,
                                     files={"file": ("load.bin", body)},
                                     data={"csrfmiddlewaretoken": self.session.cookies.get("csrftoken", "")})

        return [
            ("page", lambda: self.session.get(self.base + self.paths["page"], timeout=30)),
            ("page", lambda: self.session.get(self.base + self.paths["page"], timeout=30)),
            ("private", lambda: self.session.get(self.base + self.paths["private"], timeout=30)),
            ("static", lambda: self.session.get(self.base + self.paths["static"], timeout=30)),
            ("write", write),
            ("upload", upload),
        ]


@dataclass
class LoadRun:
    """Run clients in background threads until stopped, or until the time or count bound."""

    base_url: str
    username: str
    password: str
    paths: dict[str, str]
    clients: int = 4
    max_seconds: float = 600
    max_requests: int = 100_000
    pause: float = 0.02
    outcomes: list[Outcome] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def _work(self, seed: int) -> None:
        rng = random.Random(seed)
        client = Client(self.base_url, self.username, self.password, self.paths)
        client.login()
        actions = client.actions()
        deadline = time.monotonic() + self.max_seconds
        while not self._stop.is_set() and time.monotonic() < deadline:
            with self._lock:
                if len(self.outcomes) >= self.max_requests:
                    return
            kind, call = rng.choice(actions)
            t0 = time.monotonic()
            try:
                status, error = call().status_code, ""
            except requests.RequestException as exc:
                status, error = 0, type(exc).__name__
            with self._lock:
                self.outcomes.append(Outcome(t0, kind, time.monotonic() - t0, status, error))
            time.sleep(self.pause)

    def start(self) -> LoadRun:
        for n in range(self.clients):
            thread = threading.Thread(target=self._work, args=(n,), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def between(self, start: float, end: float) -> list[Outcome]:
        """Outcomes of requests started within [start, end) (time.monotonic() values)."""
        with self._lock:
            return [o for o in self.outcomes if start <= o.started < end]


# The example project's pages (examples/exampleapp): the guestbook (GET, and POST to write),
# a page that needs the session, a static file, and the upload endpoint.
DEFAULT_PATHS = {
    "login": "/accounts/login/",
    "page": "/",
    "private": "/me",
    "static": "/static/notes/site.css",
    "write": "/",
    "upload": "/upload",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("base_url")
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--max-requests", type=int, default=20_000)
    parser.add_argument("--user", default="demo")
    parser.add_argument("--password", default="demo")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="loadgen: %(message)s")
    if args.seconds > 3600:
        parser.error("--seconds is capped at 3600")
    run = LoadRun(args.base_url, args.user, args.password, DEFAULT_PATHS, clients=args.clients,
                  max_seconds=args.seconds, max_requests=args.max_requests).start()
    time.sleep(args.seconds)
    run.stop()
    summary = summarize(run.outcomes)
    print(summary.line("load"))
    for error in summary.errors:
        print("  " + error)


if __name__ == "__main__":
    main()

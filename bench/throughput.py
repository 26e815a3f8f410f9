#!/usr/bin/env python3
"""Benchmark: requests per second and latency through the load balancer of a running cluster.

Runs the same mixed load as the rolling-upgrade tests (page views, logged-in pages, static
files, uploads, writes) for a fixed time against a fleet brought up by `make cluster`, and
compares the result with the targets below. Targets live here, not in the test suite: they
depend on the machine, and a slow machine is not a broken cluster.

    .venv/bin/python bench/throughput.py [inventory dir] [--seconds 30] [--clients 8]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
from loadgen import DEFAULT_PATHS, LoadRun, summarize  # noqa: E402
from smoke import fleet_facts  # noqa: E402

import yaml  # noqa: E402

# Targets for the local six-host fleet on a 2-core machine, 8 clients.
TARGET_REQUESTS_PER_SECOND = 50
TARGET_P99_MS = 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inventory", nargs="?", default=str(ROOT / "inventories" / "local"))
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    if not 1 <= args.seconds <= 600:
        parser.error("--seconds must be between 1 and 600")
    inventory = Path(args.inventory)
    address, _ = fleet_facts(inventory)
    secrets = yaml.safe_load((ROOT / "inventories/local/group_vars/all/vault.yml").read_text())
    run = LoadRun(f"https://{address}", "demo", secrets["vault_exampleapp_demo_password"], DEFAULT_PATHS,
                  clients=args.clients, max_seconds=args.seconds, max_requests=500_000, pause=0).start()
    started = time.monotonic()
    time.sleep(args.seconds)
    run.stop()
    elapsed = time.monotonic() - started
    summary = summarize(run.outcomes)
    result = {
        "clients": args.clients, "seconds": round(elapsed, 1), "requests": summary.sent, "failed": summary.failed,
        "requests_per_second": round(summary.sent / elapsed, 1), "p50_ms": round(summary.p50_ms),
        "p99_ms": round(summary.p99_ms),
    }
    print(json.dumps(result, indent=2))
    met = result["requests_per_second"] >= TARGET_REQUESTS_PER_SECOND and result["p99_ms"] <= TARGET_P99_MS
    print(f"targets: >= {TARGET_REQUESTS_PER_SECOND} req/s, p99 <= {TARGET_P99_MS} ms: {'met' if met else 'MISSED'}")
    return 0 if met and summary.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

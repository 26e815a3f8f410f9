#!/usr/bin/env python3
"""Run the whole test suite in stages and report how long each took.

Stages: lint (yamllint, ansible-lint), the example project's own tests, one Molecule scenario per
directory under molecule/, then the whole-cluster pytest suite under tests/ (which brings up its own fleet). Any failed
stage makes the run fail; a pytest run that collects no test counts as failed.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

LOG = logging.getLogger("tests")
ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def scenarios() -> list[str]:
    """Every Molecule scenario: a directory under molecule/ holding a molecule.yml."""
    return sorted(p.parent.name for p in (ROOT / "molecule").glob("*/molecule.yml"))


Stage = tuple[str, list[str]]

# Upper bounds per stage, in seconds, far above what a stage takes on a 2-core machine (see the
# README's timings). They exist so that a hung stage fails the run with a clear message instead of
# holding CI until its own limit; they are not performance targets (those live in bench/).
LIMITS = {"lint": 900, "example": 600, "molecule": 1800, "cluster": 3000}
TIMED_OUT = 124  # the exit status timeout(1) uses


def call(name: str, argv: list[str], **kwargs) -> int:
    """Run one stage's command in its own process group; stop the whole group past the stage's limit."""
    limit = LIMITS[name.split(":", 1)[0]]
    proc = subprocess.Popen(argv, cwd=ROOT, start_new_session=True, **kwargs)
    try:
        return proc.wait(timeout=limit)
    except subprocess.TimeoutExpired:
        LOG.error("!!! %s: still running after %d s; stopping it (its test hosts may be left behind)", name, limit)
        return_code = TIMED_OUT
    except KeyboardInterrupt:
        return_code = 130
    # The group, not just the child: a shell stage's daemons and pipes would outlive it otherwise.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    if return_code == 130:
        raise KeyboardInterrupt
    return return_code


def stages(only: str | None, scenario: str | None) -> list[tuple[str, list[str]]]:
    """The commands to run, in order, as (stage name, argv)."""
    out: list[Stage] = []
    if only in (None, "lint"):
        out.append(("lint: yamllint", [str(BIN / "yamllint"), "--strict", "."]))
        out.append(("lint: ansible-lint", [str(BIN / "ansible-lint"), "--offline", "--profile", "production"]))
    if only in (None, "example"):
        # The example project's own suite, against a local PostgreSQL that the script prepares.
        script = f'set -e; vars=$(bash tools/example_db.sh); cd examples/exampleapp; env $vars "{BIN}/pytest"'
        out.append(("example: pytest examples/exampleapp", ["bash", "-c", script]))
    if only in (None, "molecule"):
        for name in [scenario] if scenario else scenarios():
            out.append((f"molecule: {name}", [str(BIN / "molecule"), "test", "-s", name]))
    if only in (None, "cluster"):
        out.append(("cluster: pytest tests/", [str(BIN / "pytest"), "-p", "no:cacheprovider", "tests"]))
    return out


def run_logged(stage: Stage, env: dict[str, str]) -> tuple[str, float, int]:
    """Run one stage with its output in .cache/test-logs/; print the log's tail if it fails."""
    name, argv = stage
    logs = ROOT / ".cache" / "test-logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / (name.replace(": ", "-").replace("/", "_").replace(" ", "_") + ".log")
    t0 = time.monotonic()
    with log_path.open("w") as log:
        rc = call(name, argv, env=env, stdout=log, stderr=subprocess.STDOUT)
    seconds = time.monotonic() - t0
    if rc != 0:
        tail = log_path.read_text(errors="replace").splitlines()[-150:]
        print(f"---- last lines of {log_path.relative_to(ROOT)} ----\n" + "\n".join(tail), flush=True)
    LOG.info("<== %s: %s in %.0f s (log: %s)", name, "ok" if rc == 0 else f"FAILED (exit {rc})", seconds,
             log_path.relative_to(ROOT))
    return name, seconds, rc


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", choices=("lint", "example", "molecule", "cluster"), help="run one kind of stage")
    parser.add_argument("--scenario", help="with --only molecule: run this scenario only")
    parser.add_argument("--keep-going", action="store_true", help="run later stages after a failure")
    parser.add_argument("--jobs", type=int, default=int(os.environ.get("MOLECULE_JOBS", "2")),
                        help="Molecule scenarios run at once (each has its own hosts; default %(default)s)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
               ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), PY_COLORS="0", ANSIBLE_FORCE_COLOR="0")
    results: list[tuple[str, float, int]] = []
    started = time.monotonic()
    plan = stages(args.only, args.scenario)
    # Scenarios wait mostly on their hosts (apt, systemd, SSH), so a few run side by side, each
    # with its output in a log file; the other stages run one after the other in the foreground.
    molecule = [stage for stage in plan if stage[0].startswith("molecule: ")]
    for name, argv in plan:
        if results and any(rc != 0 for _, _, rc in results) and not args.keep_going:
            break
        if name.startswith("molecule: "):
            if molecule:
                LOG.info("==> %d Molecule scenarios, %d at a time", len(molecule), args.jobs)
                with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
                    results.extend(pool.map(lambda st: run_logged(st, env), molecule))
                molecule = []
            continue
        LOG.info("==> %s", name)
        t0 = time.monotonic()
        rc = call(name, argv, env=env)
        results.append((name, time.monotonic() - t0, rc))
        LOG.info("<== %s: %s in %.0f s", name, "ok" if rc == 0 else f"FAILED (exit {rc})", results[-1][1])
    print("\nstage timings:")
    for name, seconds, rc in results:
        print(f"  {'ok    ' if rc == 0 else 'FAILED'} {seconds:7.0f} s  {name}")
    passed = sum(1 for _, _, rc in results if rc == 0)
    failed = len(results) - passed
    print(f"  total {time.monotonic() - started:.0f} s")
    print(f"stages: {passed} passed, {failed} failed")
    return 0 if failed == 0 and results else 1


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Run the whole test suite in stages and report how long each took.

Stages: lint (yamllint, ansible-lint), the example project's own tests, one Molecule scenario per
directory under molecule/, then the whole-cluster pytest suite under tests/ (which brings up its own fleet). Any failed
stage makes the run fail; a pytest run that collects no test counts as failed.
"""

from __future__ import annotations

import argparse
import logging
import os
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


def stages(only: str | None, scenario: str | None) -> list[tuple[str, list[str]]]:
    """The commands to run, in order, as (stage name, argv)."""
    out: list[tuple[str, list[str]]] = []
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", choices=("lint", "example", "molecule", "cluster"), help="run one kind of stage")
    parser.add_argument("--scenario", help="with --only molecule: run this scenario only")
    parser.add_argument("--keep-going", action="store_true", help="run later stages after a failure")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
               ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), PY_COLORS="0", ANSIBLE_FORCE_COLOR="0")
    results: list[tuple[str, float, int]] = []
    started = time.monotonic()
    for name, argv in stages(args.only, args.scenario):
        LOG.info("==> %s", name)
        t0 = time.monotonic()
        rc = subprocess.call(argv, cwd=ROOT, env=env)
        results.append((name, time.monotonic() - t0, rc))
        LOG.info("<== %s: %s in %.0f s", name, "ok" if rc == 0 else f"FAILED (exit {rc})", results[-1][1])
        if rc != 0 and not args.keep_going:
            break
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

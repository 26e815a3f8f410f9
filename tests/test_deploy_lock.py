"""A rolling playbook that stops before it changes a host: when does it release the deploy lock?

The lock and the release record live in a temporary directory of this machine (the inventory's
hosts are local), so no fleet is needed. The play takes the lock like the rolling playbooks, then
fails inside a block whose rescue is playbooks/tasks/plan_failed.yml, as theirs is. The lock may go
only when this run took a free lock and the release record has no upgrade under way.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from conftest import ROOT, run_playbook

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="deploy_lock.yml makes its directory root's")

TASKS = ROOT / "playbooks" / "tasks"
LEFT_LOCK = "holder=alice@ops\noperation=upgrade\nsince=2024-05-01T10:00:00Z\n"
CLEAN = {"current": "r2", "previous": "r1"}
UPGRADING = {"current": "r2", "previous": "r1", "upgrading_to": "r3"}


@pytest.fixture()
def stop_early(tmp_path: Path):
    """Run a play that takes the lock and fails in its checks; return (lock dir, run)."""
    state = tmp_path / "state"
    state.mkdir()
    local = f"ansible_connection: local, ansible_python_interpreter: {sys.executable}"
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(f"app:\n  hosts:\n    app1: {{{local}}}\ndb:\n  hosts:\n    db1: {{{local}}}\n")
    playbook = tmp_path / "stop.yml"
    playbook.write_text(f"""
- hosts: app
  gather_facts: false
  tasks:
    - ansible.builtin.include_tasks: {TASKS / 'deploy_lock.yml'}
    - block:
        - ansible.builtin.include_tasks: {TASKS / 'release_record.yml'}
          vars:
            release_record_action: read
        - name: Build the release
          ansible.builtin.fail:
            msg: the build failed
      rescue:
        - ansible.builtin.include_tasks: {TASKS / 'plan_failed.yml'}
""")

    def run(*args: str) -> tuple[int, str]:
        proc = run_playbook(inventory, str(playbook), "-e", f"deploy_lock_dir={state}", *args)
        return proc.returncode, " ".join(proc.stdout.split())

    return state, run


@pytest.mark.parametrize("record", [None, CLEAN], ids=["first deploy", "clean record"])
def test_a_run_on_a_clean_cluster_releases_the_lock(stop_early, record) -> None:
    state, run = stop_early
    if record is not None:
        (state / "release.json").write_text(json.dumps(record))
    rc, output = run("-e", "deploy_operation=upgrade")
    assert rc != 0
    assert "Build the release failed on app1: the build failed. Nothing was changed and the deploy lock is released." \
        in output, output[-3000:]
    assert not (state / "deploy.lock").exists()


@pytest.mark.parametrize("operation, go_on", [
    ("upgrade", "re-run playbooks/rolling_upgrade.yml -e deploy_lock_break=true, or run playbooks/rollback.yml"),
    ("rollback", "re-run playbooks/rollback.yml -e deploy_lock_break=true (it brings every app host"),
])
def test_a_run_that_broke_a_lock_keeps_it(stop_early, operation: str, go_on: str) -> None:
    state, run = stop_early
    (state / "release.json").write_text(json.dumps(CLEAN))
    (state / "deploy.lock").write_text(LEFT_LOCK)
    rc, output = run("-e", f"deploy_operation={operation}", "-e", "deploy_lock_break=true")
    assert rc != 0
    assert "Nothing was changed" not in output
    assert ("the cluster may be half-done: this run took over the deploy lock of a run that did not finish "
            "(holder=alice@ops, operation=upgrade, since=2024-05-01T10:00:00Z).") in output, output[-3000:]
    assert "The deploy lock stays taken." in output
    assert go_on in output
    # The lock is this run's now: the next one needs deploy_lock_break as well.
    assert f"operation={operation}\n" in (state / "deploy.lock").read_text()


def test_a_run_that_finds_an_unfinished_upgrade_keeps_the_lock(stop_early) -> None:
    state, run = stop_early
    (state / "release.json").write_text(json.dumps(UPGRADING))
    rc, output = run("-e", "deploy_operation=upgrade")
    assert rc != 0
    assert "the cluster may be half-done: the release record notes an upgrade to r3 that did not finish." \
        in output, output[-3000:]
    assert "took over" not in output
    assert (state / "deploy.lock").exists()


def test_a_run_that_cannot_read_the_record_keeps_the_lock(stop_early) -> None:
    state, run = stop_early
    (state / "release.json").write_text("{not json")
    rc, output = run("-e", "deploy_operation=upgrade")
    assert rc != 0
    assert f"its release record ({state}/release.json on db1) could not be read" in output, output[-3000:]
    assert (state / "deploy.lock").exists()

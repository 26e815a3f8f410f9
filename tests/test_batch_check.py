"""The rolling playbooks' batch-size check, on its own: no hosts are contacted.

Ansible runs `serial: 0` as every host at once, and a batch as large as the app group drains
them all; both must be refused before a rolling operation takes its lock. So must a batch that
is not a whole number or percentage, which Ansible would fail on only after the lock is taken.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import ROOT, run_playbook

INVENTORY = "app:\n  hosts:\n    app1:\n    app2:\n    app3:\n"


@pytest.fixture()
def play(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "hosts.yml").write_text(INVENTORY)
    playbook = tmp_path / "check.yml"
    playbook.write_text(
        "- hosts: app\n  gather_facts: false\n  tasks:\n"
        f"    - ansible.builtin.include_tasks: {ROOT / 'playbooks' / 'tasks' / 'batch_check.yml'}\n")
    return tmp_path / "hosts.yml", playbook


@pytest.mark.parametrize("serial, message", [
    ("0", "is a batch of no host"),
    ("0%", "is a batch of no host"),
    # Ansible's serial takes a percentage through int(): a fraction would crash the play later.
    ("33.3%", "upgrade_serial=33.3% is neither a whole number of hosts nor a whole percentage"),
    ("1.5", "upgrade_serial=1.5 is neither a whole number of hosts nor a whole percentage"),
    ("-1", "upgrade_serial=-1 is neither a whole number of hosts nor a whole percentage"),
    ("two", "upgrade_serial=two is neither a whole number of hosts nor a whole percentage"),
    ("3", "would drain 3 of the 3 app hosts"),
    ("100%", "would drain 3 of the 3 app hosts"),
])
def test_batches_that_stop_service_are_refused(play: tuple[Path, Path], serial: str, message: str) -> None:
    inventory, playbook = play
    proc = run_playbook(inventory, str(playbook), "-e", f"upgrade_serial={serial}")
    assert proc.returncode != 0
    assert message in " ".join(proc.stdout.split()), proc.stdout[-2000:]


@pytest.mark.parametrize("serial", ["1", "2", "50%", "34%", None])
def test_batches_that_leave_a_host_serving_pass(play: tuple[Path, Path], serial: str | None) -> None:
    """None: upgrade_serial left unset, as in a plain rolling_upgrade.yml run (one host at a time)."""
    inventory, playbook = play
    extra = ["-e", f"upgrade_serial={serial}"] if serial is not None else []
    proc = run_playbook(inventory, str(playbook), *extra)
    assert proc.returncode == 0, proc.stdout[-2000:]

"""Fixtures shared by the whole-cluster tests: one local fleet for the whole session.

The fleet (named by CLUSTER_TEST_FLEET, default `djtest`) is started once, the site playbook is
applied once, and every test talks to the real services on it. Set KEEP_FLEET=1 to leave the
fleet running after the session (to debug, or to re-run tests quickly).
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
FLEET_NAME = os.environ.get("CLUSTER_TEST_FLEET", "djtest")
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT / "tools"))
import fleet as fleet_tool  # noqa: E402  (tools/ is not a package)
_REPORT: list[str] = []


def report(line: str) -> None:
    """Keep a line of figures for the end of the session (printed even when tests pass)."""
    _REPORT.append(line)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "keeps_lock: the test's operation ends with the deploy lock taken, on purpose")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _REPORT:
        terminalreporter.section("figures")
        for line in _REPORT:
            terminalreporter.write_line(line)


@dataclass
class Fleet:
    """A running local fleet: its name, inventory and hosts' addresses by group."""

    name: str
    inventory: Path
    groups: dict[str, dict[str, str]]

    def addresses(self, group: str) -> list[str]:
        return list(self.groups.get(group, {}).values())


def ansible_env() -> dict[str, str]:
    """Environment for ansible-* commands run by tests: the project's config and venv."""
    return dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_FORCE_COLOR="0",
                PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")


def fill_vault(inventory: Path) -> Path:
    """Write group_vars/all/vault.yml from the inventory's example, every placeholder replaced.

    The guide's step "copy vault.yml.example and replace every value": the preflight refuses the
    example's CHANGE-ME values, so a copy left unedited would not pass.
    """
    vault_dir = inventory / "group_vars" / "all"
    example = yaml.safe_load((vault_dir / "vault.yml.example").read_text())
    filled = {name: secrets.token_urlsafe(32) for name in example}
    (vault_dir / "vault.yml").write_text(yaml.safe_dump(filled))
    return vault_dir / "vault.yml"


def run_playbook(inventory: Path, playbook: str, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    """Run a playbook of this repo against an inventory and return the finished process."""
    proc = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(inventory), str(ROOT / playbook), *args],
                          cwd=ROOT, env=ansible_env(), text=True, capture_output=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"{playbook} failed ({proc.returncode}):\n{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="session")
def fleet() -> Fleet:
    """Start the test fleet with two app hosts from scratch; remove it at the end.

    A fleet left by an interrupted session (a held deploy lock, a drained server) would make the
    results depend on history, so it is removed first. KEEP_FLEET=1 keeps and reuses the fleet.
    """
    if os.environ.get("KEEP_FLEET") != "1":
        subprocess.run([sys.executable, str(ROOT / "tools" / "fleet.py"), "down", "--name", FLEET_NAME],
                       check=True, cwd=ROOT)
    subprocess.run([sys.executable, str(ROOT / "tools" / "fleet.py"), "up", "--name", FLEET_NAME, "--apps", "2"],
                   check=True, cwd=ROOT)
    inventory = fleet_tool.inventory_dir(FLEET_NAME, None)
    data = yaml.safe_load((inventory / "hosts.yml").read_text())
    groups = {
        name: {host: hv["ansible_host"] for host, hv in (group.get("hosts") or {}).items()}
        for name, group in data["all"]["children"]["cluster"]["children"].items()
    }
    yield Fleet(FLEET_NAME, inventory, groups)
    if os.environ.get("KEEP_FLEET") != "1":
        subprocess.run([sys.executable, str(ROOT / "tools" / "fleet.py"), "down", "--name", FLEET_NAME],
                       check=False, cwd=ROOT)


@pytest.fixture(scope="session")
def site(fleet: Fleet) -> subprocess.CompletedProcess[str]:
    """Apply playbooks/site.yml to the test fleet once per session; fail loudly if it fails."""
    return run_playbook(fleet.inventory, "playbooks/site.yml", check=True)

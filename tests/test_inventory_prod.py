"""The example on-prem inventory, its vault workflow, and bad inventories the preflight stops early.

None of these contact a host: the inventories use documentation addresses, and the preflight
checks they exercise run on the controller.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import BIN, ROOT, ansible_env, fill_vault

PROD = ROOT / "inventories" / "prod"
BAD = Path(__file__).resolve().parent / "fixtures" / "inventories"
TIERS = ("lb", "app", "db", "cache", "storage")
VAULT_HEADER = "$ANSIBLE_VAULT;1.1;AES256"


def preflight(inventory: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run playbooks/preflight.yml against an inventory."""
    playbook = ROOT / "playbooks" / "preflight.yml"
    return subprocess.run([str(BIN / "ansible-playbook"), "-i", str(inventory), str(playbook)],
                          cwd=ROOT, env=env or ansible_env(), text=True, capture_output=True)


@pytest.fixture
def prod_copy(tmp_path: Path) -> Path:
    """A copy of the example on-prem inventory, without any vault file yet."""
    inventory = tmp_path / "prod"
    shutil.copytree(PROD, inventory)
    return inventory


@pytest.fixture
def vault_password_file(tmp_path: Path) -> Path:
    """A vault password file, readable by its owner only, as the guide says to keep it."""
    path = tmp_path / "vault-pass"
    path.write_text("example vault password, not a real one\n")
    path.chmod(0o600)
    return path


def test_example_inventory_has_the_tiers_and_private_cluster_addresses() -> None:
    """Every tier has hosts under `cluster`; SSH goes to public, cluster traffic to private addresses."""
    proc = subprocess.run([str(BIN / "ansible-inventory"), "-i", str(PROD), "--list"],
                          cwd=ROOT, env=ansible_env(), text=True, capture_output=True, check=True)
    listing = json.loads(proc.stdout)
    assert set(listing["cluster"]["children"]) == set(TIERS)
    assert all(listing[tier]["hosts"] for tier in TIERS)
    hostvars = listing["_meta"]["hostvars"]
    for host, hv in hostvars.items():
        assert hv["ansible_host"].startswith(("192.0.2.", "198.51.100.")), host
        if "cluster_interface" in hv:
            assert "cluster_address" not in hv, host
        else:
            assert hv["cluster_address"].startswith("10."), host
    assert any("cluster_interface" in hv for hv in hostvars.values()), "show the interface way too"


def test_encrypted_vault_from_the_example_passes_preflight(prod_copy: Path, vault_password_file: Path) -> None:
    """The guide's steps: copy vault.yml.example, fill it in, encrypt it, give the password file."""
    vault = fill_vault(prod_copy)
    env = dict(ansible_env(), ANSIBLE_VAULT_PASSWORD_FILE=str(vault_password_file))
    subprocess.run([str(BIN / "ansible-vault"), "encrypt", str(vault)], cwd=ROOT, env=env, check=True,
                   capture_output=True)
    assert vault.read_text().startswith(VAULT_HEADER)
    proc = preflight(prod_copy, env)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


def test_example_placeholders_are_refused(prod_copy: Path) -> None:
    """A vault copied from the example but not filled in would make the passwords public: refused."""
    vault_dir = prod_copy / "group_vars" / "all"
    shutil.copy(vault_dir / "vault.yml.example", vault_dir / "vault.yml")
    proc = preflight(prod_copy)
    assert proc.returncode != 0
    output = " ".join(proc.stdout.split())
    for secret in ("vault_cluster_db_password", "vault_django_app_secret_key", "vault_haproxy_stats_password"):
        assert re.search(rf"needs the secret {secret} \([^)]*\), but it is still the example placeholder", output)


def test_missing_vault_file_names_every_missing_secret(prod_copy: Path) -> None:
    """Without vault.yml the preflight fails and names the secrets each kind of host needs."""
    proc = preflight(prod_copy)
    assert proc.returncode != 0
    for secret in ("vault_cluster_db_password", "vault_django_app_secret_key", "vault_haproxy_stats_password"):
        assert f"needs the secret {secret}" in proc.stdout
    # The example shares media over NFS, so the S3 keys are not asked for.
    assert "needs the secret vault_cluster_s3" not in proc.stdout


@pytest.mark.parametrize(("fixture", "message"), [
    ("no-cluster-parent", "in a tier group but not in the group cluster"),
    ("two-db-hosts", "The group db has 2 hosts (db1, db2)"),
    ("no-storage-host", "The group storage is empty, but app1 keeps its media on the storage host"),
])
def test_bad_group_layout_is_refused(fixture: str, message: str) -> None:
    """Layouts the site cannot run on stop the preflight with a message that names the problem."""
    proc = preflight(BAD / fixture)
    assert proc.returncode != 0
    assert message in " ".join(proc.stdout.split())

"""Bad inventories of the test fleet: the site playbook must stop in its preflight, change nothing.

Each test writes a variant of the fleet's inventory (its hosts.yml and the local group_vars with
one thing broken) and runs playbooks/site.yml against the real hosts. It checks the exit code,
that the message names the problem, that no play after the preflight started, and that the hosts'
packages and configuration are exactly as they were before.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from conftest import BIN, ROOT, Fleet, ansible_env, run_playbook

LOCAL_GROUP_VARS = ROOT / "inventories" / "local" / "group_vars" / "all"
FIRST_PLAY_AFTER_PREFLIGHT = "PLAY [Resolve the values every tier shares]"
# What a deployment changes: installed packages, configuration, local programs and unit files.
STATE_COMMAND = (
    "set -o pipefail; "
    "{ dpkg-query -W -f='${Package} ${Version} ${Status}\\n'; "
    "find /etc /opt /usr/local /etc/systemd -xdev -printf '%p %s %m %u %g %T@\\n' | sort; "
    "getent passwd; getent group; } | sha256sum"
)

Inventory = dict
Edit = Callable[[Inventory, dict[str, object], dict[str, object]], None]


def host_state(fleet: Fleet) -> dict[str, str]:
    """A digest per host of what a deployment would change, read over SSH."""
    proc = subprocess.run(
        [str(BIN / "ansible"), "-i", str(fleet.inventory), "cluster", "-o", "-m", "ansible.builtin.shell",
         "-a", f"executable=/bin/bash {STATE_COMMAND}"],
        cwd=ROOT, env=ansible_env(), text=True, capture_output=True, check=True)
    digests = dict(re.findall(r"^(\S+) \| \w+ \| rc=0 \| \(stdout\) ([0-9a-f]{64})", proc.stdout, re.M))
    assert len(digests) == len({host for hosts in fleet.groups.values() for host in hosts}), proc.stdout
    return digests


@pytest.fixture(scope="module")
def state_before(fleet: Fleet) -> dict[str, str]:
    """The hosts' state before any bad run of this module."""
    return host_state(fleet)


def tier(inventory: Inventory, group: str) -> dict:
    """The hosts mapping of a tier group in a fleet hosts.yml."""
    return inventory["all"]["children"]["cluster"]["children"][group]["hosts"]


def write_inventory(path: Path, fleet: Fleet, edit: Edit) -> Path:
    """Write the fleet's inventory with `edit` applied to its hosts, variables and secrets."""
    hosts = yaml.safe_load((fleet.inventory / "hosts.yml").read_text())
    variables: dict[str, object] = {}
    secrets = yaml.safe_load((LOCAL_GROUP_VARS / "vault.yml").read_text())
    edit(hosts, variables, secrets)
    group_vars = path / "group_vars" / "all"
    group_vars.mkdir(parents=True)
    shutil.copy(LOCAL_GROUP_VARS / "main.yml", group_vars / "main.yml")
    (group_vars / "test.yml").write_text(yaml.safe_dump(variables))
    (group_vars / "vault.yml").write_text(yaml.safe_dump(secrets))
    (path / "hosts.yml").write_text(yaml.safe_dump(hosts, sort_keys=False))
    return path


def drop_cache_group(hosts: Inventory, variables: dict, secrets: dict) -> None:
    del hosts["all"]["children"]["cluster"]["children"]["cache"]


def empty_app_group(hosts: Inventory, variables: dict, secrets: dict) -> None:
    hosts["all"]["children"]["cluster"]["children"]["app"]["hosts"] = {}


def same_ssh_address(hosts: Inventory, variables: dict, secrets: dict) -> None:
    apps = tier(hosts, "app")
    apps["app2"]["ansible_host"] = apps["app1"]["ansible_host"]


def same_cluster_address(hosts: Inventory, variables: dict, secrets: dict) -> None:
    db_address = next(iter(tier(hosts, "db").values()))["ansible_host"]
    tier(hosts, "cache")["cache1"]["cluster_address"] = db_address


def public_cluster_address(hosts: Inventory, variables: dict, secrets: dict) -> None:
    # Never contacted: the preflight stops before any play talks to a host.
    tier(hosts, "cache")["cache1"]["cluster_address"] = "8.8.8.8"


def wildcard_cluster_address(hosts: Inventory, variables: dict, secrets: dict) -> None:
    tier(hosts, "cache")["cache1"]["cluster_address"] = "0.0.0.0"


def uid_not_a_number(hosts: Inventory, variables: dict, secrets: dict) -> None:
    variables["cluster_app_uid"] = "abc"


def unknown_media_backend(hosts: Inventory, variables: dict, secrets: dict) -> None:
    variables["cluster_media_backend"] = "floppy"


def domain_not_a_list(hosts: Inventory, variables: dict, secrets: dict) -> None:
    variables["cluster_domains"] = "www.example.com"


def no_domain(hosts: Inventory, variables: dict, secrets: dict) -> None:
    variables["cluster_domains"] = []


def no_django_secret(hosts: Inventory, variables: dict, secrets: dict) -> None:
    del secrets["vault_django_app_secret_key"]


def no_s3_secret_key(hosts: Inventory, variables: dict, secrets: dict) -> None:
    variables["cluster_media_backend"] = "s3"
    secrets["vault_cluster_s3_secret_key"] = ""


def too_few_db_connections(hosts: Inventory, variables: dict, secrets: dict) -> None:
    # Two app hosts of 2 workers x 4 threads need 16 connections, 8 more during a reload, plus
    # the database's headroom: far more than 20.
    variables.update(cluster_app_workers=2, cluster_app_threads=4, postgresql_primary_max_connections=20)


BAD_INVENTORIES: dict[str, tuple[Edit, str]] = {
    "missing group": (drop_cache_group, "The inventory has no group cache."),
    "empty group": (empty_app_group, "The group app is empty; it needs at least one host"),
    "duplicate SSH address": (same_ssh_address, "Two hosts have the same SSH address"),
    "duplicate cluster address": (same_cluster_address, "Two hosts have the same cluster address"),
    "public cluster address": (public_cluster_address, "cache1: cluster address 8.8.8.8 is public."),
    "wildcard cluster address": (wildcard_cluster_address,
                                 "cache1: cluster address 0.0.0.0 is not a host address other hosts can reach"),
    "wrong type": (uid_not_a_number, "argument 'cluster_app_uid' is of type str and we were unable to convert to int"),
    "unknown choice": (unknown_media_backend,
                       "value of cluster_media_backend must be one of: auto, nfs, s3, got: floppy"),
    "domain not a list": (domain_not_a_list, "cluster_domains must be a list of the site's domain names"),
    "no domain": (no_domain, "it is []."),
    "missing vault secret": (no_django_secret, "needs the secret vault_django_app_secret_key"),
    "empty S3 secret": (no_s3_secret_key, "needs the secret vault_cluster_s3_secret_key"),
    "connection budget": (too_few_db_connections, "postgresql_primary_max_connections is 20, but the cluster needs"),
}


def recap_changes(output: str) -> dict[str, int]:
    """changed= per host from the PLAY RECAP."""
    return {host: int(changed) for host, changed in re.findall(r"^(\S+)\s+: ok=\d+\s+changed=(\d+)", output, re.M)}


def test_fleet_inventory_passes_preflight(fleet: Fleet) -> None:
    """The fleet's own inventory passes, so the failures below come from what each test broke."""
    proc = run_playbook(fleet.inventory, "playbooks/preflight.yml")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


@pytest.mark.parametrize("case", list(BAD_INVENTORIES))
def test_bad_inventory_stops_site_before_any_change(case: str, fleet: Fleet, state_before: dict[str, str],
                                                    tmp_path: Path) -> None:
    """site.yml fails in its preflight with a message naming the problem, and no host changes."""
    edit, message = BAD_INVENTORIES[case]
    inventory = write_inventory(tmp_path / "inventory", fleet, edit)
    proc = run_playbook(inventory, "playbooks/site.yml")
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output[-4000:]
    assert message in " ".join(output.split()), output[-4000:]
    assert FIRST_PLAY_AFTER_PREFLIGHT not in output
    changes = recap_changes(proc.stdout)
    assert changes and set(changes.values()) == {0}, proc.stdout[-2000:]
    assert host_state(fleet) == state_before


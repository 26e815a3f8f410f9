"""Verify the fleet hosts behave like servers and the cluster role resolved the right values."""

import json
import os
import subprocess
from pathlib import Path

import testinfra

CONVERGE = Path(__file__).resolve().parents[1] / "converge.yml"


def test_systemd_is_running(host):
    state = host.run("systemctl is-system-running --wait").stdout.strip()
    assert state in ("running", "degraded"), state
    failed = host.run("systemctl --failed --no-legend --plain").stdout.strip()
    assert failed == "", f"failed units: {failed}"


def test_sshd_is_enabled_and_listening(host):
    assert host.service("ssh").is_running
    assert host.service("ssh").is_enabled
    assert host.socket("tcp://0.0.0.0:22").is_listening


def test_cluster_address_is_this_hosts_own_address(host):
    facts = json.loads(host.file("/etc/cluster-facts.json").content_string)
    own = host.run("ip -4 -o addr show scope global").stdout
    assert f" {facts['address']}/" in own


def test_other_hosts_address_and_capacity_are_known(host):
    facts = json.loads(host.file("/etc/cluster-facts.json").content_string)
    db_ping = host.run(f"ping -c1 -W2 {facts['db_address']}")
    assert db_ping.rc == 0, db_ping.stderr
    cpus = int(host.run("nproc").stdout)
    assert int(facts["app_capacity"]) == (2 * cpus + 1) * 4


RECORD = "/var/lib/django-cluster/media-backend"


def node(name):
    """A scenario host by inventory name, reached the way Molecule reaches it."""
    return testinfra.get_host(f"ansible://{name}?ansible_inventory={os.environ['MOLECULE_INVENTORY_FILE']}")


def converge():
    """Run the scenario's converge again, as `molecule converge` would."""
    proc = subprocess.run(
        ["ansible-playbook", "-i", str(Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent),
         str(CONVERGE)],
        capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def backend_of(host) -> str:
    return json.loads(host.file("/etc/cluster-facts.json").content_string)["media_backend"]


def test_automatic_media_backend_follows_the_kernel_and_is_recorded():
    app, store = node("app1"), node("store1")
    can_mount = app.run("grep -qw nfs4 /proc/filesystems || test -d /lib/modules/$(uname -r)/kernel/fs/nfs").rc == 0
    expected = "nfs" if can_mount else "s3"
    assert backend_of(app) == expected
    assert store.file(RECORD).content_string == expected + "\n"


def test_recorded_media_backend_is_kept_by_later_runs():
    """A later run keeps the first choice even where the kernel would now decide otherwise."""
    app, store = node("app1"), node("store1")
    first = store.file(RECORD).content_string.strip()
    other = {"nfs": "s3", "s3": "nfs"}[first]
    store.run(f"echo {other} > {RECORD}")
    try:
        output = converge()
        assert backend_of(app) == other
        assert f"Media backend: {other}, as the cluster already uses it" in " ".join(output.split())
    finally:
        store.run(f"echo {first} > {RECORD}")
        converge()
    assert backend_of(app) == first


def test_a_cluster_without_a_record_keeps_the_backend_its_storage_host_serves():
    """Deployed before the record existed: an NFS export on the storage host means nfs, whatever the probe says."""
    app, store = node("app1"), node("store1")
    first = store.file(RECORD).content_string.strip()
    export = "/etc/ganesha/django-cluster-exports.conf"
    store.run(f"rm {RECORD} && mkdir -p /etc/ganesha && touch {export}")
    try:
        converge()
        assert backend_of(app) == "nfs"
        assert store.file(RECORD).content_string == "nfs\n"
    finally:
        store.run(f"rm -f {export} && echo {first} > {RECORD}")
        converge()
    assert backend_of(app) == first

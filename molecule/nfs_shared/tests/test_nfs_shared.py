"""Verify the media export over the real NFS protocol, from an app host and from a host that is not one.

The containers' kernel has no NFS client, so these checks speak NFS from user space with
libnfs-utils (nfs-ls, nfs-cp); the kernel mount is checked only where the kernel can mount NFSv4.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import pytest
import testinfra
import yaml

ROOT = Path(__file__).resolve().parents[3]
CLUSTER = yaml.safe_load((ROOT / "roles/cluster/defaults/main.yml").read_text())
NFS = yaml.safe_load((ROOT / "roles/nfs_shared/defaults/main.yml").read_text())
APP_UID, APP_GID = CLUSTER["cluster_app_uid"], CLUSTER["cluster_app_gid"]
EXPORT = NFS["nfs_shared_export_path"]
MEDIA_ROOT = CLUSTER["cluster_media_root"]
ANON_UID = NFS["nfs_shared_anonymous_uid"]


def node(name: str) -> testinfra.host.Host:
    """A scenario host by inventory name, reached the way Molecule reaches it."""
    inventory = os.environ["MOLECULE_INVENTORY_FILE"]
    return testinfra.get_host(f"ansible://{name}?ansible_inventory={inventory}")


@pytest.fixture(scope="module")
def server() -> testinfra.host.Host:
    return node("nfs1")


@pytest.fixture(scope="module")
def app() -> testinfra.host.Host:
    return node("app1")


@pytest.fixture(scope="module")
def other() -> testinfra.host.Host:
    return node("other1")


@pytest.fixture(scope="module")
def server_address(server: testinfra.host.Host) -> str:
    return server.ansible.get_variables()["ansible_host"]


def url(address: str, path: str = "", version: int = 4, uid: int | None = APP_UID,
        gid: int | None = APP_GID) -> str:
    """An libnfs URL of the export (or a file in it), acting as uid/gid when given."""
    query = f"version={version}"
    if uid is not None:
        query += f"&uid={uid}&gid={gid}"
    return f"nfs://{address}{EXPORT}{'/' + path if path else ''}?{query}"


@pytest.fixture(scope="module", autouse=True)
def export_ready(app: testinfra.host.Host, server: testinfra.host.Host, server_address: str) -> None:
    """Wait (bounded) until the app host can create a file: a restarted server refuses new files
    with NFS4ERR_GRACE while it waits for earlier clients to reclaim their state (90 s)."""
    probe_name = f"ready-{uuid.uuid4().hex[:12]}"
    app.run_test("touch /tmp/%s", probe_name)
    deadline = time.monotonic() + 120
    try:
        while True:
            probe = app.run("nfs-cp /tmp/%s %s", probe_name, url(server_address, probe_name))
            if probe.rc == 0 or "NFS4ERR_GRACE" not in probe.stderr:
                return
            if time.monotonic() > deadline:
                pytest.fail(f"the server stayed in its grace period: {probe.stderr}")
            time.sleep(2)
    finally:
        server.run("rm -f %s", f"{EXPORT}/{probe_name}")


@pytest.fixture
def scratch(server: testinfra.host.Host) -> str:
    """A fresh file name in the export, removed from the server afterwards."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    yield name
    server.run("rm -f %s", f"{EXPORT}/{name}")


def test_export_directory_belongs_to_the_app_user(server: testinfra.host.Host) -> None:
    export = server.file(EXPORT)
    assert export.is_directory
    assert (export.uid, export.gid) == (APP_UID, APP_GID)


def test_auto_picked_ganesha_here(server: testinfra.host.Host) -> None:
    assert server.service("nfs-ganesha").is_running
    assert server.service("nfs-ganesha").is_enabled
    assert not server.package("nfs-kernel-server").is_installed


def test_app_host_writes_and_reads_as_the_app_user(app: testinfra.host.Host, server: testinfra.host.Host,
                                                   server_address: str, scratch: str) -> None:
    payload = f"uploaded by app1 {scratch}"
    app.run_test("printf %s %s > /tmp/%s", "%s", payload, scratch)
    write = app.run("nfs-cp /tmp/%s %s", scratch, url(server_address, scratch))
    assert write.rc == 0, write.stderr
    on_server = server.file(f"{EXPORT}/{scratch}")
    assert on_server.content_string == payload
    assert (on_server.uid, on_server.gid) == (APP_UID, APP_GID)
    read = app.run("nfs-cp %s /tmp/%s.back && cat /tmp/%s.back", url(server_address, scratch), scratch, scratch)
    assert read.rc == 0, read.stderr
    assert read.stdout.endswith(payload)


def test_root_on_an_app_host_is_squashed(app: testinfra.host.Host, server: testinfra.host.Host,
                                         server_address: str, scratch: str) -> None:
    app.run_test("echo root > /tmp/%s", scratch)
    write = app.run("nfs-cp /tmp/%s %s", scratch, url(server_address, scratch, uid=0, gid=0))
    if write.rc == 0:
        # Allowed to write somewhere? Then it must have landed as the anonymous user, not root.
        assert server.file(f"{EXPORT}/{scratch}").uid == ANON_UID
    else:
        assert "NFS4ERR_ACCESS" in write.stderr, write.stderr
        assert not server.file(f"{EXPORT}/{scratch}").exists


def test_host_outside_the_app_group_is_refused(other: testinfra.host.Host, server: testinfra.host.Host,
                                               server_address: str, scratch: str) -> None:
    listing = other.run("nfs-ls %s", url(server_address))
    assert listing.rc != 0, f"other1 could list the export: {listing.stdout}"
    other.run_test("echo intruder > /tmp/%s", scratch)
    write = other.run("nfs-cp /tmp/%s %s", scratch, url(server_address, scratch))
    assert write.rc != 0
    assert not server.file(f"{EXPORT}/{scratch}").exists


def test_only_nfs_version_4_answers(app: testinfra.host.Host, server: testinfra.host.Host,
                                    server_address: str) -> None:
    v3 = app.run("nfs-ls %s", url(server_address, version=3))
    assert v3.rc != 0, f"NFSv3 answered: {v3.stdout}"
    assert app.run("nfs-ls %s", url(server_address, version=4)).rc == 0
    # No portmapper either: NFSv4 does without it, and it would listen on every address.
    assert not server.socket("tcp://0.0.0.0:111").is_listening
    assert not server.socket("tcp://:::111").is_listening


def test_app_host_mounts_the_export(app: testinfra.host.Host, server: testinfra.host.Host, scratch: str) -> None:
    can_mount = app.run("grep -qw nfs4 /proc/filesystems").rc == 0
    if not can_mount:
        # The converge skipped the mount for the same reason (same probe); the export itself
        # is still tested above over NFSv4, from app1, with the userspace libnfs client.
        pytest.skip("app1's kernel has no NFS client (nfs4 not in /proc/filesystems), so the "
                    "kernel mount of the export is not exercised on this machine")
    mount = app.mount_point(MEDIA_ROOT)
    assert mount.exists and mount.filesystem == "nfs4"
    app.run_test("setpriv --reuid=%s --regid=%s --clear-groups sh -c 'echo mounted > %s/%s'",
                 APP_UID, APP_GID, MEDIA_ROOT, scratch)
    on_server = server.file(f"{EXPORT}/{scratch}")
    assert on_server.content_string.strip() == "mounted"
    assert on_server.uid == APP_UID

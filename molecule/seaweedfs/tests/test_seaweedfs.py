"""Verify the S3 store the way the app uses it: django-storages on one app host writes, another reads."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import pytest
import testinfra
import yaml

ROOT = Path(__file__).resolve().parents[3]
CLUSTER = yaml.safe_load((ROOT / "roles/cluster/defaults/main.yml").read_text())
SEAWEEDFS = yaml.safe_load((ROOT / "roles/seaweedfs/defaults/main.yml").read_text())
SCENARIO = yaml.safe_load((Path(__file__).resolve().parents[1] / "molecule.yml").read_text())
KEYS = SCENARIO["provisioner"]["inventory"]["group_vars"]["all"]
S3_PORT = SEAWEEDFS["seaweedfs_s3_port"]
PROBE = "/opt/s3-client/venv/bin/python /opt/s3-client/storage_probe.py"


def node(name: str) -> testinfra.host.Host:
    """A scenario host by inventory name, reached the way Molecule reaches it."""
    return testinfra.get_host(f"ansible://{name}?ansible_inventory={os.environ['MOLECULE_INVENTORY_FILE']}")


@pytest.fixture(scope="module")
def store() -> testinfra.host.Host:
    return node("store1")


@pytest.fixture(scope="module")
def store_address(store: testinfra.host.Host) -> str:
    return store.ansible.get_variables()["ansible_host"]


def storage(host: testinfra.host.Host, address: str, *args: str, secret: str | None = None):
    """Run the django-storages probe on host against the store, with the cluster's keys by default."""
    env = {
        "S3_ENDPOINT": f"http://{address}:{S3_PORT}",
        "S3_BUCKET": CLUSTER["cluster_s3_bucket"],
        "S3_ACCESS_KEY": KEYS["cluster_s3_access_key"],
        "S3_SECRET_KEY": secret if secret is not None else KEYS["cluster_s3_secret_key"],
    }
    exports = " ".join(f"{key}='{value}'" for key, value in env.items())
    return host.run(f"env {exports} {PROBE} " + " ".join(["%s"] * len(args)), *args)


def test_service_runs_with_a_short_stop_timeout(store: testinfra.host.Host) -> None:
    service = store.service("seaweedfs")
    assert service.is_running and service.is_enabled
    timeout = store.run("systemctl show -p TimeoutStopUSec --value seaweedfs").stdout.strip()
    assert timeout == f"{SEAWEEDFS['seaweedfs_stop_timeout']}s"


def test_s3_listens_on_the_cluster_address_only(store: testinfra.host.Host, store_address: str) -> None:
    listeners = {s.split()[3] for s in store.run(f"ss -Htln 'sport = :{S3_PORT}'").stdout.splitlines()}
    assert f"{store_address}:{S3_PORT}" in listeners
    # Besides the cluster address only loopback, never a wildcard or another interface.
    assert listeners <= {f"{store_address}:{S3_PORT}", f"127.0.0.1:{S3_PORT}"}, listeners


def test_internal_ports_are_not_reachable_from_an_app_host(store_address: str) -> None:
    app = node("app1")
    assert app.run(f"timeout 3 bash -c '</dev/tcp/{store_address}/{S3_PORT}'").rc == 0
    for port in (SEAWEEDFS["seaweedfs_master_port"], SEAWEEDFS["seaweedfs_volume_port"],
                 SEAWEEDFS["seaweedfs_filer_port"]):
        assert app.run(f"timeout 3 bash -c '</dev/tcp/{store_address}/{port}'").rc != 0, port


def test_s3_grpc_port_answers_the_store_itself_only(store: testinfra.host.Host, store_address: str) -> None:
    """The S3 gateway's gRPC port is open on the cluster address, but only the host itself gets in."""
    grpc = SEAWEEDFS["seaweedfs_s3_grpc_port"]
    listeners = {s.split()[3] for s in store.run(f"ss -Htln 'sport = :{grpc}'").stdout.splitlines()}
    assert f"{store_address}:{grpc}" in listeners, listeners
    # The store reaches its own cluster address through loopback: the port really answers.
    assert store.run(f"timeout 3 bash -c '</dev/tcp/{store_address}/{grpc}'").rc == 0
    # Another host is turned away at once by the filter (a reset, not a timeout).
    refused = node("app1").run(f"timeout 3 bash -c '</dev/tcp/{store_address}/{grpc}'")
    assert refused.rc == 1 and "refused" in refused.stderr, (refused.rc, refused.stderr)


def test_a_flushed_guard_is_restored_by_the_next_run(store: testinfra.host.Host, store_address: str) -> None:
    """A firewall reload that flushes the ruleset removes the guard; running the role puts it back."""
    grpc = SEAWEEDFS["seaweedfs_s3_grpc_port"]
    store.run_test("nft delete table inet seaweedfs_guard")
    try:
        assert node("app1").run(f"timeout 3 bash -c '</dev/tcp/{store_address}/{grpc}'").rc == 0, "guard still there"
    finally:
        proc = subprocess.run(["ansible-playbook", "-i", str(Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent),
                               str(Path(__file__).resolve().parents[1] / "converge.yml")],
                              capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert store.run("nft list table inet seaweedfs_guard").rc == 0
    refused = node("app1").run(f"timeout 3 bash -c '</dev/tcp/{store_address}/{grpc}'")
    assert refused.rc == 1 and "refused" in refused.stderr, (refused.rc, refused.stderr)


def test_upload_on_one_app_host_is_readable_on_another(store: testinfra.host.Host, store_address: str) -> None:
    name = f"uploads/{uuid.uuid4().hex[:12]}.txt"
    content = f"shared across app hosts {name}"
    saved = storage(node("app1"), store_address, "save", name, content)
    assert saved.rc == 0, saved.stderr
    stored_name = saved.stdout.strip()
    read = storage(node("app2"), store_address, "read", stored_name)
    assert read.rc == 0, read.stderr
    assert read.stdout == content


def test_wrong_secret_is_refused(store_address: str) -> None:
    app1, app2 = node("app1"), node("app2")
    name = f"uploads/{uuid.uuid4().hex[:12]}.txt"
    assert storage(app1, store_address, "save", name, "private").rc == 0
    read = storage(app2, store_address, "get", name, secret="not-the-secret")
    assert read.rc == 2, read.stdout + read.stderr
    assert read.stderr.strip() in ("SignatureDoesNotMatch", "AccessDenied"), read.stderr
    assert "private" not in read.stdout
    other = f"uploads/{uuid.uuid4().hex[:12]}.txt"
    write = storage(app2, store_address, "save", other, "should not land", secret="not-the-secret")
    assert write.rc == 2, write.stdout + write.stderr
    assert storage(app2, store_address, "read", other).rc != 0, "the refused upload was stored"

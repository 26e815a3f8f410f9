"""Verify the fleet hosts behave like servers and the cluster role resolved the right values."""

import json


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

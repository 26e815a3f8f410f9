"""Helpers shared by the memcached scenario's tests: where the cache hosts are, how to talk to them."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
import testinfra

# Run on a host with python3 only (no memcached client there): send protocol lines over one TCP
# connection, end with `quit` so memcached closes it, print everything it answered.
RAW_CLIENT = """
import socket, sys
address, port, *lines = sys.argv[1:]
with socket.create_connection((address, int(port)), timeout=5) as conn:
    conn.sendall("".join(line + "\\r\\n" for line in lines + ["quit"]).encode())
    answer = b""
    while chunk := conn.recv(65536):
        answer += chunk
sys.stdout.write(answer.decode())
"""


def private_address(host) -> str:
    """The host's one global IPv4 address, read from the kernel rather than from the role."""
    lines = host.check_output("ip -4 -o addr show scope global").splitlines()
    assert len(lines) == 1, f"expected one private address, found {lines}"
    return lines[0].split()[3].split("/")[0]


def memcached_talk(host, address: str, port: int, *lines: str):
    """Run the raw client on `host` against address:port; return testinfra's CommandResult."""
    return host.run("python3 -c %s %s %s " + " ".join(["%s"] * len(lines)), RAW_CLIENT, address, str(port), *lines)


def tcp_connect(host, address: str, port: int):
    """Open one TCP connection from `host` to address:port, giving up after 3 s; return the CommandResult.

    rc 0: connected; rc 1 with "refused" in stderr: reset at once; rc 124: no answer in time.
    """
    return host.run("timeout 3 bash -c %s", f"</dev/tcp/{address}/{port}")


def converge(*extra_args: str) -> None:
    """Run the scenario's converge playbook again, the way an operator re-runs the role."""
    scenario = Path(__file__).resolve().parents[1]
    proc = subprocess.run(
        ["ansible-playbook", "-i", str(Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent),
         str(scenario / "converge.yml"), *extra_args],
        capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]


def stats(host, address: str, port: int, *command: str) -> dict[str, str]:
    """Send a `stats` command from `host` and return its STAT lines as a dict."""
    result = memcached_talk(host, address, port, " ".join(["stats", *command]))
    assert result.rc == 0, result.stderr
    assert result.stdout.endswith("END\r\n"), result.stdout
    return {
        parts[1]: parts[2] if len(parts) > 2 else ""
        for parts in (line.split(" ", 2) for line in result.stdout.splitlines())
        if parts[0] == "STAT"
    }


def wait_until(check, timeout: float = 30, interval: float = 0.5):
    """Call `check` until it returns a true value or `timeout` seconds pass; return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


@pytest.fixture(scope="session")
def inventory(request) -> str:
    return request.config.option.ansible_inventory


@pytest.fixture(scope="session")
def cache_hosts(inventory) -> dict[str, object]:
    """Every host of the cache group, by name."""
    hosts = testinfra.get_hosts(["cache"], connection="ansible", ansible_inventory=inventory)
    assert len(hosts) >= 2, "the scenario needs two cache hosts"
    return {h.backend.get_hostname(): h for h in hosts}


@pytest.fixture(scope="session")
def client_host(inventory):
    """The scenario's app host: the one client allowed to use the cache."""
    return testinfra.get_host("ansible://client1", ansible_inventory=inventory)


@pytest.fixture(scope="session")
def outsider_host(inventory):
    """A host on the same private network outside the app group: the load balancer."""
    return testinfra.get_host("ansible://lb1", ansible_inventory=inventory)


@pytest.fixture(scope="session")
def cache_port(client_host) -> int:
    """The port from the inventory (the scenario sets a non-default one)."""
    return int(client_host.ansible.get_variables()["cluster_cache_port"])


@pytest.fixture(scope="session")
def cache_addresses(cache_hosts) -> dict[str, str]:
    """Each cache host's private address, by host name."""
    return {name: private_address(h) for name, h in cache_hosts.items()}

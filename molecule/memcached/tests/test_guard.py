"""The cache port lets in the app hosts and the cache host itself only: every other host is turned away."""

import json

from conftest import converge, memcached_talk, private_address, stats, tcp_connect

testinfra_hosts = ["cache"]

GUARD = "inet memcached_guard"


def refused(result) -> bool:
    """A connection reset at once by the filter (not a timeout, not a success)."""
    return result.rc == 1 and "refused" in result.stderr


def test_a_host_outside_the_app_group_is_refused(host, outsider_host, client_host, cache_port):
    address = private_address(host)
    # The load balancer reaches the cache host (sshd answers it), so a refusal below is the cache port's own.
    assert tcp_connect(outsider_host, address, 22).rc == 0
    attempt = tcp_connect(outsider_host, address, cache_port)
    assert refused(attempt), (attempt.rc, attempt.stderr)
    planted = memcached_talk(outsider_host, address, cache_port, "set planted 0 60 5", "pwned")
    assert planted.rc != 0 and "STORED" not in planted.stdout, (planted.rc, planted.stdout, planted.stderr)
    # The same attempts from the app host get in, and the planted key is not there.
    assert tcp_connect(client_host, address, cache_port).rc == 0
    assert memcached_talk(client_host, address, cache_port, "get planted").stdout == "END\r\n"


def test_the_cache_host_reaches_itself_through_loopback(host, cache_port):
    answer = memcached_talk(host, private_address(host), cache_port, "version")
    assert answer.stdout.startswith("VERSION "), (answer.stdout, answer.stderr)


def test_every_start_loads_the_filter_first(host, outsider_host, cache_port):
    """What refuses the outsider is the role's table, and the unit loads it on every start (so at boot too)."""
    address = private_address(host)
    host.run_test(f"nft delete table {GUARD}")
    try:
        unguarded = tcp_connect(outsider_host, address, cache_port)
        assert unguarded.rc == 0, "refused even without the table: this test would prove nothing"
        host.run_test("systemctl restart memcached")
        assert host.run(f"nft list table {GUARD}").rc == 0, "memcached started without loading the table"
        attempt = tcp_connect(outsider_host, address, cache_port)
        assert refused(attempt), (attempt.rc, attempt.stderr)
    finally:
        host.run(f"nft list table {GUARD} || nft -f /etc/memcached-guard.nft")


def test_every_run_puts_the_filter_back_and_follows_the_clients(cache_hosts, outsider_host, client_host, cache_port):
    """Re-running the role: restores a flushed table, lets in a client group added to the inventory,
    removes the table when turned off, and does all that without restarting memcached."""
    addresses = {name: private_address(h) for name, h in cache_hosts.items()}

    def outsider_gets_in() -> dict[str, int]:
        return {name: tcp_connect(outsider_host, address, cache_port).rc for name, address in addresses.items()}

    def main_pids() -> dict[str, str]:
        return {name: h.check_output("systemctl show -p MainPID --value memcached") for name, h in cache_hosts.items()}

    pids = main_pids()
    # Keep the connection limit memcached runs with, so a wider client list changes only the filter.
    max_connections = stats(client_host, next(iter(addresses.values())), cache_port, "settings")["maxconns"]
    try:
        # A firewall reload that flushed the ruleset took the table away.
        for h in cache_hosts.values():
            h.run_test(f"nft delete table {GUARD}")
        assert set(outsider_gets_in().values()) == {0}
        converge()
        assert set(outsider_gets_in().values()) == {1}

        # The load balancer's group becomes a client group.
        converge("-e", json.dumps({"memcached_client_groups": ["app", "lb"],
                                   "memcached_max_connections": int(max_connections)}))
        assert set(outsider_gets_in().values()) == {0}

        # Guard turned off for a firewall managed elsewhere: table and drop-in gone.
        converge("-e", '{"memcached_guard_enabled": false}')
        for name, h in cache_hosts.items():
            assert h.run(f"nft list table {GUARD}").rc != 0, name
            assert "nft" not in h.check_output("systemctl show -p ExecStartPre --value memcached"), name
        assert set(outsider_gets_in().values()) == {0}
    finally:
        converge()
    assert set(outsider_gets_in().values()) == {1}
    for name, h in cache_hosts.items():
        assert "memcached-guard.nft" in h.check_output("systemctl show -p ExecStartPre --value memcached"), name
    assert main_pids() == pids, "changing the filter restarted memcached (and emptied the cache)"

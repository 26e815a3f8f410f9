"""From the app host: the cache answers, keeps values across connections, survives one host restarting."""

import secrets

from conftest import memcached_talk, stats, wait_until

testinfra_hosts = ["app"]


def test_stats_answered_to_the_app_host(host, cache_addresses, cache_port):
    for name, address in cache_addresses.items():
        answer = stats(host, address, cache_port)
        assert int(answer["pid"]) > 0, name
        assert int(answer["uptime"]) >= 0, name


def test_limits_are_sized_from_the_host(host, cache_hosts, cache_addresses, cache_port):
    for name, address in cache_addresses.items():
        settings = stats(host, address, cache_port, "settings")
        mem_total_mb = int(cache_hosts[name].check_output("awk '/^MemTotal:/ {print $2}' /proc/meminfo")) // 1024
        expected_mb = min(max(mem_total_mb // 4, 64), 4096)
        assert int(settings["maxbytes"]) == expected_mb * 1024 * 1024, name
        assert int(settings["maxconns"]) == 1024, name
        assert int(settings["item_size_max"]) == 1024 * 1024, name
        assert settings["udpport"] == "0", name
        assert settings["tcpport"] == str(cache_port), name


def test_value_set_on_one_connection_is_read_on_another(host, cache_addresses, cache_port):
    for name, address in cache_addresses.items():
        key, value = f"verify-{secrets.token_hex(4)}", secrets.token_hex(16)
        stored = memcached_talk(host, address, cache_port, f"set {key} 0 60 {len(value)}", value)
        assert stored.stdout == "STORED\r\n", (name, stored.stdout, stored.stderr)
        read = memcached_talk(host, address, cache_port, f"get {key}")
        assert read.stdout == f"VALUE {key} 0 {len(value)}\r\n{value}\r\nEND\r\n", (name, read.stdout, read.stderr)


def test_one_cache_host_down_leaves_the_other_serving(host, cache_hosts, cache_addresses, cache_port):
    first, second = sorted(cache_hosts)[:2]

    def answers(name: str) -> bool:
        return memcached_talk(host, cache_addresses[name], cache_port, "version").stdout.startswith("VERSION ")

    assert cache_hosts[first].run("systemctl stop memcached").rc == 0
    try:
        assert not answers(first), f"{first} still answers after memcached was stopped there"
        assert answers(second), f"{second} stopped answering while {first} was down"
    finally:
        assert cache_hosts[first].run("systemctl start memcached").rc == 0
    assert wait_until(lambda: answers(first)), f"{first} did not come back"
    assert cache_hosts[first].service("memcached").is_enabled

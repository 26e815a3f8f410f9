"""On each cache host: memcached runs under systemd, listens on the private address only, TCP only."""

from conftest import private_address

testinfra_hosts = ["cache"]


def test_memcached_is_running_and_enabled(host):
    service = host.service("memcached")
    assert service.is_running
    assert service.is_enabled


def test_tcp_listener_is_the_private_address_only(host, cache_port):
    listeners = {
        line.split()[3] for line in host.check_output("ss -H -l -t -n -p").splitlines() if '"memcached"' in line
    }
    assert listeners == {f"{private_address(host)}:{cache_port}"}


def test_no_udp_socket_at_all(host):
    udp = [line for line in host.check_output("ss -H -a -u -n -p").splitlines() if '"memcached"' in line]
    assert host.process.filter(comm="memcached"), "memcached is not running, so this check proves nothing"
    assert udp == []


def test_allowed_clients_file_lists_exactly_the_app_hosts(host, client_host):
    lines = host.file("/etc/memcached.allowed").content_string.splitlines()
    addresses = [line for line in lines if line and not line.startswith("#")]
    assert addresses == [private_address(client_host)]

"""Send real traffic through lb1 to the two stand-in app hosts and watch HAProxy act on it."""

from __future__ import annotations

import re
import socket
import ssl
import threading
import time
from collections import Counter

import pytest
import requests
from conftest import BACKEND, RuntimeApi, Site, switch_server, wait_until
from cryptography import x509

STATS_PORT = 8404
# How long the request open during a drain lasts: long enough for ansible-playbook to start and
# drain the server on a loaded machine, shorter than HAProxy's server timeout.
SLOW_SECONDS = 45


def test_requests_spread_over_both_app_hosts(site: Site) -> None:
    counts = Counter(site.spread(20))
    assert set(counts) == {"app1", "app2"}, counts
    assert min(counts.values()) >= 8, counts


def test_failing_host_leaves_rotation_and_comes_back(site: Site, apps, runtime: RuntimeApi) -> None:
    apps["app2"].run_test("touch /run/echo-app/unhealthy")
    # Health checks every second, two failures take it out; two passes bring it back.
    assert wait_until(lambda: runtime.status("app2") == "DOWN", timeout=10), runtime.stat()["app2"]
    assert set(site.spread(10)) == {"app1"}
    apps["app2"].run_test("rm /run/echo-app/unhealthy")
    assert wait_until(lambda: runtime.status("app2") == "UP", timeout=10), runtime.stat()["app2"]
    assert "app2" in site.spread(4)


def test_drained_host_finishes_open_requests_and_gets_no_new_ones(site: Site, runtime: RuntimeApi) -> None:
    slow: dict[str, object] = {}
    drain: dict[str, object] = {}

    def slow_request() -> None:
        slow["response"] = site.get(f"/slow?s={SLOW_SECONDS}", timeout=SLOW_SECONDS + 30)
        slow["ended"] = time.monotonic()

    def drain_host(name: str) -> None:
        drain["proc"] = switch_server(name, "drained")
        drain["ended"] = time.monotonic()

    request = threading.Thread(target=slow_request)
    runner: threading.Thread | None = None
    request.start()
    try:
        busy = wait_until(lambda: [n for n, row in runtime.stat().items() if int(row["scur"]) > 0], timeout=3)
        assert len(busy) == 1, "the slow request is not open on exactly one server"
        drained, other = busy[0], ({"app1", "app2"} - set(busy)).pop()
        # The way the rolling playbooks drain a host: the role's `server` entry point, which waits
        # for the open request before it puts the server in maintenance.
        runner = threading.Thread(target=drain_host, args=(drained,))
        runner.start()
        assert wait_until(lambda: runtime.status(drained) != "UP" or "proc" in drain, timeout=SLOW_SECONDS), \
            "the drain never started"
        assert runtime.status(drained) == "DRAIN"
        assert set(site.spread(10)) == {other}
        assert "response" not in slow, "the slow request ended before the drain was checked"
    finally:
        request.join(timeout=SLOW_SECONDS + 30)
        if runner is not None:
            runner.join(timeout=SLOW_SECONDS + 120)
    assert "proc" in drain, "the drain did not end"
    proc = drain["proc"]
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert drain["ended"] >= slow["ended"], "the drain ended before the open request did"
    assert runtime.status(drained) == "MAINT"
    assert slow["response"].status_code == 200
    assert slow["response"].json()["host"] == drained


def test_a_down_host_is_drained_and_put_back_once_fixed(site: Site, apps, runtime: RuntimeApi) -> None:
    # A host failing its health checks never reports DRAIN: waiting for that would time out and
    # stop a rolling run that reaches it.
    apps["app2"].run_test("touch /run/echo-app/unhealthy")
    assert wait_until(lambda: runtime.status("app2") == "DOWN", timeout=10), runtime.stat()["app2"]
    drained = switch_server("app2", "drained")
    assert drained.returncode == 0, drained.stdout[-3000:]
    assert runtime.status("app2") == "MAINT"
    # What a rolling run does next: fix the host, then put it back.
    apps["app2"].run_test("rm /run/echo-app/unhealthy")
    enabled = switch_server("app2", "enabled")
    assert enabled.returncode == 0, enabled.stdout[-3000:]
    # Back in rotation at once ("UP 1/2" while its check count fills up), fully UP within seconds.
    assert runtime.status("app2").startswith("UP"), runtime.stat()["app2"]
    assert wait_until(lambda: runtime.status("app2") == "UP", timeout=10), runtime.stat()["app2"]
    assert "app2" in site.spread(4)


@pytest.mark.parametrize("state", ["drained", "enabled"])
def test_a_server_missing_from_the_backend_is_an_error(runtime: RuntimeApi, state: str) -> None:
    proc = switch_server("app1", state, "-e", "haproxy_server_name=app9")
    assert proc.returncode != 0, proc.stdout[-3000:]
    assert f"'{BACKEND}/app9' was not found" in proc.stdout, proc.stdout[-3000:]
    assert runtime.status("app1") == "UP"


def _reload(lb, runtime: RuntimeApi) -> None:
    """Reload HAProxy and wait until the new worker answers the runtime API."""
    old_pid = runtime.worker_pid()
    lb.run_test("systemctl reload haproxy")
    assert wait_until(lambda: runtime.worker_pid() != old_pid, timeout=10), "no new worker after reload"


def _admin_state(runtime: RuntimeApi, server: str) -> int:
    """srv_admin_state of a server, from `show servers state`."""
    fields = next(line.split() for line in runtime.send(f"show servers state {BACKEND}").splitlines()
                  if line.split()[3:4] == [server])
    return int(fields[6])


@pytest.mark.parametrize("drained, other", [("app1", "app2"), ("app2", "app1")])
def test_drained_host_stays_drained_across_reload(site: Site, lb, runtime: RuntimeApi, drained, other) -> None:
    # Both orders: a state file left from an earlier reload cannot pass for both.
    runtime.make_ready(other)
    runtime.send(f"set server {BACKEND}/{drained} state drain")
    _reload(lb, runtime)
    assert runtime.status(drained) == "DRAIN"
    assert runtime.status(other) == "UP"
    assert _admin_state(runtime, drained) & 0x08, "srv_admin_state lacks the forced-drain flag"
    assert set(site.spread(6)) == {other}


def test_https_serves_the_generated_certificate(site: Site, lb_address: str, lb_vars) -> None:
    served = ssl.get_server_certificate((lb_address, 443))
    on_disk = site.cert_file.read_text()
    assert ssl.PEM_cert_to_DER_cert(served) == ssl.PEM_cert_to_DER_cert(on_disk)
    cert = x509.load_pem_x509_certificate(on_disk.encode())
    domain = "shop.example.test"
    assert cert.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)[0].value == domain
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert domain in names.get_values_for_type(x509.DNSName)
    # The client checks the certificate against the address it connected to (an IP entry).
    assert site.get("/").status_code == 200


def _handshake(address: str, version: ssl.TLSVersion) -> str:
    """Complete a TLS handshake offering only `version`; return the version agreed."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    # The client's own OpenSSL policy must not be what refuses old versions: allow everything.
    context.set_ciphers("ALL:@SECLEVEL=0")
    context.minimum_version = version
    context.maximum_version = version
    with socket.create_connection((address, 443), timeout=5) as raw:
        with context.wrap_socket(raw) as tls:
            return tls.version()


def test_tls_1_2_is_accepted(lb_address: str) -> None:
    assert _handshake(lb_address, ssl.TLSVersion.TLSv1_2) == "TLSv1.2"


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
def test_tls_1_1_is_refused(lb_address: str) -> None:
    with pytest.raises(ssl.SSLError):
        _handshake(lb_address, ssl.TLSVersion.TLSv1_1)


def test_http_redirects_to_https(lb_address: str) -> None:
    response = requests.get(f"http://{lb_address}/guestbook/?page=2", allow_redirects=False, timeout=10)
    assert response.status_code in (301, 302)
    assert response.headers["Location"] == f"https://{lb_address}/guestbook/?page=2"


def test_forwarded_headers_come_from_the_load_balancer(site: Site, lb_address: str) -> None:
    forged = {"X-Forwarded-For": "6.6.6.6", "X-Forwarded-Proto": "http", "X-Forwarded-Host": "evil.example",
              "Forwarded": "for=6.6.6.6;proto=http", "X-Real-IP": "6.6.6.6"}
    seen = {k.lower(): v for k, v in site.get("/", headers=forged).json()["headers"].items()}
    with socket.create_connection((lb_address, 443), timeout=5) as probe:
        own_address = probe.getsockname()[0]
    assert seen["x-forwarded-for"] == own_address
    assert seen["x-forwarded-proto"] == "https"
    assert seen["x-forwarded-host"] == lb_address
    assert "forwarded" not in seen
    assert "x-real-ip" not in seen


def test_stats_listen_on_the_private_address_only(lb, lb_address: str) -> None:
    assert lb.socket(f"tcp://{lb_address}:{STATS_PORT}").is_listening
    assert not lb.socket(f"tcp://0.0.0.0:{STATS_PORT}").is_listening


def test_runtime_api_is_closed_to_other_users(lb) -> None:
    """The admin socket drains and disables servers: no access for users outside its group."""
    sock = lb.file("/run/haproxy/admin.sock")
    assert sock.is_socket
    assert sock.mode & 0o007 == 0, oct(sock.mode)
    as_nobody = lb.run("echo 'show info' | runuser -u nobody -- socat -t 2 - UNIX-CONNECT:/run/haproxy/admin.sock")
    assert as_nobody.rc != 0 and "Uptime" not in as_nobody.stdout, as_nobody.stdout


def test_stats_page_needs_the_password(lb_address: str, lb_vars) -> None:
    url = f"http://{lb_address}:{STATS_PORT}/stats"
    password = str(lb_vars["vault_haproxy_stats_password"])
    assert requests.get(url, timeout=10).status_code == 401
    assert requests.get(url, auth=("stats", "wrong"), timeout=10).status_code == 401
    page = requests.get(url, auth=("stats", password), timeout=10)
    assert page.status_code == 200
    assert "app1" in page.text and "app2" in page.text


def test_metrics_need_the_password(lb_address: str, lb_vars) -> None:
    url = f"http://{lb_address}:{STATS_PORT}/metrics"
    password = str(lb_vars["vault_haproxy_stats_password"])
    assert requests.get(url, timeout=10).status_code == 401
    metrics = requests.get(url, auth=("stats", password), timeout=10)
    assert metrics.status_code == 200
    for server in ("app1", "app2"):
        assert re.search(rf'^haproxy_server_status\{{proxy="{BACKEND}",server="{server}",state="UP"\}} 1$',
                         metrics.text, re.M), f"no UP status metric for {server}"

"""Fixtures of the HAProxy scenario: the load balancer, the stand-in app hosts, how to reach them."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
import requests
import testinfra

T = TypeVar("T")

ADMIN_SOCKET = "/run/haproxy/admin.sock"
BACKEND = "app"
CERT_PATH = "/etc/haproxy/ssl/site.pem"
SERVER_PLAYBOOK = Path(__file__).resolve().parent.parent / "server.yml"


def wait_until(check: Callable[[], T], timeout: float = 20, interval: float = 0.3) -> T:
    """Call `check` until it returns a true value or `timeout` seconds pass; return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def switch_server(host: str, state: str, *extra: str) -> subprocess.CompletedProcess[str]:
    """Drain (`drained`) or enable an app server the way the rolling playbooks do: server.yml runs
    the haproxy role's `server` entry point for `host`, delegated to the load balancer. Its output,
    errors included, is in `stdout`."""
    return subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"),
                           "-i", os.environ["MOLECULE_INVENTORY_FILE"], str(SERVER_PLAYBOOK),
                           "--limit", host, "-e", f"haproxy_verify_state={state}", *extra],
                          text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)


def _host(name: str):
    return testinfra.get_host(f"ansible://{name}", ansible_inventory=os.environ["MOLECULE_INVENTORY_FILE"])


@pytest.fixture(scope="session")
def lb():
    """The load balancer, lb1."""
    return _host("lb1")


@pytest.fixture(scope="session")
def apps() -> dict[str, object]:
    """The stand-in app hosts by inventory name."""
    return {name: _host(name) for name in ("app1", "app2")}


@pytest.fixture(scope="session")
def lb_vars(lb) -> dict[str, object]:
    """lb1's inventory variables (address, stats password)."""
    return lb.ansible.get_variables()


@pytest.fixture(scope="session")
def lb_address(lb_vars) -> str:
    return str(lb_vars["ansible_host"])


@pytest.fixture(scope="session")
def cert_file(lb, tmp_path_factory) -> Path:
    """The certificate lb1 has on disk, copied here so the client can trust exactly that one."""
    path = tmp_path_factory.mktemp("tls") / "site.pem"
    path.write_text(lb.file(CERT_PATH).content_string)
    return path


class Site:
    """The site as a browser sees it, through the load balancer."""

    def __init__(self, address: str, cert_file: Path) -> None:
        self.address = address
        self.cert_file = cert_file

    def get(self, path: str, **kwargs) -> requests.Response:
        kwargs.setdefault("timeout", 15)
        return requests.get(f"https://{self.address}{path}", verify=str(self.cert_file), **kwargs)

    def served_by(self, path: str = "/") -> str:
        """Which app host answered a fresh request."""
        response = self.get(path)
        assert response.status_code == 200, response.text
        return response.json()["host"]

    def spread(self, count: int) -> list[str]:
        """The app hosts that answered `count` fresh requests, in order."""
        return [self.served_by() for _ in range(count)]


@pytest.fixture(scope="session")
def site(lb_address, cert_file) -> Site:
    return Site(lb_address, cert_file)


class RuntimeApi:
    """HAProxy's runtime API on lb1's admin socket."""

    def __init__(self, lb) -> None:
        self.lb = lb

    def send(self, command: str) -> str:
        return self.lb.check_output(f"echo %s | socat -t 5 stdio UNIX-CONNECT:{ADMIN_SOCKET}", command)

    def stat(self) -> dict[str, dict[str, str]]:
        """`show stat` rows of the app backend's servers, by server name."""
        text = self.send("show stat").lstrip("# ")
        return {row["svname"]: row for row in csv.DictReader(io.StringIO(text))
                if row["pxname"] == BACKEND and row["svname"] not in ("FRONTEND", "BACKEND")}

    def status(self, server: str) -> str:
        return self.stat()[server]["status"]

    def worker_pid(self) -> str:
        info = dict(line.split(": ", 1) for line in self.send("show info").splitlines() if ": " in line)
        return info["Pid"]

    def make_ready(self, server: str) -> None:
        """Put a server back in rotation and wait until HAProxy sends it traffic again."""
        self.send(f"set server {BACKEND}/{server} state ready")
        assert wait_until(lambda: self.status(server) == "UP"), self.stat()[server]


@pytest.fixture
def runtime(lb, apps) -> Iterator[RuntimeApi]:
    """The runtime API; every app server is back in rotation after the test, whatever it did."""
    api = RuntimeApi(lb)
    yield api
    for name, app in apps.items():
        app.run("rm -f /run/echo-app/unhealthy")
        api.make_ready(name)

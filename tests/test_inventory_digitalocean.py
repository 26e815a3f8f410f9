"""The DigitalOcean inventory, against recorded API responses served on 127.0.0.1.

The responses under fixtures/digitalocean are synthetic (made-up droplets, documentation address
ranges) but shaped like the API's /v2/droplets pages, pagination links included. A copy of
inventories/digitalocean points the plugin's `baseurl` at a local server; nothing leaves the
machine and no fleet is needed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from conftest import BIN, ROOT, ansible_env, fill_vault

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "digitalocean"
# The pages' links name the API as "{api}": the fake server puts its own address there.
API_PLACEHOLDER = "{api}"
# A made-up token: the server only checks that the one from DO_API_TOKEN arrives.
TOKEN = "dop_v1_example_not_a_real_token"
PER_PAGE = 4
TIERS = ("lb", "app", "db", "cache", "storage")


@dataclass
class FakeApi:
    """A local stand-in for the droplets endpoint, and the requests it answered."""

    base_url: str
    requests: list[str] = field(default_factory=list)


def make_handler(api: FakeApi) -> type[BaseHTTPRequestHandler]:
    """A request handler serving the recorded pages, with their links rewritten to this server."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the http.server API)
            url = urlsplit(self.path)
            api.requests.append(self.path)
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                self.reply(401, {"id": "unauthorized", "message": "Unable to authenticate you"})
                return
            query = parse_qs(url.query)
            if url.path != "/v2/droplets" or query.get("per_page") != [str(PER_PAGE)]:
                self.reply(404, {"id": "not_found", "message": "The resource you requested could not be found."})
                return
            page = FIXTURES / f"droplets-page{query.get('page', ['1'])[0]}.json"
            self.reply(200, json.loads(page.read_text().replace(API_PLACEHOLDER, api.base_url)))

        def reply(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (the http.server API)
            """Keep the test output quiet; the requests are recorded in `api.requests`."""

    return Handler


@pytest.fixture(scope="module")
def fake_api() -> Iterator[FakeApi]:
    """Serve the recorded droplet pages on a free port of 127.0.0.1 for the module's tests."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    api = FakeApi(f"http://127.0.0.1:{server.server_address[1]}/v2")
    server.RequestHandlerClass = make_handler(api)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield api
    server.shutdown()
    server.server_close()


@pytest.fixture
def do_inventory(tmp_path: Path, fake_api: FakeApi) -> Path:
    """A copy of inventories/digitalocean whose plugin talks to the fake API, with its vault filled in."""
    inventory = tmp_path / "digitalocean"
    shutil.copytree(ROOT / "inventories" / "digitalocean", inventory)
    config_file = inventory / "digitalocean.yml"
    config = yaml.safe_load(config_file.read_text())
    config.update(baseurl=fake_api.base_url, pagination=PER_PAGE)
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    fill_vault(inventory)
    return inventory


def do_env(token: str | None = TOKEN) -> dict[str, str]:
    """The ansible environment with DO_API_TOKEN set to `token` (or unset)."""
    env = ansible_env()
    env.pop("DO_API_TOKEN", None)
    if token is not None:
        env["DO_API_TOKEN"] = token
    return env


def unwrap(value: object) -> object:
    """Replace ansible-inventory's `{"__ansible_unsafe": x}` markers (data from the API) by x."""
    if isinstance(value, dict):
        if set(value) == {"__ansible_unsafe"}:
            return value["__ansible_unsafe"]
        return {key: unwrap(item) for key, item in value.items()}
    if isinstance(value, list):
        return [unwrap(item) for item in value]
    return value


def inventory_list(inventory: Path, env: dict[str, str]) -> dict:
    """`ansible-inventory --list` of an inventory, parsed."""
    proc = subprocess.run([str(BIN / "ansible-inventory"), "-i", str(inventory), "--list"],
                          cwd=ROOT, env=env, text=True, capture_output=True, check=True)
    return unwrap(json.loads(proc.stdout))


def members(listing: dict, group: str) -> set[str]:
    """Hosts of a group in an `ansible-inventory --list` result, through its child groups."""
    entry = listing.get(group, {})
    hosts = set(entry.get("hosts", []))
    for child in entry.get("children", []):
        hosts |= members(listing, child)
    return hosts


def test_droplets_are_grouped_by_their_tags(do_inventory: Path, fake_api: FakeApi) -> None:
    """Each django-* tag puts a droplet in its tier; the cluster group holds every tier."""
    listing = inventory_list(do_inventory, do_env())
    assert {tier: members(listing, tier) for tier in TIERS} == {
        "lb": {"web-lb-1"},
        "app": {"web-app-1", "web-app-2"},
        "db": {"web-db-1"},
        "cache": {"web-cache-1"},
        "storage": {"web-cache-1"},
    }
    assert set(listing["cluster"]["children"]) == set(TIERS)
    assert members(listing, "cluster") == {"web-lb-1", "web-app-1", "web-app-2", "web-db-1", "web-cache-1"}
    # Both pages were read: the second came from the first page's `links.pages.next`.
    assert any("page=2" in path for path in fake_api.requests)


def test_droplet_without_our_tags_is_left_out(do_inventory: Path) -> None:
    """A droplet of the same account without a django-* tag is in no group, not even `all`."""
    listing = inventory_list(do_inventory, do_env())
    assert "blog" not in listing["_meta"]["hostvars"]
    assert all("blog" not in members(listing, group) for group in listing if group != "_meta")


def test_ssh_goes_to_public_and_cluster_traffic_to_private_address(do_inventory: Path) -> None:
    """ansible_host is the public IPv4 address, cluster_address the VPC one, whatever their order."""
    hostvars = inventory_list(do_inventory, do_env())["_meta"]["hostvars"]
    addresses = {host: (hv["ansible_host"], hv["cluster_address"]) for host, hv in hostvars.items()}
    assert addresses == {
        "web-lb-1": ("203.0.113.10", "10.114.0.10"),
        "web-app-1": ("203.0.113.21", "10.114.0.21"),
        "web-app-2": ("203.0.113.22", "10.114.0.22"),
        "web-db-1": ("203.0.113.31", "10.114.0.31"),
        "web-cache-1": ("203.0.113.41", "10.114.0.41"),
    }


def test_preflight_accepts_the_digitalocean_inventory(do_inventory: Path) -> None:
    """The example group_vars with a filled-in vault pass every check (no host is contacted)."""
    proc = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(do_inventory),
                           str(ROOT / "playbooks" / "preflight.yml")],
                          cwd=ROOT, env=do_env(), text=True, capture_output=True)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "failed=0" in proc.stdout and "unreachable=0" in proc.stdout


def test_missing_token_stops_the_run_with_a_clear_message(do_inventory: Path, fake_api: FakeApi) -> None:
    """Without DO_API_TOKEN the inventory is empty, and the preflight stops the site playbook."""
    fake_api.requests.clear()
    env = do_env(token=None)
    proc = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(do_inventory),
                           str(ROOT / "playbooks" / "site.yml")],
                          cwd=ROOT, env=env, text=True, capture_output=True)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "Set DO_API_TOKEN" in output
    assert "The group lb is empty" in output
    assert "PLAY [Resolve the values every tier shares]" not in output
    assert fake_api.requests == []


"""Fixtures for the django_app scenario: the app host's web front, reached over the network."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import requests
import testinfra

APP = "/srv/exampleapp"
SERVICE = "exampleapp-gunicorn"


def _host(name: str):
    return testinfra.get_host(f"ansible://{name}", ansible_inventory=os.environ["MOLECULE_INVENTORY_FILE"])


@pytest.fixture(scope="session")
def app_host():
    """The app host, to look at files and services."""
    return _host("app1")


@pytest.fixture(scope="session")
def cache_host():
    """The cache host, to stop memcached for a moment."""
    return _host("cache1")


@pytest.fixture(scope="session")
def web(app_host) -> str:
    """Base URL of the app host's web front on its cluster address, as HAProxy reaches it."""
    address = app_host.ansible.get_variables()["ansible_host"]
    return f"http://{address}:8080"


@pytest.fixture
def session() -> Iterator[requests.Session]:
    """An HTTP client that sends the site's canonical host name."""
    with requests.Session() as client:
        client.headers["Host"] = "localhost"
        yield client

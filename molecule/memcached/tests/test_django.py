"""From the controller, through Django's cache settings: keys spread over every cache host."""

import json
import secrets

import django
import pytest
from django.conf import settings
from pymemcache.client.base import Client

testinfra_hosts = ["app"]


@pytest.fixture(scope="module")
def endpoints(host, cache_addresses, cache_port) -> list[str]:
    """The LOCATION list the app host was given by the cluster role; it must name every cache host."""
    given = json.loads(host.file("/etc/cluster-cache-endpoints.json").content_string)
    assert sorted(given) == sorted(f"{a}:{cache_port}" for a in cache_addresses.values())
    return given


@pytest.fixture(scope="module")
def django_cache(endpoints):
    """Django's default cache, configured the way the app hosts configure it."""
    if not settings.configured:
        settings.configure(
            CACHES={
                "default": {
                    "BACKEND": "django.core.cache.backends.memcached.PyMemcacheCache",
                    "LOCATION": endpoints,
                    "OPTIONS": {"connect_timeout": 3, "timeout": 3},
                }
            }
        )
        django.setup()
    from django.core.cache import caches

    return caches["default"]


def test_keys_from_django_land_on_every_cache_host(django_cache, endpoints):
    run = secrets.token_hex(4)
    written = {f"spread-{run}-{i}": i for i in range(100)}
    django_cache.set_many(written, timeout=300)
    assert django_cache.get_many(list(written)) == written

    stored_keys = [django_cache.make_key(k) for k in written]
    per_host = {}
    for endpoint in endpoints:
        address, port = endpoint.rsplit(":", 1)
        direct = Client((address, int(port)), connect_timeout=3, timeout=3)
        try:
            per_host[endpoint] = set(direct.get_many(stored_keys))
        finally:
            direct.close()
    assert all(per_host.values()), f"a cache host holds none of the keys: { {e: len(k) for e, k in per_host.items()} }"
    assert sum(len(keys) for keys in per_host.values()) == len(written)
    assert set().union(*per_host.values()) == set(stored_keys)

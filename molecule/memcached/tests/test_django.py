"""From the app host, through Django's cache settings: keys spread over every cache host."""

import json
import secrets

import pytest

testinfra_hosts = ["app"]

# Run on the app host with the distribution's Django and pymemcache: write a hundred keys through
# Django's cache configured like the app's, read them back, then ask each cache host directly
# which of them it holds. Prints the result as JSON.
DJANGO_PROBE = """
import json, sys
import django
from django.conf import settings
endpoints, run = json.loads(sys.argv[1]), sys.argv[2]
settings.configure(CACHES={"default": {
    "BACKEND": "django.core.cache.backends.memcached.PyMemcacheCache",
    "LOCATION": endpoints,
    "OPTIONS": {"connect_timeout": 3, "timeout": 3},
}})
django.setup()
from django.core.cache import cache
from pymemcache.client.base import Client
written = {f"spread-{run}-{i}": i for i in range(100)}
cache.set_many(written, timeout=300)
stored = [cache.make_key(k) for k in written]
per_host = {}
for endpoint in endpoints:
    address, port = endpoint.rsplit(":", 1)
    direct = Client((address, int(port)), connect_timeout=3, timeout=3)
    try:
        per_host[endpoint] = sorted(direct.get_many(stored))
    finally:
        direct.close()
print(json.dumps({"read_back": cache.get_many(list(written)) == written, "stored": stored, "per_host": per_host}))
"""


@pytest.fixture(scope="module")
def endpoints(host, cache_addresses, cache_port) -> list[str]:
    """The LOCATION list the app host was given by the cluster role; it must name every cache host."""
    given = json.loads(host.file("/etc/cluster-cache-endpoints.json").content_string)
    assert sorted(given) == sorted(f"{a}:{cache_port}" for a in cache_addresses.values())
    return given


def test_keys_from_django_land_on_every_cache_host(host, endpoints):
    result = host.run("python3 -c %s %s %s", DJANGO_PROBE, json.dumps(endpoints), secrets.token_hex(4))
    assert result.rc == 0, result.stderr
    probe = json.loads(result.stdout)
    assert probe["read_back"], "Django did not read back the values it wrote"
    per_host = probe["per_host"]
    assert all(per_host.values()), f"a cache host holds none of the keys: { {e: len(k) for e, k in per_host.items()} }"
    assert sum(len(keys) for keys in per_host.values()) == len(probe["stored"]) == 100
    assert set().union(*per_host.values()) == set(probe["stored"])

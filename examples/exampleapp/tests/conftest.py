"""Fixtures of the example project's tests: isolated media, cache and static roots per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.cache import cache


@pytest.fixture(autouse=True)
def isolated_media(settings, tmp_path: Path) -> Path:
    """Uploads go to a temporary directory, never into the source tree."""
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


@pytest.fixture(autouse=True)
def plain_static(settings) -> None:
    """Pages render without a collectstatic run; the test of hashed names restores the manifest."""
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


@pytest.fixture(autouse=True)
def empty_cache() -> Iterator[None]:
    """Each test starts and ends with an empty cache."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def broken_cache(settings) -> None:
    """A cache backend that stores nothing, as when every memcached host is down."""
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"}}

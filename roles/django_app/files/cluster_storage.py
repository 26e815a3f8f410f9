"""Media storage for the cluster's S3-compatible store, reached by browsers through the site.

The store listens on a private address, so its URLs mean nothing to a browser. This storage
answers URLs under the site's own media prefix instead; each app host's web front proxies that
prefix to the store with the host and path the URL was signed for, so signatures stay valid.
"""

from __future__ import annotations

from typing import Any

from storages.backends.s3 import S3Storage


class SiteMediaS3Storage(S3Storage):
    """S3Storage whose URLs start with the site's media prefix (default /media/), not the store's."""

    def __init__(self, **settings: Any) -> None:
        self.site_prefix = settings.pop("site_prefix", "/media/")
        super().__init__(**settings)

    def url(self, name: str, parameters: dict | None = None, expire: int | None = None,
            http_method: str | None = None) -> str:
        """The store's URL (signed unless objects are public), moved under the site's prefix."""
        url = super().url(name, parameters=parameters, expire=expire, http_method=http_method)
        store = f"{self.endpoint_url.rstrip('/')}/{self.bucket_name}/"
        return self.site_prefix + url[len(store):] if url.startswith(store) else url

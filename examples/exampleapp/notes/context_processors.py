"""Template context shared by every page."""

import socket

from django.conf import settings
from django.http import HttpRequest

HOST = socket.gethostname()


def deployment(request: HttpRequest) -> dict[str, str]:
    """Which host and release rendered the page, for the footer."""
    return {"host": HOST, "release": settings.RELEASE_ID}

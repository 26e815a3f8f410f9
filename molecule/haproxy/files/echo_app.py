#!/usr/bin/env python3
"""Stand-in app host for the HAProxy scenario: answers like a Django app behind the load balancer.

GET /healthz      200, or 503 while the flag file exists (a failing app host)
GET /slow?s=N     waits N seconds (at most 50, under HAProxy's server timeout), then answers like any other path
any other path    JSON: this host's name, the client address HAProxy connected from, the headers

Like Django's ALLOWED_HOSTS it answers 400 to a Host header it does not serve, so a health check
without the right Host header fails here as it would against the real app.
"""

from __future__ import annotations

import argparse
import json
import socket
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

UNHEALTHY_FLAG = Path("/run/echo-app/unhealthy")


class Handler(BaseHTTPRequestHandler):
    """One request: route by path, answer in JSON."""

    protocol_version = "HTTP/1.1"
    allowed_hosts: frozenset[str] = frozenset()

    def do_GET(self) -> None:  # noqa: N802 (name fixed by BaseHTTPRequestHandler)
        url = urlsplit(self.path)
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0]
        if host not in self.allowed_hosts:
            self.answer(400, {"error": f"host {host!r} not allowed"})
        elif url.path == "/healthz":
            healthy = not UNHEALTHY_FLAG.exists()
            self.answer(200 if healthy else 503, {"healthy": healthy})
        else:
            if url.path == "/slow":
                time.sleep(min(float(parse_qs(url.query).get("s", ["1"])[0]), 50))
            self.answer(200, {"host": socket.gethostname(), "client": self.client_address[0],
                              "path": self.path, "headers": {k: v for k, v in self.headers.items()}})

    def answer(self, status: int, body: dict[str, object]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bind", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--allowed-host", action="append", default=[])
    args = parser.parse_args()
    Handler.allowed_hosts = frozenset(args.allowed_host)
    ThreadingHTTPServer((args.bind, args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()

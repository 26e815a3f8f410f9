"""Views of the guestbook, plus the endpoints operations and tests rely on.

/healthz, /whoami and /slow exist for the load balancer and for deployment tests: health that
checks the database and cache for real, which host and release answered, and a request that
stays in flight long enough to prove a reload does not cut it off.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import uuid

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.cache import cache
from django.core.files.storage import default_storage
from django.db import DatabaseError, connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods

from .models import Note

LOG = logging.getLogger(__name__)
HOST = socket.gethostname()
MAX_TEXT = Note._meta.get_field("text").max_length


def _author(request: HttpRequest) -> str:
    return request.user.get_username() if request.user.is_authenticated else "anonymous"


@require_http_methods(["GET", "POST"])
def index(request: HttpRequest) -> HttpResponse:
    """The guestbook page: list the latest notes; a form POST adds one."""
    error = ""
    if request.method == "POST":
        text = request.POST.get("text", "").strip()
        if text and len(text) <= MAX_TEXT:
            Note.objects.create(text=text, author=_author(request), host=HOST)
            return redirect("index")
        error = f"Write between 1 and {MAX_TEXT} characters."
    notes = Note.objects.all()[:50]
    return render(request, "notes/index.html", {"notes": notes, "error": error}, status=400 if error else 200)


@csrf_exempt  # A public JSON API without cookies-based auth: no cross-site request to forge.
@require_http_methods(["GET", "POST"])
def api_notes(request: HttpRequest) -> JsonResponse:
    """GET: the latest notes as JSON. POST {"text": ...}: add an anonymous note, 201."""
    if request.method == "POST":
        try:
            text = str(json.loads(request.body or b"{}").get("text", "")).strip()
        except (ValueError, AttributeError):
            return JsonResponse({"error": "expected a JSON object"}, status=400)
        if not text or len(text) > MAX_TEXT:
            return JsonResponse({"error": f"text must have 1 to {MAX_TEXT} characters"}, status=400)
        note = Note.objects.create(text=text, author="anonymous", host=HOST)
        return JsonResponse(note.as_dict(), status=201)
    return JsonResponse({"notes": [n.as_dict() for n in Note.objects.all()[:50]]})


@login_required
def me(request: HttpRequest) -> JsonResponse:
    """Who is logged in, and which host read the session: proves sessions are shared."""
    return JsonResponse({"user": request.user.get_username(), "host": HOST})


@never_cache
@require_GET
def cached(request: HttpRequest) -> JsonResponse:
    """A value computed once and kept in the shared cache: says which host computed it."""
    value = cache.get("notes:cached-view")
    hit = value is not None
    if not hit:
        value = {"cached_by": HOST, "cached_at": timezone.now().isoformat(), "notes": Note.objects.count()}
        cache.set("notes:cached-view", value, settings.CACHED_VIEW_SECONDS)
    return JsonResponse({**value, "hit": hit, "served_by": HOST})


@require_http_methods(["GET", "POST"])
def upload(request: HttpRequest) -> HttpResponse:
    """GET: an upload form. POST (multipart, field `file`): store it as media, answer its URL."""
    if request.method == "GET":
        return render(request, "notes/upload.html")
    uploaded = request.FILES.get("file")
    if uploaded is None:
        return JsonResponse({"error": "no file in field 'file'"}, status=400)
    name = default_storage.save(f"uploads/{uploaded.name}", uploaded)
    return JsonResponse({"name": name, "url": default_storage.url(name), "host": HOST}, status=201)


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """The load balancer's check: 503 when the database fails, 200 otherwise.

    A failing cache is reported ("degraded", with "cache" in "failing") but does not fail the
    check: the cache is shared, so its outage hits every app host at once, and taking them all out
    of rotation would turn a slower site (sessions are read from the database then) into no site.
    """
    problems = []
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError as exc:
        LOG.warning("health: database unavailable: %s", exc)
        problems.append("database")
    token = uuid.uuid4().hex
    try:
        cache.set(f"healthz:{HOST}", token, 30)
        if cache.get(f"healthz:{HOST}") != token:
            problems.append("cache")
    except Exception as exc:  # Any backend error means the cache does not answer.
        LOG.warning("health: cache unavailable: %s", exc)
        problems.append("cache")
    failed = "database" in problems
    status = "fail" if failed else "degraded" if problems else "ok"
    return JsonResponse({"status": status, "failing": problems, "host": HOST}, status=503 if failed else 200)


@never_cache
@require_GET
def whoami(request: HttpRequest) -> JsonResponse:
    """Which host, process and release served this request."""
    return JsonResponse({"hostname": HOST, "release": settings.RELEASE_ID, "pid": os.getpid()})


@never_cache
@require_GET
def slow(request: HttpRequest) -> JsonResponse:
    """Answer after ?seconds=N (0 to SLOW_MAX_SECONDS): a request that stays in flight."""
    try:
        seconds = float(request.GET.get("seconds", "1"))
    except ValueError:
        return JsonResponse({"error": "seconds must be a number"}, status=400)
    if not 0 <= seconds <= settings.SLOW_MAX_SECONDS:
        return JsonResponse({"error": f"seconds must be between 0 and {settings.SLOW_MAX_SECONDS}"}, status=400)
    started = time.monotonic()
    time.sleep(seconds)  # The delay is this endpoint's purpose.
    elapsed = round(time.monotonic() - started, 3)
    return JsonResponse({"slept": elapsed, "hostname": HOST, "release": settings.RELEASE_ID, "pid": os.getpid()})

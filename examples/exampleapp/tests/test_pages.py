"""The guestbook's pages against a real PostgreSQL database."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.templatetags.static import static
from django.test import Client

from notes.models import Note

pytestmark = pytest.mark.django_db


def test_database_is_postgresql() -> None:
    from django.db import connection

    assert connection.vendor == "postgresql"


def test_form_post_writes_a_note_and_the_page_lists_it(client: Client) -> None:
    response = client.post("/", {"text": "hello from a test"})
    assert response.status_code == 302
    assert Note.objects.get().text == "hello from a test"
    page = client.get("/")
    assert b"hello from a test" in page.content


def test_form_rejects_empty_text(client: Client) -> None:
    assert client.post("/", {"text": "  "}).status_code == 400
    assert Note.objects.count() == 0


def test_json_api_writes_and_reads(client: Client) -> None:
    created = client.post("/api/notes", json.dumps({"text": "via api"}), content_type="application/json")
    assert created.status_code == 201
    listed = client.get("/api/notes").json()["notes"]
    assert [n["text"] for n in listed] == ["via api"]
    assert listed[0]["id"] == created.json()["id"]


def test_json_api_rejects_bad_bodies(client: Client) -> None:
    assert client.post("/api/notes", "not json", content_type="application/json").status_code == 400
    assert client.post("/api/notes", json.dumps({"text": ""}), content_type="application/json").status_code == 400


def test_login_sets_a_session_that_me_reads(client: Client) -> None:
    User.objects.create_user("alice", password="s3cret-pass")
    assert client.get("/me").status_code == 302
    response = client.post("/accounts/login/", {"username": "alice", "password": "s3cret-pass"})
    assert response.status_code == 302
    assert client.get("/me").json()["user"] == "alice"


def test_notes_of_a_logged_in_user_carry_the_name(client: Client) -> None:
    User.objects.create_user("bob", password="s3cret-pass")
    client.login(username="bob", password="s3cret-pass")
    client.post("/", {"text": "signed"})
    assert Note.objects.get().author == "bob"


def test_cached_view_computes_once_then_hits(client: Client) -> None:
    first = client.get("/cached").json()
    second = client.get("/cached").json()
    assert first["hit"] is False
    assert second["hit"] is True
    assert second["cached_at"] == first["cached_at"]


def test_upload_stores_a_file_and_answers_its_url(client: Client, isolated_media) -> None:
    response = client.post("/upload", {"file": SimpleUploadedFile("hi.txt", b"hello media")})
    assert response.status_code == 201
    body = response.json()
    assert body["url"] == f"/media/{body['name']}"
    assert (isolated_media / body["name"]).read_bytes() == b"hello media"


def test_upload_without_a_file_is_refused(client: Client) -> None:
    assert client.post("/upload", {}).status_code == 400


def test_healthz_is_ok_when_database_and_cache_answer(client: Client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["failing"] == []


def test_healthz_reports_a_broken_cache_but_keeps_the_host_in(client: Client, broken_cache) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "degraded"
    assert response.json()["failing"] == ["cache"]


def test_healthz_fails_when_the_database_is_unreachable(client: Client, settings) -> None:
    from django.db import connection

    connection.close()
    real = connection.settings_dict["PORT"]
    connection.settings_dict["PORT"] = "1"  # Nothing listens on port 1.
    try:
        response = client.get("/healthz")
    finally:
        connection.close()
        connection.settings_dict["PORT"] = real
    assert response.status_code == 503
    assert "database" in response.json()["failing"]


def test_whoami_reports_host_and_release(client: Client, settings) -> None:
    settings.RELEASE_ID = "abc123"
    body = client.get("/whoami").json()
    assert body["release"] == "abc123"
    assert body["hostname"]


def test_slow_waits_and_is_bounded(client: Client, settings) -> None:
    settings.SLOW_MAX_SECONDS = 1
    assert client.get("/slow?seconds=0.2").json()["slept"] >= 0.2
    assert client.get("/slow?seconds=5").status_code == 400
    assert client.get("/slow?seconds=x").status_code == 400


def test_static_names_are_hashed_by_collectstatic(settings, tmp_path) -> None:
    settings.STATIC_ROOT = tmp_path / "static"
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.ManifestStaticFilesStorage"},
    }
    call_command("collectstatic", "--noinput", verbosity=0)
    url = static("notes/site.css")
    assert url.startswith("/static/notes/site.") and url != "/static/notes/site.css"
    assert (tmp_path / "static" / url.removeprefix("/static/")).exists()

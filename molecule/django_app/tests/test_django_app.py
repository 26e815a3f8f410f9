"""The example project, deployed by the role, answers through the web front with real services."""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
import uuid
from pathlib import Path

import requests
from conftest import APP, SERVICE

testinfra_hosts = ["ansible://app1"]


def test_gunicorn_and_nginx_run_and_start_at_boot(host) -> None:
    for name in (SERVICE, "nginx"):
        assert host.service(name).is_running, name
        assert host.service(name).is_enabled, name


def test_gunicorn_listens_on_loopback_only_and_nginx_on_the_cluster_address(host) -> None:
    address = host.ansible.get_variables()["ansible_host"]
    assert host.socket("tcp://127.0.0.1:8000").is_listening
    assert not host.socket("tcp://0.0.0.0:8000").is_listening
    assert host.socket(f"tcp://{address}:8080").is_listening


def test_release_layout_and_current_link(host) -> None:
    current = host.file(f"{APP}/current")
    assert current.is_symlink
    release_id = host.file(f"{current.linked_to}/RELEASE").content_string.strip()
    assert current.linked_to == f"{APP}/releases/{release_id}"
    assert host.file(f"{APP}/current/venv/bin/gunicorn").exists
    assert host.file(f"{APP}/current/static/staticfiles.json").exists
    assert host.file(f"{APP}/artifacts/exampleapp-{release_id}.tar.gz").exists


def test_secrets_file_is_readable_by_root_and_the_app_only(host) -> None:
    env = host.file("/etc/exampleapp/app.env")
    assert (env.user, env.group, env.mode) == ("root", "django", 0o640)
    assert host.user("django").uid == 2001 and host.group("django").gid == 2001


def test_healthz_is_ok_through_the_web_front(web, session) -> None:
    response = session.get(f"{web}/healthz", timeout=10)
    assert response.status_code == 200, response.text
    assert response.json()["failing"] == []


def test_healthz_reports_the_cache_down_but_keeps_the_host_in(web, session, cache_host) -> None:
    cache_host.run_test("systemctl stop memcached")
    try:
        response = session.get(f"{web}/healthz", timeout=10)
        page = session.get(f"{web}/", timeout=10)
    finally:
        cache_host.run_test("systemctl start memcached")
    # A shared cache's outage must not take every app host out of the load balancer at once.
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "degraded" and response.json()["failing"] == ["cache"]
    assert page.status_code == 200, "the site does not serve without its cache"
    # The app retries a dead cache host after 10 s: the cache is used again without a restart.
    deadline = time.monotonic() + 30
    while session.get(f"{web}/healthz", timeout=10).json()["status"] != "ok":
        assert time.monotonic() < deadline, "health did not recover after memcached came back"
        time.sleep(1)


def test_whoami_reports_the_release_the_host_runs(host, web, session) -> None:
    release_id = host.file(f"{APP}/current/RELEASE").content_string.strip()
    body = session.get(f"{web}/whoami", timeout=10).json()
    assert body == {**body, "hostname": "app1", "release": release_id}


def test_a_note_written_through_the_api_is_read_back(web, session) -> None:
    text = f"note {uuid.uuid4()}"
    created = session.post(f"{web}/api/notes", json={"text": text}, timeout=10)
    assert created.status_code == 201, created.text
    notes = session.get(f"{web}/api/notes", timeout=10).json()["notes"]
    assert text in [n["text"] for n in notes]


def test_login_gives_a_session_the_app_reads_back(web, session) -> None:
    login = f"{web}/accounts/login/"
    session.get(login, timeout=10)
    response = session.post(login, timeout=10, allow_redirects=False, data={
        "username": "demo", "password": "molecule-demo-pass",
        "csrfmiddlewaretoken": session.cookies["csrftoken"]})
    assert response.status_code == 302, response.text[:300]
    assert session.get(f"{web}/me", timeout=10).json()["user"] == "demo"


def test_cached_view_hits_the_shared_cache(web, session) -> None:
    session.get(f"{web}/cached", timeout=10)
    assert session.get(f"{web}/cached", timeout=10).json()["hit"] is True


def test_hashed_static_file_is_served_with_far_future_cache_headers(web, session) -> None:
    page = session.get(f"{web}/", timeout=10).text
    href = re.search(r'href="(/static/notes/site\.[0-9a-f]{12}\.css)"', page)
    assert href, "the page links no hashed style sheet"
    css = session.get(f"{web}{href[1]}", timeout=10)
    assert css.status_code == 200 and "font-family" in css.text
    assert "immutable" in css.headers["Cache-Control"] and "max-age=31536000" in css.headers["Cache-Control"]
    plain = session.get(f"{web}/static/notes/site.css", timeout=10)
    assert "immutable" not in plain.headers.get("Cache-Control", "")


def test_an_upload_is_served_back_as_media(web, session) -> None:
    session.get(f"{web}/upload", timeout=10)
    content = uuid.uuid4().bytes
    response = session.post(f"{web}/upload", files={"file": ("hello.bin", content)}, timeout=10,
                            headers={"X-CSRFToken": session.cookies["csrftoken"]})
    assert response.status_code == 201, response.text[:300]
    served = session.get(f"{web}{response.json()['url']}", timeout=10)
    assert served.status_code == 200 and served.content == content


def test_forwarded_proto_from_a_non_balancer_is_ignored(web, session) -> None:
    # Django would build https:// URLs if it believed the claim; the login redirect shows it.
    response = session.get(f"{web}/me", headers={"X-Forwarded-Proto": "https", "X-Forwarded-Ssl": "on"},
                           timeout=10, allow_redirects=False)
    assert response.status_code == 302
    assert not response.headers["Location"].startswith("https://")


def test_release_switch_and_reload_keep_every_request(host, web) -> None:
    """Switch `current` to another release and reload: in-flight and new requests all succeed."""
    current = host.file(f"{APP}/current").linked_to
    other = f"{APP}/releases/switchtest"
    host.run_test(f"rm -rf {other} && cp -a {current} {other} && echo switchtest > {other}/src/RELEASE")
    results: list[object] = []

    def fetch(path: str) -> None:
        try:
            results.append(requests.get(f"{web}{path}", headers={"Host": "localhost"}, timeout=30).status_code)
        except requests.RequestException as exc:
            results.append(exc)

    slow = threading.Thread(target=fetch, args=("/slow?seconds=3",))
    slow.start()
    try:
        time.sleep(0.5)  # Let the slow request reach a worker before the reload.
        host.run_test(f"ln -sfn {other} {APP}/current.new && mv -T {APP}/current.new {APP}/current")
        host.run_test(f"systemctl reload {SERVICE}")
        deadline = time.monotonic() + 20
        release = None
        while time.monotonic() < deadline and release != "switchtest":
            fetch("/healthz")
            whoami = requests.get(f"{web}/whoami", headers={"Host": "localhost"}, timeout=10)
            results.append(whoami.status_code)
            release = whoami.json()["release"] if whoami.ok else None
        slow.join(timeout=30)
        assert release == "switchtest", "the reload did not bring up the new release"
        assert results and all(r == 200 for r in results), results
    finally:
        host.run_test(f"ln -sfn {current} {APP}/current.new && mv -T {APP}/current.new {APP}/current")
        host.run_test(f"systemctl reload {SERVICE}")
        host.run_test(f"rm -rf {other}")


def test_a_run_stopped_between_link_and_reload_is_repaired_by_the_next(host, web) -> None:
    """The link already names the release but gunicorn still runs older code: converge reloads it."""
    current = host.file(f"{APP}/current").linked_to
    expected = host.file(f"{current}/src/RELEASE").content_string.strip()
    older = f"{APP}/releases/stoppedtest"
    host.run_test(f"rm -rf {older} && cp -a {current} {older} && echo stoppedtest > {older}/src/RELEASE")

    def served() -> str:
        return requests.get(f"{web}/whoami", headers={"Host": "localhost"}, timeout=10).json()["release"]

    try:
        # gunicorn loads the older code, as it ran before the interrupted switch...
        host.run_test(f"ln -sfn {older} {APP}/current.new && mv -T {APP}/current.new {APP}/current")
        host.run_test(f"systemctl reload {SERVICE} && echo stoppedtest > {APP}/loaded-release")
        deadline = time.monotonic() + 20
        while served() != "stoppedtest":
            assert time.monotonic() < deadline, "the older release never came up"
            time.sleep(0.5)
        # ...and the run was stopped right after it moved the link back to the deployed release.
        host.run_test(f"ln -sfn {current} {APP}/current.new && mv -T {APP}/current.new {APP}/current")
        assert served() == "stoppedtest"
        converge = subprocess.run(
            ["ansible-playbook", "-i", str(Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent),
             str(Path(__file__).resolve().parents[1] / "converge.yml")],
            capture_output=True, text=True, check=False)
        assert converge.returncode == 0, converge.stdout[-3000:] + converge.stderr[-2000:]
        deadline = time.monotonic() + 20
        while served() != expected:
            assert time.monotonic() < deadline, "converge left gunicorn on the older code"
            time.sleep(0.5)
        assert host.file(f"{APP}/loaded-release").content_string.strip() == current.rsplit("/", 1)[-1]
    finally:
        host.run_test(f"ln -sfn {current} {APP}/current.new && mv -T {APP}/current.new {APP}/current")
        host.run_test(f"systemctl reload {SERVICE} && rm -rf {older}")

"""Whole-cluster tests: the site playbook's result, checked through the real services.

Every test talks HTTP to the load balancer or straight to an app host's web front, the way a
browser or an operator would, on the shared test fleet deployed once by the `site` fixture.
"""

from __future__ import annotations

import json
import re
import uuid

import pytest
from conftest import Fleet, run_playbook
from helpers import ansible, app_host, lb_url, logged_in_session, new_session, present, secrets

pytestmark = pytest.mark.usefixtures("site")


def test_requests_through_the_load_balancer_reach_every_app_host(fleet: Fleet) -> None:
    session = new_session()
    seen = {session.get(lb_url(fleet, "/whoami"), timeout=10).json()["hostname"] for _ in range(20)}
    assert seen == set(fleet.groups["app"]), f"answered by {seen}"


def test_healthz_answers_on_every_app_host(fleet: Fleet) -> None:
    for host in fleet.groups["app"]:
        with app_host(fleet, host) as (session, base, headers):
            resp = session.get(f"{base}/healthz", headers=headers, timeout=10)
        assert resp.status_code == 200, f"{host}: {resp.status_code} {resp.text[:200]}"
        assert resp.json()["host"] == host


def test_a_login_holds_whichever_host_serves_the_next_request(fleet: Fleet) -> None:
    session = logged_in_session(fleet)
    hosts = set()
    for _ in range(12):
        resp = session.get(lb_url(fleet, "/me"), timeout=10, allow_redirects=False)
        assert resp.status_code == 200, f"logged out: {resp.status_code} {resp.headers.get('Location')}"
        assert resp.json()["user"] == "demo"
        hosts.add(resp.json()["host"])
    assert hosts == set(fleet.groups["app"]), f"the session was only read by {hosts}"


def test_an_upload_through_one_app_host_is_served_by_every_app_host(fleet: Fleet) -> None:
    first, *others = fleet.groups["app"]
    payload = uuid.uuid4().bytes * 100
    with app_host(fleet, first) as (session, base, headers):
        session.get(f"{base}/upload", headers=headers, timeout=10)
        token = session.cookies.get("csrftoken", "")
        # The CSRF cookie is marked Secure (the app sees https), and the tunnel is plain http.
        resp = session.post(f"{base}/upload", headers={**headers, "Cookie": f"csrftoken={token}"}, timeout=30,
                            data={"csrfmiddlewaretoken": token},
                            files={"file": (f"{uuid.uuid4().hex}.bin", payload)})
    assert resp.status_code == 201, resp.text[:300]
    assert resp.json()["host"] == first
    url = resp.json()["url"]
    path = re.sub(r"^https?://[^/]+", "", url)
    assert path.startswith("/media/"), f"media URL not under the site's /media/: {url}"
    for host in [first, *others]:
        with app_host(fleet, host) as (session, base, headers):
            got = session.get(f"{base}{path}", headers=headers, timeout=30)
        assert got.status_code == 200 and got.content == payload, f"{host}: {got.status_code}"
    through_lb = new_session().get(lb_url(fleet, path), timeout=30)
    assert through_lb.status_code == 200 and through_lb.content == payload
    # An uploaded file never runs as a page of the site.
    assert through_lb.headers.get("X-Content-Type-Options") == "nosniff"
    assert "sandbox" in through_lb.headers.get("Content-Security-Policy", "")


def test_a_value_cached_by_one_app_host_is_read_by_another(fleet: Fleet) -> None:
    first, second = list(fleet.groups["app"])[:2]
    # Start from an empty cache, so the first host computes the value itself. flush_all, not a
    # restart: after a restart each app process's first cache call fails on its old connection
    # and its client skips the cache for a second, which is the design but not this test's subject.
    cache_host, cache_address = next(iter(fleet.groups["cache"].items()))
    flushed = ansible(fleet, cache_host, "ansible.builtin.shell",
                      f"executable=/bin/bash exec 3<>/dev/tcp/{cache_address}/11211 && "
                      "printf 'flush_all\\r\\nquit\\r\\n' >&3 && cat <&3")
    assert "OK" in flushed.stdout, flushed.stdout
    with app_host(fleet, first) as (session, base, headers):
        made = session.get(f"{base}/cached", headers=headers, timeout=10).json()
    assert made["hit"] is False and made["cached_by"] == first
    with app_host(fleet, second) as (session, base, headers):
        read = session.get(f"{base}/cached", headers=headers, timeout=10).json()
    assert read["hit"] is True and read["cached_by"] == first and read["served_by"] == second


def test_a_database_write_through_one_host_is_visible_through_all(fleet: Fleet) -> None:
    first, *others = fleet.groups["app"]
    text = f"written on {first} {uuid.uuid4().hex}"
    with app_host(fleet, first) as (session, base, headers):
        resp = session.post(f"{base}/api/notes", json={"text": text}, headers=headers, timeout=10)
    assert resp.status_code == 201, resp.text[:300]
    for host in [first, *others]:
        with app_host(fleet, host) as (session, base, headers):
            notes = session.get(f"{base}/api/notes", headers=headers, timeout=10).json()["notes"]
        assert text in [n["text"] for n in notes], f"{host} does not see the note"


def test_a_memcached_restart_logs_nobody_out(fleet: Fleet) -> None:
    session = logged_in_session(fleet)
    assert session.get(lb_url(fleet, "/me"), timeout=10).json()["user"] == "demo"
    ansible(fleet, "cache", "ansible.builtin.systemd_service", "name=memcached state=restarted")
    for _ in range(6):
        resp = session.get(lb_url(fleet, "/me"), timeout=10, allow_redirects=False)
        assert resp.status_code == 200, "the session was lost with the cache"
        assert resp.json()["user"] == "demo"


def test_a_second_site_run_changes_nothing(fleet: Fleet) -> None:
    proc = run_playbook(fleet.inventory, "playbooks/site.yml", check=True)
    changed = re.findall(r"^(\S+)\s*:\s*ok=\d+\s+changed=(\d+)", proc.stdout, re.M)
    assert changed, proc.stdout[-2000:]
    assert all(int(n) == 0 for _, n in changed), f"changed on a converged cluster: {changed}"


def test_check_mode_with_diff_reports_no_change(fleet: Fleet) -> None:
    proc = run_playbook(fleet.inventory, "playbooks/site.yml", "--check", "--diff", check=True)
    changed = re.findall(r"^(\S+)\s*:\s*ok=\d+\s+changed=(\d+)", proc.stdout, re.M)
    assert changed and all(int(n) == 0 for _, n in changed), f"check mode would change: {changed}"


def test_no_secret_appears_in_the_site_output(fleet: Fleet, site) -> None:
    leaked = [name for name, value in secrets().items() if value and str(value) in site.stdout + site.stderr]
    assert not leaked, f"secrets printed by site.yml: {leaked}"


def test_unknown_host_header_is_refused(fleet: Fleet) -> None:
    resp = new_session().get(lb_url(fleet, "/whoami"), headers={"Host": "evil.example"}, timeout=10)
    assert resp.status_code == 400


def test_site_refuses_to_run_into_a_rolling_operation(fleet: Fleet) -> None:
    """A held deploy lock stops site.yml before it changes anything; breaking the lock lets it run."""
    lock = "/var/lib/django-cluster/deploy.lock"
    db = next(iter(fleet.groups["db"]))
    held = "holder=ops@elsewhere\noperation=upgrade\nsince=2026-01-01T00:00:00Z\n"
    ansible(fleet, db, "ansible.builtin.copy", json.dumps({"dest": lock, "content": held, "mode": "0644"}))
    try:
        proc = run_playbook(fleet.inventory, "playbooks/site.yml")
        assert proc.returncode != 0
        output = " ".join(proc.stdout.split())
        assert f"A rolling operation holds the deploy lock on {db} (holder=ops@elsewhere, operation=upgrade," in output, \
            output[-2000:]
        assert "PLAY [Resolve the values every tier shares]" not in output
        broken = run_playbook(fleet.inventory, "playbooks/site.yml", "-e", "deploy_lock_break=true", check=True)
        changed = re.findall(r"^(\S+)\s*:\s*ok=\d+\s+changed=(\d+)", broken.stdout, re.M)
        # Only the lock's removal changed (counted on the host that ran it for the database
        # host): the cluster itself was converged already.
        assert changed and sum(int(n) for _, n in changed) == 1, changed
        assert not present(fleet, db, lock)
    finally:
        ansible(fleet, db, "ansible.builtin.file", f"path={lock} state=absent")

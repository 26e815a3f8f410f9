"""Rolling operations under load: upgrade, broken release, rollback, deploy lock, maintenance.

A bounded load (a few clients mixing page views, logged-in pages, static files, uploads and
writes) runs through the load balancer for the whole of each operation. The tests run in file
order on the shared test fleet: a site run that must restart gunicorn, release v1 (the site's),
then v2 (which a site run without v2's source then refuses to undo), a broken v3 (whose lock a
failing run then takes over and keeps), back to v2, back to v1, then an OS maintenance run. Each prints its figures in the session summary.
After each test the deploy lock must be gone, or held where the test's operation keeps it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import BIN, ROOT, Fleet, ansible_env, report, run_playbook
from helpers import ansible, demo_password, lb_url, new_session, present

sys.path.insert(0, str(ROOT / "tools"))
from loadgen import DEFAULT_PATHS, LoadRun, summarize  # noqa: E402

pytestmark = pytest.mark.usefixtures("site")
BEFORE_SECONDS = 8
EXAMPLE = ROOT / "examples" / "exampleapp"
LOCK = "/var/lib/django-cluster/deploy.lock"


def releases(fleet: Fleet) -> dict[str, str]:
    """Which release each app host's current symlink points at (host -> release id)."""
    proc = subprocess.run([str(BIN / "ansible"), "-i", str(fleet.inventory), "app", "-m", "ansible.builtin.stat",
                           "-a", "path=/srv/exampleapp/current", "-o"],
                          cwd=ROOT, env=ansible_env(), text=True, capture_output=True, check=True)
    return {m[1]: m[2] for m in re.finditer(r'^(\S+) \| SUCCESS.*?"lnk_source": "[^"]*/releases/([^"/]+)"',
                                            proc.stdout, re.M)}


def served_releases(fleet: Fleet, tries: int = 20) -> set[str]:
    session = new_session()
    return {session.get(lb_url(fleet, "/whoami"), timeout=10).json()["release"] for _ in range(tries)}


def variant(tmp: Path, name: str, edit: dict[str, tuple[str, str]]) -> Path:
    """A copy of the example project with text replacements, so it builds a new release."""
    target = tmp / name
    shutil.copytree(EXAMPLE, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for rel, (old, new) in edit.items():
        path = target / rel
        text = path.read_text()
        assert old in text, f"{old!r} not in {rel}"
        path.write_text(text.replace(old, new, 1))
    return target


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("releases")
    return {
        "v2": variant(tmp, "v2", {"notes/templates/notes/base.html": ("</title>", " v2</title>")}),
        # Broken in a way the deployment checks cannot see: its health check fails at run time.
        "v3": variant(tmp, "v3", {"notes/views.py": ('failed = "database" in problems', 'failed = True')}),
    }


def unbuildable(tmp: Path) -> Path:
    """A copy of the example project whose build fails (a requirement that does not exist)."""
    return variant(tmp, "unbuildable", {"requirements.txt": ("\n", "\nno-such-distribution-here==0.0.1\n")})


def lock_held(fleet: Fleet) -> bool:
    """Whether the deploy lock exists on the database host."""
    return present(fleet, next(iter(fleet.groups["db"])), LOCK)


def operate(fleet: Fleet, label: str, playbook: str, *args: str) -> tuple[subprocess.CompletedProcess[str], dict]:
    """Run a playbook while the load runs; return its result and the load's figures."""
    run = LoadRun(lb_url(fleet, ""), "demo", demo_password(), DEFAULT_PATHS, clients=4,
                  max_seconds=900, max_requests=200_000).start()
    t0 = time.monotonic()
    time.sleep(BEFORE_SECONDS)
    t1 = time.monotonic()
    proc = run_playbook(fleet.inventory, playbook, *args)
    t2 = time.monotonic()
    run.stop()
    before, during = summarize(run.between(t0, t1)), summarize(run.between(t1, t2))
    hosts = len(fleet.groups["app"])
    report(f"{label}: " + before.line("before") + "; " + during.line("during")
           + f"; {t2 - t1:.0f} s in all, {(t2 - t1) / hosts:.0f} s per app host")
    for error in during.errors:
        report(f"  {label}: {error}")
    return proc, {"before": before, "during": during}


def gunicorn_pids(fleet: Fleet) -> dict[str, str]:
    """The main PID of each app host's gunicorn (host -> pid)."""
    proc = ansible(fleet, "app", "ansible.builtin.command", "systemctl show -P MainPID exampleapp-gunicorn")
    return dict(re.findall(r"^(\S+) \| CHANGED \| rc=0 >>\n(\d+)$", proc.stdout, re.M))


def test_site_applies_a_changed_gunicorn_unit_host_by_host_without_a_failed_request(fleet: Fleet) -> None:
    """A new graceful timeout changes the unit (TimeoutStopSec): each host restarts out of rotation."""
    before = gunicorn_pids(fleet)
    assert len(before) == len(fleet.groups["app"]), before
    proc, figures = operate(fleet, "site, changed unit", "playbooks/site.yml", "-e", "django_app_graceful_timeout=31")
    assert proc.returncode == 0, proc.stdout[-5000:]
    after = gunicorn_pids(fleet)
    assert after.keys() == before.keys() and all(after[host] != before[host] for host in before), (before, after)
    timeout = ansible(fleet, "app", "ansible.builtin.command", "systemctl show -P TimeoutStopUSec exampleapp-gunicorn")
    assert timeout.stdout.count("rc=0 >>\n36s\n") == len(before), timeout.stdout
    assert figures["during"].failed == 0, figures["during"].errors


def test_a_rolling_upgrade_fails_no_request(fleet: Fleet, sources: dict[str, Path]) -> None:
    old = set(releases(fleet).values())
    proc, figures = operate(fleet, "upgrade v1->v2", "playbooks/rolling_upgrade.yml",
                            "-e", f"django_app_source={sources['v2']}")
    assert proc.returncode == 0, proc.stdout[-5000:]
    now = releases(fleet)
    assert len(set(now.values())) == 1 and set(now.values()) != old, now
    assert served_releases(fleet) == set(now.values())
    assert figures["before"].sent > 0 and figures["during"].sent > 0
    assert figures["during"].failed == 0, figures["during"].errors


def test_site_without_the_upgraded_source_refuses_to_switch_back(fleet: Fleet) -> None:
    """After an upgrade to v2, a site run that would build the default source (v1) stops first."""
    before = releases(fleet)
    proc = run_playbook(fleet.inventory, "playbooks/site.yml")
    output = " ".join(proc.stdout.split())
    assert proc.returncode != 0, output[-2000:]
    assert f"The app hosts run release {next(iter(before.values()))} (recorded on" in output, output[-2000:]
    assert "-e site_allow_release_change=true" in output
    assert "PLAY [Database tier]" not in output
    assert releases(fleet) == before


def test_an_upgrade_whose_build_fails_changes_nothing_and_keeps_no_lock(fleet: Fleet, tmp_path: Path) -> None:
    before = releases(fleet)
    proc = run_playbook(fleet.inventory, "playbooks/rolling_upgrade.yml",
                        "-e", f"django_app_source={unbuildable(tmp_path)}")
    output = " ".join(proc.stdout.split())
    assert proc.returncode != 0
    assert "Nothing was changed and the deploy lock is released." in output, output[-3000:]
    assert not lock_held(fleet)
    assert releases(fleet) == before


def test_a_second_upgrade_is_refused_while_one_runs(fleet: Fleet, sources: dict[str, Path]) -> None:
    first = subprocess.Popen([str(BIN / "ansible-playbook"), "-i", str(fleet.inventory),
                              str(ROOT / "playbooks/rolling_upgrade.yml"), "-e", f"django_app_source={sources['v2']}"],
                             cwd=ROOT, env=ansible_env(), text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        lock = f"test -e {LOCK}"
        deadline = time.monotonic() + 300
        while subprocess.run([str(BIN / "ansible"), "-i", str(fleet.inventory), "db", "-m", "ansible.builtin.shell",
                              "-a", lock], cwd=ROOT, env=ansible_env(), capture_output=True).returncode != 0:
            assert first.poll() is None, "the first upgrade ended before it took the lock"
            assert time.monotonic() < deadline, "the first upgrade never took the lock"
            time.sleep(1)
        second = run_playbook(fleet.inventory, "playbooks/rolling_upgrade.yml",
                              "-e", f"django_app_source={sources['v2']}")
        assert second.returncode != 0
        assert "Another operation holds the deploy lock" in second.stdout
        assert "operation=upgrade" in second.stdout
    finally:
        out, _ = first.communicate(timeout=900)
    assert first.returncode == 0, out[-4000:]


@pytest.mark.keeps_lock
def test_a_broken_release_stops_at_the_first_host(fleet: Fleet, sources: dict[str, Path]) -> None:
    good = releases(fleet)
    proc, figures = operate(fleet, "broken v3", "playbooks/rolling_upgrade.yml", "-e",
                             f"django_app_source={sources['v3']}")
    assert proc.returncode != 0
    assert "is out of rotation" in proc.stdout, proc.stdout[-3000:]
    now = releases(fleet)
    first, *rest = fleet.groups["app"]
    assert now[first] != good[first], "the first host never switched"
    assert all(now[h] == good[h] for h in rest), f"hosts after the first were touched: {now}"
    assert figures["during"].failed == 0, figures["during"].errors
    # The broken host is out of rotation: every answer comes from the good release.
    assert served_releases(fleet) == {good[rest[0]]}


@pytest.mark.keeps_lock
def test_a_run_that_takes_over_the_lock_and_stops_early_keeps_it(fleet: Fleet, tmp_path: Path) -> None:
    """After the broken release (its host drained, the record noting the upgrade), a run that
    breaks the lock and whose build fails changes nothing, but must not free a half-upgraded cluster."""
    before = releases(fleet)
    proc = run_playbook(fleet.inventory, "playbooks/rolling_upgrade.yml",
                        "-e", f"django_app_source={unbuildable(tmp_path)}", "-e", "deploy_lock_break=true")
    output = " ".join(proc.stdout.split())
    assert proc.returncode != 0
    assert "Nothing was changed" not in output, output[-3000:]
    assert "this run took over the deploy lock of a run that did not finish (holder=" in output, output[-3000:]
    assert re.search(r"the release record notes an upgrade to \S+ that did not finish", output), output[-3000:]
    assert "The deploy lock stays taken." in output
    assert releases(fleet) == before


def test_a_rollback_after_a_failed_upgrade_restores_the_switched_host(fleet: Fleet) -> None:
    proc, figures = operate(fleet, "recover from v3", "playbooks/rollback.yml", "-e", "deploy_lock_break=true")
    assert proc.returncode == 0, proc.stdout[-5000:]
    now = releases(fleet)
    assert len(set(now.values())) == 1, now
    assert figures["during"].failed == 0, figures["during"].errors


def test_a_rollback_returns_every_host_to_the_previous_release(fleet: Fleet) -> None:
    before = set(releases(fleet).values())
    proc, figures = operate(fleet, "rollback v2->v1", "playbooks/rollback.yml")
    assert proc.returncode == 0, proc.stdout[-5000:]
    now = releases(fleet)
    assert len(set(now.values())) == 1 and set(now.values()) != before, now
    assert served_releases(fleet) == set(now.values())
    assert figures["during"].failed == 0, figures["during"].errors


def test_rolling_maintenance_fails_no_request(fleet: Fleet) -> None:
    # A kernel installed after boot (as a Debian kernel update leaves it) must be noticed; a
    # container cannot reboot itself, so the run says so instead of rebooting.
    first, *others = fleet.groups["app"]
    kernel = "/boot/vmlinuz-99.0.0-maintenance-test"
    ansible(fleet, first, "ansible.builtin.copy", f"dest={kernel} content=test mode=0644")
    try:
        proc, figures = operate(fleet, "maintenance", "playbooks/maintenance.yml")
    finally:
        ansible(fleet, first, "ansible.builtin.file", f"path={kernel} state=absent")
    assert proc.returncode == 0, proc.stdout[-5000:]
    assert figures["during"].failed == 0, figures["during"].errors
    output = " ".join(proc.stdout.split())
    assert f"{first} asks for a reboot, but it is a container" in output
    for other in others:
        assert f"{other} asks for a reboot" not in output


def test_the_deploy_log_records_each_operation(fleet: Fleet) -> None:
    proc = subprocess.run([str(BIN / "ansible"), "-i", str(fleet.inventory), "app", "-m", "ansible.builtin.command",
                           "-a", "cat /var/log/django-cluster/deploy.log"],
                          cwd=ROOT, env=ansible_env(), text=True, capture_output=True, check=True)
    for operation in ("upgrade", "rollback", "maintenance"):
        assert f"operation={operation}" in proc.stdout
    assert "result=failed" in proc.stdout and "result=ok" in proc.stdout


@pytest.fixture(autouse=True)
def _lock_state_after_each_test(request: pytest.FixtureRequest, fleet: Fleet) -> Iterator[None]:
    """After each test the deploy lock is gone, unless the test's operation keeps it on purpose
    (marked keeps_lock). A lock left behind fails the test's teardown and is removed, so the tests
    after it do not fail on it too."""
    yield
    held = lock_held(fleet)
    if request.node.get_closest_marker("keeps_lock"):
        assert held, "the operation should have kept the deploy lock, but it is gone"
        return
    if held:
        ansible(fleet, "db", "ansible.builtin.file", f"path={LOCK} state=absent")
    assert not held, f"the deploy lock was left behind ({LOCK} on the db host; removed now)"

"""Verify the PostgreSQL primary against the real server, from the host that may connect and the one that may not."""

from __future__ import annotations

import os
import re
import subprocess
import uuid
from pathlib import Path

import pytest
import testinfra
import yaml

testinfra_hosts = ["db1"]

SCENARIO = Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"])
PROJECT = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"])
INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
SETTINGS = yaml.safe_load((SCENARIO / "molecule.yml").read_text())
PASSWORD = SETTINGS["provisioner"]["inventory"]["group_vars"]["all"]["vault_cluster_db_password"]
DB = USER = "app"
PORT = 5432
BACKUP_DIR = "/var/backups/postgresql"
HEADROOM, RESERVED = 10, 3
KEEP_COUNT = 7


def other_host(name: str):
    """A testinfra host for another scenario host, reached like db1."""
    return testinfra.get_host(f"ansible://{name}?ansible_inventory={INVENTORY}")


def sql(host, query: str, db: str = "postgres") -> str:
    """Run a query on db1 as the postgres superuser over the Unix socket; return its unaligned output."""
    result = host.run("runuser -u postgres -- psql -X -v ON_ERROR_STOP=1 -At -d %s -c %s", db, query)
    assert result.rc == 0, result.stderr
    return result.stdout.strip()


def remote_psql(client, server: str, query: str, password: str = PASSWORD):
    """Log in from a client host over the network with the app's credentials and run a query."""
    return client.run(
        "PGPASSWORD=%s PGCONNECT_TIMEOUT=5 psql -X -v ON_ERROR_STOP=1 -At "
        "-h %s -p %s -U %s -d %s -c %s",
        password, server, str(PORT), USER, DB, query,
    )


def playbook(path: Path, *extra: str) -> tuple[int, str]:
    """Run a playbook against the scenario's inventory, as an operator would; return its rc and output.

    The output (stdout and stderr) comes without colours and with whitespace collapsed, so messages
    can be matched whatever the callback's line wrapping.
    """
    inventory_dir = str(Path(INVENTORY).parent)
    proc = subprocess.run(
        ["ansible-playbook", "-i", inventory_dir, str(path), *extra],
        capture_output=True, text=True, check=False, env={**os.environ, "ANSIBLE_NOCOLOR": "1"},
    )
    return proc.returncode, " ".join(re.sub(r"\x1b\[[0-9;]*m", "", proc.stdout + proc.stderr).split())


@pytest.fixture(scope="module")
def db_address(host) -> str:
    return host.backend.get_variables()["ansible_host"]


@pytest.fixture(scope="module")
def app1():
    return other_host("app1")


@pytest.fixture(scope="module")
def other1():
    return other_host("other1")


def test_service_running_and_enabled(host):
    assert host.service("postgresql@15-main").is_running
    assert host.service("postgresql").is_enabled
    assert sql(host, "SELECT 1") == "1"


def test_listens_on_cluster_address_and_loopback_only(host, db_address):
    sockets = host.run("ss -Hltn sport = :%s", str(PORT)).stdout.split("\n")
    local = {line.split()[3] for line in sockets if line.strip()}
    assert local == {f"127.0.0.1:{PORT}", f"{db_address}:{PORT}"}


def test_app_host_logs_in_over_the_network_and_queries(app1, db_address):
    result = remote_psql(app1, db_address, "SELECT current_user || '@' || current_database()")
    assert result.rc == 0, result.stderr
    assert result.stdout.strip() == f"{USER}@{DB}"


def test_app_host_with_a_wrong_password_is_refused(app1, db_address):
    result = remote_psql(app1, db_address, "SELECT 1", password="not-the-password")
    assert result.rc != 0
    assert "password authentication failed" in result.stderr


def test_other_cluster_host_is_refused(other1, db_address):
    result = remote_psql(other1, db_address, "SELECT 1")
    assert result.rc != 0
    assert "no pg_hba.conf entry" in result.stderr, result.stderr


def test_network_rules_are_app_hosts_only_with_scram(host, app1):
    app_address = app1.backend.get_variables()["ansible_host"]
    rows = sql(host, "SELECT type, address, netmask, auth_method, array_to_string(database, ','), "
                     "array_to_string(user_name, ',') FROM pg_hba_file_rules WHERE type <> 'local'")
    rules = {tuple(row.split("|")) for row in rows.splitlines()}
    assert rules == {
        ("host", "127.0.0.1", "255.255.255.255", "scram-sha-256", "all", "all"),
        ("host", app_address, "255.255.255.255", "scram-sha-256", DB, USER),
    }


def test_password_is_stored_as_a_scram_hash(host):
    assert sql(host, "SHOW password_encryption") == "scram-sha-256"
    stored = sql(host, f"SELECT rolpassword FROM pg_authid WHERE rolname = '{USER}'")
    assert re.match(r"^SCRAM-SHA-256\$\d+:", stored)


def test_database_is_owned_by_the_app_role(host):
    owner = sql(host, f"SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '{DB}'")
    assert owner == USER


def test_settings_live_in_the_drop_in(host):
    source = sql(host, "SELECT sourcefile FROM pg_settings WHERE name = 'listen_addresses'")
    assert source.endswith("/conf.d/50-postgresql-primary.conf")


def test_max_connections_follow_the_app_tier(host, app1):
    # Read the running value: side_effect changed the file to 200 without a restart.
    capacity = (2 * int(app1.run("nproc").stdout) + 1) * 4
    expected = capacity * 2 + HEADROOM + RESERVED
    assert int(sql(host, "SHOW max_connections")) == expected


def test_memory_settings_follow_the_host(host):
    memtotal_mb = int(host.file("/proc/meminfo").content_string.split()[1]) // 1024
    shared_mb = int(sql(host, "SELECT setting::bigint * 8 / 1024 FROM pg_settings WHERE name = 'shared_buffers'"))
    cache_mb = int(sql(host, "SELECT setting::bigint * 8 / 1024 FROM pg_settings WHERE name = 'effective_cache_size'"))
    assert shared_mb == int(memtotal_mb * 0.25)
    assert cache_mb == int(memtotal_mb * 0.75)


# Before the tests below that run the role again: a run starts the timer, which would hide a
# stopped one from this check.
def test_backup_timer_is_scheduled(host):
    assert host.service("postgresql-primary-backup.timer").is_enabled
    assert host.service("postgresql-primary-backup.timer").is_running


def test_restart_only_change_waits_and_server_keeps_running(host):
    before = host.file("/var/tmp/postmaster-before-side-effect").content_string.strip()
    data_dir = sql(host, "SHOW data_directory")
    postmaster = host.run("head -n1 %s/postmaster.pid", data_dir).stdout.strip()
    assert postmaster == before, "PostgreSQL was restarted"
    assert host.service("postgresql@15-main").is_running
    pending = sql(host, "SELECT name FROM pg_settings WHERE pending_restart").split()
    assert pending == ["max_connections"]
    on_disk = sql(host, "SELECT setting FROM pg_file_settings WHERE name = 'max_connections' "
                        "AND sourcefile LIKE '%/conf.d/%'")
    assert on_disk == "200"


def postmaster_pid(host) -> str:
    return host.run("head -n1 %s/postmaster.pid", sql(host, "SHOW data_directory")).stdout.strip()


def demand(app1, threads: int) -> int:
    """The connections the app tier (app1 alone) needs with this many gunicorn threads per worker."""
    capacity = (2 * int(app1.run("nproc").stdout) + 1) * threads
    return capacity * 2 + HEADROOM + RESERVED


def drop_in(host) -> str:
    return host.file("/etc/postgresql/15/main/conf.d/50-postgresql-primary.conf").content_string


def test_app_tier_beyond_the_running_max_connections_stops_the_play(host, app1):
    # More threads per worker than the server was started for: its max_connections stays the old one
    # until a restart, and restarts are not allowed.
    running = int(sql(host, "SHOW max_connections"))
    assert demand(app1, 8) > running
    pid, conf = postmaster_pid(host), drop_in(host)
    rc, output = playbook(SCENARIO / "converge.yml", "-e", "cluster_app_threads=8")
    assert rc != 0
    assert f"db1 runs with max_connections {running}, but the app tier of 1 host(s) needs {demand(app1, 8)}" \
        in output, output[-3000:]
    assert "postgresql_primary_allow_restart=true" in output
    # It stopped before changing anything.
    assert postmaster_pid(host) == pid
    assert drop_in(host) == conf


def test_renamed_application_database_still_counts_as_in_use(host):
    # A server whose application database has another name has served someone: a pending restart
    # (max_connections 200, as side_effect left it) still waits for consent.
    pid = postmaster_pid(host)
    sql(host, f"ALTER DATABASE {DB} RENAME TO {DB}_renamed")
    try:
        rc, output = playbook(SCENARIO / "converge.yml", "-e", "postgresql_primary_max_connections=200")
        assert rc == 0, output[-3000:]
        assert postmaster_pid(host) == pid, "PostgreSQL was restarted without consent"
        assert "WARNING: db1 still runs with the old values of max_connections" in output
    finally:
        # The run created an empty application database; the renamed one takes its place again.
        sql(host, f"DROP DATABASE IF EXISTS {DB}")
        sql(host, f"ALTER DATABASE {DB}_renamed RENAME TO {DB}")


def test_budget_check_stops_a_too_small_max_connections():
    rc, output = playbook(SCENARIO / "preflight.yml", "-e", "postgresql_primary_max_connections=20")
    assert rc != 0
    assert "postgresql_primary_max_connections is 20, but the cluster needs" in output, output[-3000:]
    rc, output = playbook(SCENARIO / "preflight.yml")
    assert rc == 0, output[-3000:]


def dumps(host) -> list[str]:
    return sorted(host.run("ls -1 %s", BACKUP_DIR).stdout.split())


def test_backup_restores_into_a_scratch_database(host, app1, db_address):
    token = uuid.uuid4().hex
    create = remote_psql(app1, db_address,
                         "CREATE TABLE IF NOT EXISTS marker (id serial PRIMARY KEY, note text NOT NULL);"
                         f"INSERT INTO marker (note) SELECT '{token}-' || g FROM generate_series(1, 50) g")
    assert create.rc == 0, create.stderr
    rc, output = playbook(PROJECT / "playbooks" / "backup.yml")
    assert rc == 0, output[-3000:]
    newest = dumps(host)[-1]
    assert re.match(rf"^{DB}-\d{{8}}T\d{{6}}\.\d{{3}}Z\.pgc$", newest)
    assert host.file(f"{BACKUP_DIR}/{newest}").content[:5] == b"PGDMP"

    scratch = f"scratch_{token[:8]}"
    rc, output = playbook(PROJECT / "playbooks" / "restore.yml",
                          "-e", f"postgresql_primary_restore_database={scratch}")
    assert rc == 0, output[-3000:]
    query = "SELECT md5(string_agg(id || ':' || note, ',' ORDER BY id)) FROM marker"
    assert sql(host, query, db=scratch) == sql(host, query, db=DB)
    assert sql(host, f"SELECT count(*) FROM marker WHERE note LIKE '{token}-%'", db=scratch) == "50"


def test_replacing_the_live_database_keeps_a_fresh_backup(host, app1, db_address):
    # Retention is full and the dump restored is the oldest one kept, so a fresh backup that pruned
    # would delete it before pg_restore reads it. The older names are copies of the newest dump.
    newest = dumps(host)[-1]
    older = [f"{DB}-1999{month:02d}01T000000.000Z.pgc" for month in range(1, KEEP_COUNT - len(dumps(host)) + 1)]
    assert older, "the scenario already holds a full retention of dumps"
    for name in older:
        copy = host.run("runuser -u postgres -- cp %s/%s %s/%s", BACKUP_DIR, newest, BACKUP_DIR, name)
        assert copy.rc == 0, copy.stderr
    before = dumps(host)
    assert len(before) == KEEP_COUNT
    source = before[0]
    late = uuid.uuid4().hex
    insert = remote_psql(app1, db_address, f"CREATE TABLE IF NOT EXISTS marker (id serial, note text);"
                                           f"INSERT INTO marker (note) VALUES ('{late}')")
    assert insert.rc == 0, insert.stderr
    rc, output = playbook(PROJECT / "playbooks" / "restore.yml", "-e", f"postgresql_primary_restore_file={source}",
                          "-e", "postgresql_primary_restore_replace=true")
    assert rc == 0, output[-3000:]
    # The live database is the dump again: the row written after it is gone, and the app still logs in.
    after = remote_psql(app1, db_address, f"SELECT count(*) FROM marker WHERE note = '{late}'")
    assert after.rc == 0, after.stderr
    assert after.stdout.strip() == "0"
    # The fresh backup taken before the swap has that row.
    fresh = dumps(host)[-1]
    assert fresh > newest
    # Nothing was pruned (the restored dump included), and no second name of it stayed behind.
    assert dumps(host) == sorted([*before, fresh])
    assert sorted(host.run("ls -1A %s", BACKUP_DIR).stdout.split()) == dumps(host)
    contents = host.run("runuser -u postgres -- pg_restore --data-only --table=marker -f - %s/%s", BACKUP_DIR, fresh)
    assert late in contents.stdout
    # The replaced database is kept, with that row too.
    aside = sql(host, f"SELECT datname FROM pg_database WHERE datname LIKE '{DB}_replaced_%' ORDER BY datname DESC")
    assert aside, "the replaced database was not kept"
    assert sql(host, f"SELECT count(*) FROM marker WHERE note = '{late}'", db=aside.split()[0]) == "1"


def test_retention_by_count_and_age(host):
    # Nine recent dumps whose names sort before the real ones, and one newer-named dump 30 days old.
    recent = [f"{DB}-200001{day:02d}T000000.000Z.pgc" for day in range(1, 10)]
    old = f"{DB}-20010101T000000.000Z.pgc"
    for name in recent:
        host.run("runuser -u postgres -- touch %s/%s", BACKUP_DIR, name)
    host.run("runuser -u postgres -- touch -d '30 days ago' %s/%s", BACKUP_DIR, old)
    before = dumps(host)
    assert host.run("systemctl start postgresql-primary-backup.service").rc == 0
    kept = dumps(host)
    new = sorted(set(kept) - set(before))
    assert len(new) == 1
    # keep_count 7: the seven newest names stay, except the one older than keep_days (14).
    newest_first = sorted(before + new, reverse=True)
    assert kept == sorted(name for name in newest_first[:7] if name != old)
    assert old not in kept and recent[0] not in kept


def test_allowed_restart_applies_a_larger_app_tier_first(host, app1):
    # Last: it leaves the server restarted with the larger max_connections.
    pid = postmaster_pid(host)
    rc, output = playbook(SCENARIO / "converge.yml", "-e", "cluster_app_threads=8",
                          "-e", "postgresql_primary_allow_restart=true")
    assert rc == 0, output[-3000:]
    assert int(sql(host, "SHOW max_connections")) == demand(app1, 8)
    assert postmaster_pid(host) != pid

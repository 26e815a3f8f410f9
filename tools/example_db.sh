#!/usr/bin/env bash
# Make a local PostgreSQL server ready for the example project's own test suite: install it
# (Debian/Ubuntu, as root) if missing, start its cluster, and create the test role. Prints the
# libpq variables to use, as shell assignments.
set -euo pipefail

role=exampleapp
password=exampleapp-tests

log() { printf 'example-db: %s\n' "$*" >&2; }

# Only the final line of variables belongs on stdout: the caller splices it into a command line.
# Everything else these tools print (pg_ctlcluster says "Removed stale pid file." after an unclean
# stop, for one) goes to stderr. The saved stdout (fd 3) is closed for every command that may leave
# a daemon behind: a server holding it open would keep the caller's $(...) waiting forever.
exec 3>&1 1>&2

if ! command -v pg_lsclusters >/dev/null; then
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
    log "PostgreSQL is not installed; install it (Debian: apt-get install postgresql) and re-run"
    exit 1
  fi
  log "installing PostgreSQL"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >/dev/null 3>&-
fi

read -r version cluster port status _ < <(pg_lsclusters --no-header | head -n 1)
if [ "$status" != online ]; then
  log "starting PostgreSQL $version/$cluster"
  pg_ctlcluster "$version" "$cluster" start 3>&-
fi

# The tests create and drop their own database, so the role needs CREATEDB.
su postgres -c "psql -q -p $port" <<SQL >/dev/null 3>&-
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$role') THEN
    CREATE ROLE $role;
  END IF;
END \$\$;
ALTER ROLE $role LOGIN CREATEDB PASSWORD '$password';
SQL

printf 'PGHOST=127.0.0.1 PGPORT=%s PGUSER=%s PGPASSWORD=%s PGDATABASE=%s\n' "$port" "$role" "$password" "$role" >&3

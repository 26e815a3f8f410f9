#!/usr/bin/env python3
"""Local fleet: Docker containers that behave like servers (systemd, sshd, apt, their own address).

The playbooks run against these hosts exactly as they run against a VPS fleet: over SSH, with
the inventory groups every inventory of this project has. A fleet has a name; the name prefixes
its containers, network, volumes and key, and selects its subnet, so several fleets (the test
suite's and `make cluster`'s) can run side by side.

    fleet.py image              build the host image if its recipe changed, print its tag
    fleet.py up [--apps N]      start the fleet (idempotent) and write its inventory
    fleet.py status             show what runs
    fleet.py down               remove what `up` created, nothing else
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

LOG = logging.getLogger("fleet")

ROOT = Path(__file__).resolve().parent.parent
IMAGE_DIR = ROOT / "tools" / "image"
STATE_DIR = ROOT / ".fleet"
IMAGE_NAME = "django-cluster-host"
LABEL = "org.django-cluster.fleet"
DEFAULT_FLEET = "djcluster"

# Each group's hosts get addresses from their own range of the fleet's /24, so an address
# never moves when hosts are added: lb1 is always .11, app3 always .103.
ADDRESS_BASE = {"lb": 10, "db": 30, "storage": 40, "cache": 50, "app": 100}
GROUPS = ("lb", "app", "db", "cache", "storage")

# Settings measured to run systemd as PID 1 in a container on a cgroup v1 host without
# --privileged (which this kind of machine refuses); DAC_READ_SEARCH is for NFS-Ganesha.
CAPABILITIES = ("SYS_ADMIN", "NET_ADMIN", "SYS_PTRACE", "DAC_READ_SEARCH")


@dataclass(frozen=True)
class Host:
    """One fleet member: its inventory name, groups and fixed address."""

    name: str
    groups: tuple[str, ...]
    address: str


def run(cmd: list[str], check: bool = True, capture: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a command, logging it; raise with its stderr when it fails and check is set."""
    LOG.debug("$ %s", " ".join(cmd))
    proc = subprocess.run(cmd, text=True, capture_output=capture, check=False)
    if check and proc.returncode != 0:
        raise SystemExit(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr or ''}")
    return proc


def docker(*args: str, check: bool = True) -> str:
    """Run a docker CLI command and return its stdout."""
    return run(["docker", *args], check=check).stdout.strip()


# --- Docker engine -----------------------------------------------------------------------------

def ensure_engine() -> None:
    """Make sure a Docker engine answers; on a Debian machine without one, install and start it."""
    if shutil.which("docker") and run(["docker", "info"], check=False).returncode == 0:
        return
    if not shutil.which("dockerd"):
        if os.geteuid() != 0 or not shutil.which("apt-get"):
            raise SystemExit("no Docker engine runs here; start one, or run as root on Debian/Ubuntu")
        LOG.warning("no Docker engine found: installing Debian's docker.io")
        run(["apt-get", "update", "-q"])
        run(["apt-get", "install", "-y", "-q", "docker.io"])
    if run(["docker", "info"], check=False).returncode != 0:
        LOG.warning("Docker engine not running: starting dockerd in the background (log: /var/log/dockerd.log)")
        with open("/var/log/dockerd.log", "ab") as log:
            subprocess.Popen(["dockerd"], stdout=log, stderr=log, start_new_session=True)
        for _ in range(60):
            if run(["docker", "info"], check=False).returncode == 0:
                return
            time.sleep(1)
        raise SystemExit("dockerd did not come up within 60 s; see /var/log/dockerd.log")


def ensure_inotify() -> None:
    """Raise the kernel's inotify limits when they are too low for many systemd containers.

    Every container's systemd (and its services) takes inotify instances from one per-user
    pool shared by all containers; Debian's default of 128 runs out at about twenty hosts, and
    the next container's systemd exits at boot without a word.
    """
    wanted = {"max_user_instances": 1024, "max_user_watches": 524288}
    for name, value in wanted.items():
        path = Path("/proc/sys/fs/inotify") / name
        try:
            current = int(path.read_text())
        except OSError:
            continue
        if current >= value:
            continue
        if os.geteuid() != 0:
            LOG.warning("fs.inotify.%s is %d; raise it to %d if hosts fail to boot", name, current, value)
            continue
        LOG.warning("raising fs.inotify.%s from %d to %d so many systemd hosts can run", name, current, value)
        try:
            path.write_text(str(value))
        except OSError as exc:
            LOG.warning("could not raise fs.inotify.%s: %s", name, exc)


# --- Host image --------------------------------------------------------------------------------

def apt_sources() -> tuple[str, str]:
    """Return (debootstrap mirror, deb822 sources text) taken from this machine's apt setup.

    FLEET_APT_MIRROR overrides both, for machines whose apt sources are not Debian's.
    """
    override = os.environ.get("FLEET_APT_MIRROR")
    if override:
        text = f"Types: deb\nURIs: {override}\nSuites: bookworm bookworm-updates\nComponents: main\n"
        security = os.environ.get("FLEET_APT_SECURITY_MIRROR")
        if security:
            text += f"\nTypes: deb\nURIs: {security}\nSuites: bookworm-security\nComponents: main\n"
        return override, text
    stanzas: list[dict[str, str]] = []
    for path in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        for block in path.read_text().split("\n\n"):
            fields = dict(
                (k.strip(), v.strip())
                for k, _, v in (line.partition(":") for line in block.splitlines())
                if k.strip() and not k.startswith("#") and v
            )
            if fields.get("URIs") and "deb" in fields.get("Types", "").split():
                stanzas.append(fields)
    legacy = Path("/etc/apt/sources.list")
    if legacy.exists():
        for line in legacy.read_text().splitlines():
            m = re.match(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+(\S+)\s+(.+)$", line.strip())
            if m:
                stanzas.append({"Types": "deb", "URIs": m[1], "Suites": m[2], "Components": m[3]})
    debian = [s for s in stanzas if any(x.startswith("bookworm") for x in s.get("Suites", "").split())]
    if not debian:
        raise SystemExit(
            "no Debian 12 (bookworm) apt source found on this machine; set FLEET_APT_MIRROR to a Debian mirror URL"
        )
    main = next((s for s in debian if "bookworm" in s["Suites"].split()), debian[0])
    text = "\n".join(
        f"Types: deb\nURIs: {s['URIs'].split()[0]}\nSuites: {s['Suites']}\nComponents: {s.get('Components', 'main')}\n"
        f"Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
        for s in debian
    )
    return main["URIs"].split()[0], text


def image_tag() -> str:
    """The image tag: a digest of the recipe files, so the image is rebuilt only when they change."""
    digest = hashlib.sha256()
    for path in sorted(IMAGE_DIR.iterdir()):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return f"{IMAGE_NAME}:{digest.hexdigest()[:12]}"


def ensure_image() -> str:
    """Build the host image unless an image with the recipe's tag exists; return the tag.

    Builds are serialised through a lock file shared by every checkout on this machine: Molecule
    scenarios that start side by side, or a test run next to `make cluster`, would otherwise each
    build the same image and leave the losers' copies behind untagged.
    """
    tag = image_tag()
    if docker("images", "-q", tag):
        return tag
    with (Path(tempfile.gettempdir()) / f"{IMAGE_NAME}.lock").open("a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            LOG.info("waiting for another build of the host image to finish")
            fcntl.flock(lock, fcntl.LOCK_EX)
        # Another process may have built it while this one waited for the lock.
        if docker("images", "-q", tag):
            return tag
        return build_image(tag)


def build_image(tag: str) -> str:
    """Build the host image from Debian packages of this machine's apt mirror; return the tag."""
    mirror, sources = apt_sources()
    if not shutil.which("debootstrap"):
        if os.geteuid() != 0 or not shutil.which("apt-get"):
            raise SystemExit("debootstrap is needed to build the host image")
        LOG.warning("installing debootstrap to build the host image")
        run(["apt-get", "install", "-y", "-q", "debootstrap"])
    LOG.info("building host image %s from %s (under two minutes)", tag, mirror)
    STATE_DIR.mkdir(exist_ok=True)
    sources_file = STATE_DIR / "image.sources"
    sources_file.write_text(sources)
    started = time.monotonic()
    proc = run(["bash", str(IMAGE_DIR / "build.sh"), tag, mirror, str(sources_file)], check=False)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit("host image build failed")
    LOG.info("built %s in %.0f s", tag, time.monotonic() - started)
    return tag


# --- Topology ----------------------------------------------------------------------------------

def subnet_for(name: str) -> str:
    """Pick the fleet's /24 from its name; skip subnets that Docker networks of others already use."""
    taken = set()
    for net in docker("network", "ls", "-q").split():
        info = json.loads(docker("network", "inspect", net))[0]
        if info["Name"] == f"{name}-net":
            return info["IPAM"]["Config"][0]["Subnet"]
        for cfg in info.get("IPAM", {}).get("Config") or []:
            taken.add(cfg.get("Subnet"))
    n = zlib.crc32(name.encode()) % 200 + 20
    while f"172.29.{n}.0/24" in taken:
        n = n % 250 + 1
    return f"172.29.{n}.0/24"


def parse_hosts(spec: str | None, apps: int, subnet: str) -> list[Host]:
    """Build the host list from `name:group[+group]` items, or the default topology."""
    if spec:
        items = [item.split(":", 1) for item in spec.split(",") if item]
    else:
        items = [["lb1", "lb"], *[[f"app{i}", "app"] for i in range(1, apps + 1)],
                 ["db1", "db"], ["nfs1", "storage"], ["cache1", "cache"]]
    prefix = subnet.rsplit(".", 1)[0]
    hosts = []
    for name, groups in items:
        group_list = tuple(groups.split("+"))
        unknown = set(group_list) - set(GROUPS)
        if unknown:
            raise SystemExit(f"host {name}: unknown group(s) {sorted(unknown)}; use {GROUPS}")
        number = int(re.search(r"(\d+)$", name)[1]) if re.search(r"\d+$", name) else 1
        hosts.append(Host(name, group_list, f"{prefix}.{ADDRESS_BASE[group_list[0]] + number}"))
    addresses = [h.address for h in hosts]
    if len(set(addresses)) != len(addresses):
        raise SystemExit("two hosts would get the same address; number hosts of one group 1, 2, 3...")
    return hosts


def inventory_dir(name: str, override: str | None) -> Path:
    """Where the fleet's inventory goes: inventories/local for the default fleet, else .fleet/NAME."""
    if override:
        return Path(override).resolve()
    if name == DEFAULT_FLEET:
        return ROOT / "inventories" / "local"
    return STATE_DIR / name / "inventory"


# Secrets of the local fleet: generated at random on first `up`, never committed (.gitignore).
LOCAL_SECRETS = ("vault_cluster_db_password", "vault_django_app_secret_key", "vault_cluster_s3_access_key",
                 "vault_cluster_s3_secret_key", "vault_haproxy_stats_password", "vault_exampleapp_demo_password")


def ensure_local_secrets() -> None:
    """Give inventories/local/group_vars/all/vault.yml a random value for each secret it lacks.

    A real inventory keeps these in an ansible-vault encrypted file; the local fleet is a
    throwaway, so its secrets are random per checkout and stay out of git.
    """
    path = ROOT / "inventories" / "local" / "group_vars" / "all" / "vault.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    text = path.read_text() if path.exists() else (
        "---\n# Random secrets for the local fleet, written by tools/fleet.py; not in git.\n")
    present = set(re.findall(r"^(\w+):", text, re.M))
    missing = [name for name in LOCAL_SECRETS if name not in present]
    if missing:
        text += "".join(f"{name}: '{secrets.token_urlsafe(48)}'\n" for name in missing)
        path.write_text(text)
        path.chmod(0o600)


def write_inventory(path: Path, name: str, hosts: list[Host], key: Path) -> None:
    """Write hosts.yml with the project's groups; other fleets share inventories/local's group_vars."""
    path.mkdir(parents=True, exist_ok=True)
    lines = [
        "---",
        f"# Written by tools/fleet.py for the local fleet '{name}'; do not edit, `make cluster` rewrites it.",
        "all:",
        "  vars:",
        "    ansible_user: root",
        f"    ansible_ssh_private_key_file: {key}",
        "    ansible_ssh_common_args: >-",
        "      -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR",
        f"    local_fleet_name: {name}",
        "  children:",
        "    cluster:",
        "      children:",
    ]
    for group in GROUPS:
        members = [h for h in hosts if group in h.groups]
        lines.append(f"        {group}:")
        if not members:
            lines.append("          hosts: {}")
            continue
        lines.append("          hosts:")
        for h in members:
            lines.append(f"            {h.name}:")
            lines.append(f"              ansible_host: {h.address}")
    text = "\n".join(lines) + "\n"
    target = path / "hosts.yml"
    if not target.exists() or target.read_text() != text:
        target.write_text(text)
    shared = ROOT / "inventories" / "local" / "group_vars"
    link = path / "group_vars"
    if path != shared.parent and shared.is_dir() and not link.exists():
        link.symlink_to(shared)


# --- Commands ----------------------------------------------------------------------------------

def fleet_containers(name: str) -> list[dict[str, str]]:
    """The fleet's containers as dicts with Names and State, from their label."""
    out = docker("ps", "-a", "--filter", f"label={LABEL}={name}", "--format", "{{json .}}")
    return [json.loads(line) for line in out.splitlines() if line]


def wait_for_ssh(hosts: list[Host], key: Path, timeout: float = 60) -> None:
    """Wait until every host's sshd accepts our key (not just until port 22 is open)."""
    deadline = time.monotonic() + timeout
    pending = list(hosts)
    while pending:
        host = pending[0]
        try:
            with socket.create_connection((host.address, 22), timeout=2):
                pass
            ok = run(["ssh", "-i", str(key), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
                      "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=3",
                      f"root@{host.address}", "true"], check=False).returncode == 0
        except OSError:
            ok = False
        if ok:
            pending.pop(0)
            continue
        if time.monotonic() > deadline:
            raise SystemExit(f"{host.name} ({host.address}) did not accept SSH within {timeout:.0f} s")
        time.sleep(0.5)


def wait_booted(container: str, timeout: float = 60) -> bool:
    """Wait until the container's systemd has finished booting; False if the container died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = run(["docker", "exec", container, "systemctl", "is-system-running", "--wait"], check=False)
        if state.stdout.strip() in ("running", "degraded"):
            return True
        if docker("inspect", "-f", "{{.State.Running}}", container) != "true":
            return False
        time.sleep(0.5)  # systemd's bus is not up yet: ask again.
    return False


def start_containers(specs: dict[str, list[str]], tries: int = 3) -> None:
    """Start host containers (name -> docker run arguments), then wait for each to boot.

    All start at once and boot in parallel; one whose systemd exits at boot is started again.
    """
    for attempt in range(1, tries + 1):
        for container, run_args in specs.items():
            docker("rm", "-f", container, check=False)
            docker("run", "-d", "--name", container, *run_args)
        failed = {c: a for c, a in specs.items() if not wait_booted(c)}
        if not failed:
            return
        for container in failed:
            LOG.warning("%s did not boot (attempt %d):\n%s", container, attempt,
                        run(["docker", "logs", "--tail", "20", container], check=False).stdout)
        specs = failed
    raise SystemExit(f"{', '.join(specs)} did not boot; see `docker logs <container>`")


def cmd_up(args: argparse.Namespace) -> None:
    ensure_engine()
    ensure_inotify()
    tag = ensure_image()
    name = args.name
    state = STATE_DIR / name
    state.mkdir(parents=True, exist_ok=True)
    key = state / "id_ed25519"
    if not key.exists():
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"fleet-{name}", "-f", str(key)])
    subnet = subnet_for(name)
    hosts = parse_hosts(args.hosts, args.apps, subnet)
    network = f"{name}-net"
    if not docker("network", "ls", "-q", "--filter", f"name=^{network}$"):
        docker("network", "create", "--subnet", subnet, "--label", f"{LABEL}={name}", network)
    existing = {c["Names"]: c["State"] for c in fleet_containers(name)}
    pubkey = (state / "id_ed25519.pub").read_text()
    started = time.monotonic()
    new: dict[str, list[str]] = {}
    for host in hosts:
        container = f"{name}-{host.name}"
        if existing.get(container) == "running":
            continue
        if container in existing:
            docker("start", container)
        else:
            volume = f"{container}-srv"
            docker("volume", "create", "--label", f"{LABEL}={name}", volume)
            new[container] = [
                "--hostname", host.name,
                "--label", f"{LABEL}={name}", "--label", f"{LABEL}.groups={'+'.join(host.groups)}",
                "--network", network, "--ip", host.address,
                *[f"--cap-add={cap}" for cap in CAPABILITIES],
                "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
                "--cgroupns", "host", "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
                "--tmpfs", "/run", "--tmpfs", "/run/lock", "--tmpfs", "/tmp:exec",
                # A real volume under /srv: NFS-Ganesha cannot export the overlay root filesystem.
                "--mount", f"type=volume,src={volume},dst=/srv",
                "--stop-signal", "SIGRTMIN+3",
                tag,
            ]
    start_containers(new)
    for host in hosts:
        container = f"{name}-{host.name}"
        docker("exec", container, "sh", "-c",
               f"umask 077; mkdir -p /root/.ssh; printf '%s' '{pubkey.strip()}\n' > /root/.ssh/authorized_keys")
    wait_for_ssh(hosts, key)
    inv = inventory_dir(name, args.inventory)
    ensure_local_secrets()
    write_inventory(inv, name, hosts, key)
    LOG.info("fleet %s: %d hosts up on %s in %.0f s", name, len(hosts), subnet, time.monotonic() - started)
    print(inv / "hosts.yml")


def cmd_down(args: argparse.Namespace) -> None:
    name = args.name
    if shutil.which("docker") and run(["docker", "info"], check=False).returncode == 0:
        containers = [c["Names"] for c in fleet_containers(name)]
        if containers:
            docker("rm", "-f", "-v", *containers)
        for net in docker("network", "ls", "-q", "--filter", f"label={LABEL}={name}").split():
            docker("network", "rm", net)
        for vol in docker("volume", "ls", "-q", "--filter", f"label={LABEL}={name}").split():
            docker("volume", "rm", vol)
    inv = inventory_dir(name, args.inventory) / "hosts.yml"
    if inv.exists() and "tools/fleet.py" in inv.read_text():
        inv.unlink()
    shutil.rmtree(STATE_DIR / name, ignore_errors=True)
    LOG.info("fleet %s removed", name)


def cmd_status(args: argparse.Namespace) -> None:
    containers = fleet_containers(args.name)
    if not containers:
        print(f"fleet {args.name}: nothing running")
        return
    for c in sorted(containers, key=lambda c: c["Names"]):
        fmt = "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}"
        address = docker("inspect", "-f", fmt, c["Names"])
        print(f"{c['Names']:<28} {c['State']:<10} {address}")


def cmd_image(args: argparse.Namespace) -> None:
    ensure_engine()
    print(ensure_image() if not args.print_tag else image_tag())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--name", default=os.environ.get("FLEET_NAME", DEFAULT_FLEET),
                        help="fleet name: prefixes containers, network, volumes and key (default %(default)s)")
    common.add_argument("--inventory", help="directory to write hosts.yml into")
    up = sub.add_parser("up", parents=[common], help="start the fleet and write its inventory")
    up.add_argument("--apps", type=int, default=int(os.environ.get("FLEET_APPS", "2")), help="number of app hosts")
    up.add_argument("--hosts", help="explicit topology: name:group[+group],... (overrides --apps)")
    up.set_defaults(func=cmd_up)
    sub.add_parser("down", parents=[common], help="remove the fleet").set_defaults(func=cmd_down)
    sub.add_parser("status", parents=[common], help="show the fleet's hosts").set_defaults(func=cmd_status)
    image = sub.add_parser("image", help="build the host image if needed and print its tag")
    image.add_argument("--print-tag", action="store_true", help="only print the tag the recipe gives")
    image.set_defaults(func=cmd_image)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="fleet: %(message)s")
    if getattr(args, "apps", 1) < 1:
        parser.error("--apps must be at least 1")
    args.func(args)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Build a release of a Django project on the controller, once, for every app host.

A release is one tarball holding the project's source and a wheelhouse of its locked
requirements for the app hosts' Python versions and platform, so hosts install it offline.
Its id is a digest of the source, the lock and the targets: unchanged input gives the same id
and the same bytes (sorted members, fixed times and owners), and an existing artifact is
reused without touching the network.

Prints one JSON object: {"id", "artifact", "sha256", "built"}.
"""

from __future__ import annotations

import argparse
import fnmatch
import gzip
import hashlib
import io
import json
import logging
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

LOG = logging.getLogger("build_release")

# Never part of a release: caches, VCS data, virtualenvs, what a developer's runs produce and
# local secrets (.env files: the hosts get their settings from the role, never from the source).
# As in .gitignore, a pattern matches a name at any depth, and one that starts with "/" only at the
# top of the project: a project's own media/ or staticfiles/ output is left out, an app's
# static/app/media/ directory is not.
DEFAULT_EXCLUDES = ("__pycache__", "*.pyc", ".git", ".hg", ".venv", "node_modules", ".pytest_cache", "*.sqlite3",
                    ".env", ".env.*", "/venv", "/media", "/staticfiles", "/RELEASE")


def excluded(rel: Path, excludes: tuple[str, ...]) -> bool:
    """Whether a path relative to the source matches an exclude pattern (see DEFAULT_EXCLUDES)."""
    return any(fnmatch.fnmatch(rel.as_posix(), pat[1:]) if pat.startswith("/") else fnmatch.fnmatch(rel.name, pat)
               for pat in excludes)


def source_files(source: Path, excludes: tuple[str, ...]) -> list[Path]:
    """Files of the source tree, relative to it, sorted, without the excluded ones."""
    found = []
    for root, dirs, files in os.walk(source):
        rel_root = Path(root).relative_to(source)
        dirs[:] = sorted(d for d in dirs if not excluded(rel_root / d, excludes))
        found.extend(rel_root / name for name in files if not excluded(rel_root / name, excludes))
    return sorted(found)


def release_id(source: Path, files: list[Path], requirements: Path, pythons: list[str], platform: str) -> str:
    """Digest of everything that makes the release: file names, exec bits and contents, lock, targets."""
    digest = hashlib.sha256()
    for rel in files:
        path = source / rel
        digest.update(str(rel).encode() + b"\0" + (b"x" if os.access(path, os.X_OK) else b"-") + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    digest.update(b"requirements\0" + requirements.read_bytes())
    digest.update(("\0".join(sorted(pythons)) + "\0" + platform).encode())
    return digest.hexdigest()[:12]


def download_wheels(requirements: Path, pythons: list[str], platform: str, dest: Path) -> None:
    """Fetch binary wheels of the lock for each target Python; no sdist, so nothing builds on hosts."""
    for version in sorted(set(pythons)):
        abi = "cp" + version.replace(".", "")
        LOG.info("downloading wheels for Python %s on %s", version, platform)
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:", "--dest", str(dest),
               "--python-version", version, "--implementation", "cp", "--abi", abi, "--abi", "abi3",
               "--abi", "none", "--platform", platform, "--requirement", str(requirements)]
        proc = subprocess.run(cmd, text=True, capture_output=True, check=False)
        if proc.returncode != 0:
            raise SystemExit(f"pip download failed for Python {version}:\n{proc.stdout}{proc.stderr}")


def _add(tar: tarfile.TarFile, name: str, data: bytes, executable: bool = False) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o755 if executable else 0o644
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    tar.addfile(info, io.BytesIO(data))


def write_artifact(target: Path, rid: str, source: Path, files: list[Path], requirements: Path,
                   wheelhouse: Path) -> None:
    """Write the tarball reproducibly: sorted members, zero times and owners, no gzip name or date."""
    partial = target.with_suffix(".partial")
    with open(partial, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
        _add(tar, "requirements.txt", requirements.read_bytes())
        _add(tar, "src/RELEASE", rid.encode() + b"\n")
        for rel in files:
            path = source / rel
            _add(tar, f"src/{rel}", path.read_bytes(), os.access(path, os.X_OK))
        for wheel in sorted(wheelhouse.iterdir()):
            _add(tar, f"wheelhouse/{wheel.name}", wheel.read_bytes())
        # Last, so a host that finds RELEASE knows the whole archive was unpacked.
        _add(tar, "RELEASE", rid.encode() + b"\n")
    partial.rename(target)


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def build(source: Path, requirements: Path, pythons: list[str], platform: str, out: Path, name: str,
          excludes: tuple[str, ...] = DEFAULT_EXCLUDES) -> dict[str, object]:
    """Build (or find) the release artifact and describe it."""
    if not (source / "manage.py").is_file():
        raise SystemExit(f"{source} has no manage.py: point the source at the Django project's directory")
    files = source_files(source, excludes)
    rid = release_id(source, files, requirements, pythons, platform)
    out.mkdir(parents=True, exist_ok=True)
    artifact = out / f"{name}-{rid}.tar.gz"
    built = not artifact.exists()
    if built:
        LOG.info("building release %s of %s", rid, source)
        with tempfile.TemporaryDirectory(prefix="wheelhouse-") as tmp:
            download_wheels(requirements, pythons, platform, Path(tmp))
            write_artifact(artifact, rid, source, files, requirements, Path(tmp))
    else:
        LOG.info("release %s already built: %s", rid, artifact)
    return {"id": rid, "artifact": str(artifact), "sha256": sha256_of(artifact), "built": built}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", required=True, type=Path, help="the Django project (the folder of manage.py)")
    parser.add_argument("--requirements", required=True, type=Path, help="the locked requirements file")
    parser.add_argument("--python-version", action="append", required=True, dest="pythons",
                        help="a target's Python version, X.Y (repeat for mixed fleets)")
    parser.add_argument("--platform", required=True, help="wheel platform tag, such as manylinux2014_x86_64")
    parser.add_argument("--out", required=True, type=Path, help="where artifacts are kept")
    parser.add_argument("--name", default="release", help="artifact name prefix")
    parser.add_argument("--exclude", action="append", default=[], help="another pattern to leave out (a name; /path for the top only)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="build_release: %(message)s", stream=sys.stderr)
    result = build(args.source.expanduser().resolve(), args.requirements.expanduser().resolve(), args.pythons,
                   args.platform, args.out.expanduser(), args.name, DEFAULT_EXCLUDES + tuple(args.exclude))
    print(json.dumps(result))


if __name__ == "__main__":
    main()

"""Which files of a Django project go into a release (the build runs on the controller, no host)."""

from __future__ import annotations

import sys
from pathlib import Path

from conftest import ROOT

sys.path.insert(0, str(ROOT / "roles" / "django_app" / "files"))
from build_release import DEFAULT_EXCLUDES, source_files  # noqa: E402


def make_tree(root: Path, names: list[str]) -> None:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(name)


def test_release_keeps_the_source_and_leaves_out_local_output_and_secrets(tmp_path: Path) -> None:
    kept = ["manage.py", "shop/settings.py", "shop/static/shop/media/logo.png", "shop/templates/shop/RELEASE",
            "docs/venv/notes.txt", "requirements.txt"]
    left_out = ["media/uploads/a.jpg", "staticfiles/admin/base.css", "RELEASE", "venv/bin/python", ".env",
                ".env.production", "shop/.env", ".git/config", "shop/__pycache__/x.cpython-311.pyc",
                "db.sqlite3", "node_modules/x/index.js"]
    make_tree(tmp_path, kept + left_out)
    assert [p.as_posix() for p in source_files(tmp_path, DEFAULT_EXCLUDES)] == sorted(kept)


def test_extra_patterns_match_names_anywhere_or_paths_from_the_top(tmp_path: Path) -> None:
    make_tree(tmp_path, ["manage.py", "local_settings.py", "shop/local_settings.py", "build/out.txt",
                         "shop/build/keep.txt"])
    files = source_files(tmp_path, DEFAULT_EXCLUDES + ("local_settings.py", "/build"))
    assert [p.as_posix() for p in files] == ["manage.py", "shop/build/keep.txt"]

"""`entmap verify-archive` on hostile archives: it refuses unsafe member names and links and never
opens a path outside the folder it was given (every path it opens is recorded by an audit hook)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

from entmap.present.archive import MANIFEST

HOOKED_CLI = """
import json, os, sys
from entmap.cli import main
opened = []
def hook(event, args):
    if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
        opened.append(os.path.realpath(os.fsdecode(args[0])))
sys.addaudithook(hook)
sys.argv = ["entmap", "verify-archive", sys.argv[1]]
try:
    code = main()
except SystemExit as exc:
    code = exc.code
print(json.dumps({"code": code, "opened": opened}), file=sys.__stdout__)
"""


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def verify_in_subprocess(folder: Path) -> tuple[int, list[str], str]:
    """(exit code, every path opened once entmap is imported, stderr) of the CLI on ``folder``."""
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[2] / "src"))
    result = subprocess.run(
        [sys.executable, "-c", HOOKED_CLI, str(folder)], capture_output=True, text=True, env=env, timeout=120
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    return report["code"], report["opened"], result.stderr


def test_hostile_manifest_entries_and_links_are_refused_and_nothing_outside_is_opened(tmp_path):
    secret = tmp_path / "secret"
    secret.write_bytes(b"outside the archive")
    folder = tmp_path / "archive" / "run"
    (folder / "results").mkdir(parents=True)
    (folder / "results/table.csv").write_bytes(b"a,b\n1,2\n")
    (folder / "results/linked.txt").symlink_to(secret)
    (folder / "results/dir_link").symlink_to(tmp_path, target_is_directory=True)
    outside = sha(secret.read_bytes())
    lines = [
        f"{sha(b'a,b' + bytes([10]) + b'1,2' + bytes([10]))}  results/table.csv",
        f"{outside}  ../../secret",
        f"{outside}  /etc/passwd",
        f"{outside}  {secret}",
        f"{outside}  results/linked.txt",
        f"{outside}  results/dir_link/secret",
        "this line is not a manifest line",
    ]
    (folder / MANIFEST).write_text("\n".join(lines) + "\n")
    code, opened, stderr = verify_in_subprocess(folder)
    assert code == 1
    root, sandbox = os.path.realpath(folder), os.path.realpath(tmp_path)
    assert any(p.startswith(root + os.sep) for p in opened), "the audit hook saw no member opened"
    # the hostile entries point into tmp_path outside the archive, and at /etc/passwd: none was opened
    assert [p for p in opened if p.startswith(sandbox + os.sep) and not p.startswith(root + os.sep)] == []
    assert "/etc/passwd" not in opened
    assert f"{folder / MANIFEST}:2: ../../secret: refused, a path that leaves the archive folder" in stderr
    assert f"{folder / MANIFEST}:3: /etc/passwd: refused, an absolute path" in stderr
    assert "results/linked.txt: refused, results/linked.txt is a symbolic link" in stderr
    assert "results/dir_link/secret: refused, results/dir_link is a symbolic link" in stderr
    assert f"{folder / MANIFEST}:7: malformed line" in stderr
    assert "Traceback" not in stderr
    assert "results/table.csv" not in stderr  # the intact member passes


def test_an_intact_archive_passes(tmp_path):
    folder = tmp_path / "run"
    (folder / "results").mkdir(parents=True)
    (folder / "results/a.txt").write_bytes(b"x")
    (folder / MANIFEST).write_text(f"{sha(b'x')}  results/a.txt\n")
    code, _, stderr = verify_in_subprocess(folder)
    assert code == 0 and stderr == ""

"""The store under GAG_HOME: atomic installs, records, repair after a killed install, size limits."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gag_core import install, store
from gag_core.errors import DomainNotFoundError, ModuleFormatError
from gag_core.module import MANIFEST, verify_module
from gag_core.safety import SizeLimits, parse_size, read_safetensors_header, sha256_file

REPO = Path(__file__).resolve().parents[1]


# --- helpers shared with test_distribution / test_attacks ----------------------------------------

def tree_hash(root: Path) -> str:
    """A hash of everything under ``root``: names, kinds, link targets and file bytes."""
    h = hashlib.sha256()
    root = Path(root)
    for dirpath, dirnames, filenames in sorted(os.walk(root, followlinks=False)):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            p = Path(dirpath) / name
            rel = p.relative_to(root).as_posix()
            if p.is_symlink():
                h.update(f"L {rel} -> {os.readlink(p)}\n".encode())
            elif p.is_dir():
                h.update(f"D {rel}\n".encode())
            else:
                h.update(f"F {rel} {sha256_file(p)}\n".encode())
    return h.hexdigest()


def rehash(folder: Path, **manifest_changes) -> None:
    """Recompute the manifest's sha256 of every file (as an attacker would), applying ``manifest_changes``."""
    folder = Path(folder)
    data = json.loads((folder / MANIFEST).read_text())
    data.update(manifest_changes)
    data["files"] = {rel: sha256_file(folder / rel) for rel in data["files"] if (folder / rel).is_file()} | {
        p.relative_to(folder).as_posix(): sha256_file(p) for p in folder.rglob("*")
        if p.is_file() and not p.is_symlink() and p.name != MANIFEST}
    (folder / MANIFEST).write_text(json.dumps(data, sort_keys=True, indent=2))


def cli():
    from gag_cli.main import app

    return app


# --- install / uninstall -----------------------------------------------------------------------

def test_install_list_uninstall_round_trip(make_module, gag_home):
    src = make_module("alpha")
    before = tree_hash(src)
    dom = install.install_folder(src)
    assert dom.path == gag_home / "domains" / "alpha" and verify_module(dom.path).name == "alpha"
    assert tree_hash(src) == before  # the source is copied, never moved
    listed = store.list_installed()
    assert list(listed) == ["alpha"] and listed["alpha"].source == "folder"
    assert listed["alpha"].origin == str(src.resolve()) and listed["alpha"].record["version"] == "0.1.0"
    store.uninstall("alpha")
    assert store.list_installed() == {}
    assert not any(p.name.startswith(".staging-") for p in (gag_home / "domains").iterdir())
    with pytest.raises(DomainNotFoundError, match="No installed domain named 'alpha'"):
        store.uninstall("alpha")


def test_install_under_another_name_rewrites_only_the_name(make_module):
    src = make_module("alpha")
    dom = install.install_folder(src, name="beta")
    assert verify_module(dom.path).name == "beta"
    assert json.loads((src / MANIFEST).read_text())["name"] == "alpha"


def test_existing_domain_needs_force_and_force_replaces(make_module, gag_home):
    install.install_folder(make_module("alpha"))
    other = make_module("alpha", seed=7)
    with pytest.raises(ModuleFormatError, match="already installed; pass --force"):
        install.install_folder(other)
    install.install_folder(other, force=True)
    installed = gag_home / "domains" / "alpha"
    assert sha256_file(installed / "projector.safetensors") == sha256_file(other / "projector.safetensors")


@pytest.mark.parametrize("failing_call", [1, 2, 3])
def test_failed_swap_leaves_previous_installation_and_no_debris(make_module, gag_home, monkeypatch, failing_call):
    """Simulate a crash inside the final renames: os.replace fails once at each of the three renames."""
    install.install_folder(make_module("alpha"))
    before = tree_hash(gag_home)
    new = make_module("alpha", seed=5)
    real_replace, calls = os.replace, {"n": 0}

    def flaky_replace(a, b):
        calls["n"] += 1
        if calls["n"] == failing_call:
            raise OSError("simulated crash")
        return real_replace(a, b)

    monkeypatch.setattr(os, "replace", flaky_replace)
    with pytest.raises(OSError, match="simulated crash"):
        install.install_folder(new, force=True)
    monkeypatch.setattr(os, "replace", real_replace)
    assert tree_hash(gag_home) == before
    verify_module(gag_home / "domains" / "alpha")
    install.install_folder(new, force=True)  # the next install works
    assert sha256_file(gag_home / "domains" / "alpha" / "projector.safetensors") == sha256_file(new / "projector.safetensors")


def test_verification_failure_mid_install_leaves_the_previous_installation(make_module, gag_home, monkeypatch):
    """The source passes the first check, then changes before it is copied: the staged copy fails verification
    under the lock, and the installed version stays exactly as it was."""
    install.install_folder(make_module("alpha"))
    before = tree_hash(gag_home)
    new = make_module("alpha", seed=5)
    real_verify = install.verify_module

    def verify_then_tamper(folder, limits=None):
        manifest = real_verify(folder, limits)
        with open(Path(folder) / "projector.safetensors", "r+b") as f:
            f.seek(-4, 2)
            f.write(b"\x01\x02\x03\x04")
        return manifest

    monkeypatch.setattr(install, "verify_module", verify_then_tamper)
    with pytest.raises(ModuleFormatError, match="tampered with"):
        install.install_folder(new, force=True)
    assert tree_hash(gag_home) == before
    verify_module(gag_home / "domains" / "alpha")


def test_failed_first_install_leaves_nothing_to_trip_over(make_module, gag_home):
    src = make_module("alpha")
    with pytest.MonkeyPatch.context() as mp:  # not monkeypatch.undo(): that would also drop GAG_HOME
        mp.setattr(install, "copy_module", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
        with pytest.raises(KeyboardInterrupt):
            install.install_folder(src)
    assert store.list_installed() == {}
    assert not any(p.name.startswith(".staging-") for p in (gag_home / "domains").iterdir())
    install.install_folder(src)


KILL_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    from gag_core import install
    kill_at, calls, real = int(sys.argv[2]), [0], os.replace
    def replace(a, b):
        calls[0] += 1
        if calls[0] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)  # no finally, no cleanup: a real kill
        return real(a, b)
    os.replace = replace
    install.install_folder(sys.argv[1], force=True)
""")


@pytest.mark.parametrize("kill_at, lands", [(2, False), (3, True)])
def test_killed_install_is_repaired_by_the_next_command(make_module, gag_home, tmp_path, kill_at, lands):
    """SIGKILL after the old install was moved aside (2) or after the new one landed but before its record (3)."""
    install.install_folder(make_module("alpha"))
    old_record = store.read_record("alpha")
    new = make_module("alpha", seed=9)  # rebuilt in the same source folder
    script = tmp_path / "kill.py"
    script.write_text(KILL_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(REPO), "GAG_HOME": str(gag_home)}
    proc = subprocess.run([sys.executable, str(script), str(new), str(kill_at)], env=env, capture_output=True, timeout=120)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    assert any(p.name.startswith(".staging-") for p in (gag_home / "domains").iterdir())  # the kill left debris
    listed = store.list_installed()  # any later command repairs first
    assert list(listed) == ["alpha"]
    verify_module(listed["alpha"].path)
    got = sha256_file(listed["alpha"].path / "projector.safetensors")
    assert (got == sha256_file(new / "projector.safetensors")) is lands
    assert (listed["alpha"].record["installed_at"] != old_record["installed_at"]) is lands  # record rolled forward
    assert not any(p.name.startswith(".staging-") for p in (gag_home / "domains").iterdir())
    install.install_folder(new, force=True)


# --- size limits and headers ------------------------------------------------------------------

def test_size_limits_are_read_from_the_environment_at_call_time(make_module, monkeypatch, gag_home):
    src = make_module("alpha")
    monkeypatch.setenv("GAG_MAX_FILE_BYTES", "10KB")
    with pytest.raises(ModuleFormatError, match="per-file limit is 10000"):
        install.install_folder(src)
    monkeypatch.setenv("GAG_MAX_FILE_BYTES", "1MiB")
    monkeypatch.setenv("GAG_MAX_MODULE_BYTES", "20000")
    with pytest.raises(ModuleFormatError, match="the limit is 20000"):
        install.install_folder(src)
    assert not (gag_home / "domains").exists()
    monkeypatch.delenv("GAG_MAX_MODULE_BYTES")
    install.install_folder(src)


def test_parse_size():
    assert parse_size("500MB") == 500 * 1000**2 and parse_size("2GiB") == 2 * 1024**3 and parse_size("123") == 123
    assert SizeLimits.with_max_size("1KB").per_file == 1000
    with pytest.raises(ValueError, match="Invalid --max-size"):
        SizeLimits.with_max_size("lots")


def _safetensors(path: Path, header: dict, data: bytes) -> Path:
    raw = json.dumps(header).encode()
    path.write_bytes(len(raw).to_bytes(8, "little") + raw + data)
    return path


@pytest.mark.parametrize("header, data, message", [
    ({"a": {"dtype": "F32", "shape": [-1, -2], "data_offsets": [0, 8]}}, b"\0" * 8, "negative dimension"),
    ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
      "b": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4, "overlap or leave gaps"),
    ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 12, "trailing bytes"),
    ({"a": {"dtype": "Q4", "shape": [1], "data_offsets": [0, 1]}}, b"\0", "unknown dtype"),
    ({"a": {"dtype": "F32", "shape": ["1"], "data_offsets": [0, 4]}}, b"\0" * 4, "malformed header entry"),
])
def test_forged_safetensors_headers_are_refused(tmp_path, header, data, message):
    with pytest.raises(ModuleFormatError, match=message):
        read_safetensors_header(_safetensors(tmp_path / "x.safetensors", header, data))


def test_cli_install_list_uninstall_folder(make_module, gag_home):
    runner = CliRunner()
    src = make_module("alpha")
    r = runner.invoke(cli(), ["install-domain", str(src), "--max-size", "10MB"])
    assert r.exit_code == 0, r.output
    assert "Installed domain alpha (folder)" in " ".join(r.output.split())
    rows = json.loads(runner.invoke(cli(), ["list", "--json"]).output)
    row = next(r for r in rows if r["name"] == "alpha")
    assert row["source"] == "folder" and row["version"] == "0.1.0" and row["base"].endswith("base")
    r = runner.invoke(cli(), ["install-domain", str(src), "--max-size", "1KB", "--force"])
    assert r.exit_code == 1 and "per-file limit is 1000" in " ".join(r.output.split())
    r = runner.invoke(cli(), ["uninstall-domain", "alpha"])
    assert r.exit_code == 0 and "Uninstalled alpha" in r.output
    assert not (gag_home / "domains" / "alpha").exists()

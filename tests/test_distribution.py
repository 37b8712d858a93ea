"""Distribution: sources, package-domain -> wheel -> pip -> entry point, Hub pull (offline from the cache), push."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path
from urllib.parse import unquote

import pytest
from typer.testing import CliRunner

from gag_core import distribution, store
from gag_core.distribution import hub_push
from gag_core.errors import ConfigError
from gag_core.models import EMBEDDED_ID
from gag_core.module import CARD, MANIFEST, read_manifest, verify_module
from gag_core.safety import sha256_file
from tests.test_store import cli, tree_hash

REPO = Path(__file__).resolve().parents[1]
MINERALS = REPO / "modules" / "gag-domain-minerals"


def flat(text: str) -> str:
    return " ".join(text.split())


# --- sources ------------------------------------------------------------------------------------

def test_parse_source(tmp_path):
    (tmp_path / "mod").mkdir()
    (tmp_path / "x.whl").write_bytes(b"")
    assert distribution.parse_source(str(tmp_path / "mod")).kind == "folder"
    assert distribution.parse_source(str(tmp_path / "x.whl")).kind == "archive"
    assert distribution.parse_source("gag-domain-minerals").kind == "pypi"
    assert distribution.parse_source("gag-domain-minerals==0.2.0").value == "gag-domain-minerals==0.2.0"
    src = distribution.parse_source("hf:acme/minerals@v1.2")
    assert (src.kind, src.value, src.revision, str(src)) == ("hub", "acme/minerals", "v1.2", "hf:acme/minerals@v1.2")
    assert distribution.parse_source("hf:acme/minerals").revision is None
    for bad, msg in [("hf:acme", "Invalid Hub source"), ("hf:acme/x@", "Invalid Hub source"),
                     ("--index-url=http://evil", "Cannot install"), ("acme/minerals", "hf:ORG/NAME"),
                     (str(tmp_path / "missing.whl"), "No such package file"), ("git+https://x/y.git", "Cannot install")]:
        with pytest.raises(ConfigError, match=re.escape(msg)):
            distribution.parse_source(bad)


# --- package-domain -> wheel -> pip -> entry point ----------------------------------------------

@pytest.fixture(scope="module")
def packaged(tiny_paths, tmp_path_factory):
    """`gag package-domain` of a tiny module, built into a wheel with `python -m build --no-isolation`."""
    from tests.factories import build_tiny_module

    root = tmp_path_factory.mktemp("packaged")
    module = build_tiny_module(root / "src" / "tinydom", name="tinydom", paths=tiny_paths)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GAG_HOME", str(root / "home"))
        runner = CliRunner()
        assert runner.invoke(cli(), ["install-domain", str(module)]).exit_code == 0
        r = runner.invoke(cli(), ["package-domain", "tinydom", "--out", str(root / "project")])
        assert r.exit_code == 0, r.output
    wheel = build_wheel(root / "project", root / "dist")
    return {"module": module, "project": root / "project", "wheel": wheel, "root": root}


def build_wheel(project: Path, out: Path) -> Path:
    proc = subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out), str(project)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (wheel,) = out.glob("*.whl")
    return wheel


def gag_subprocess(*args, env=None, python=sys.executable, timeout=300):
    proc = subprocess.run([python, "-m", "gag_cli.main", *args], capture_output=True, text=True, env=env, timeout=timeout)
    return proc.returncode, proc.stdout, proc.stderr


def test_packaged_project_layout(packaged):
    project = packaged["project"]
    meta = tomllib.loads((project / "pyproject.toml").read_text())
    assert meta["project"]["name"] == "gag-domain-tinydom" and meta["project"]["dependencies"] == []
    assert meta["project"]["entry-points"]["gag"] == {"tinydom": "gag_domain_tinydom"}
    verify_module(project / "gag_domain_tinydom" / "module")
    assert "register('tinydom', MODULE)" in (project / "gag_domain_tinydom" / "__init__.py").read_text()


def test_packaged_project_matches_the_minerals_package(packaged):
    """modules/gag-domain-minerals is the first-party example: same build backend, entry-point shape, layout."""
    ours = tomllib.loads((packaged["project"] / "pyproject.toml").read_text())
    theirs = tomllib.loads((MINERALS / "pyproject.toml").read_text())
    assert ours["build-system"] == theirs["build-system"]
    assert theirs["project"]["entry-points"]["gag"] == {"minerals": "gag_domain_minerals"}
    ours_data = ours["tool"]["setuptools"]["package-data"]["gag_domain_tinydom"]
    assert set(ours_data) <= set(theirs["tool"]["setuptools"]["package-data"]["gag_domain_minerals"])
    minerals_init = (MINERALS / "gag_domain_minerals" / "__init__.py").read_text()
    assert "def register_domains(register)" in minerals_init and '"module"' in minerals_init
    assert theirs["project"]["dependencies"] == ours["project"]["dependencies"] == []


def test_package_domain_refuses_a_non_empty_out(make_module, tmp_path):
    runner = CliRunner()
    runner.invoke(cli(), ["install-domain", str(make_module("alpha"))])
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("x")
    r = runner.invoke(cli(), ["package-domain", "alpha", "--out", str(tmp_path / "busy")])
    assert r.exit_code == 1 and "not empty" in r.output


def test_wheel_installed_with_target_is_found_through_the_entry_point(packaged, tmp_path, gag_home):
    """pip install --target + PYTHONPATH: `gag list` finds the domain through the `gag` entry point."""
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-input", "--disable-pip-version-check",
                    "--target", str(target), str(packaged["wheel"])], check=True, capture_output=True, timeout=300)
    env = {**os.environ, "GAG_HOME": str(gag_home), "PYTHONPATH": os.pathsep.join([str(target), str(REPO)])}
    rc, out, err = gag_subprocess("list", "--json", env=env)
    assert rc == 0, err
    row = next(r for r in json.loads(out) if r["name"] == "tinydom")
    assert row["source"] == "package" and row["distribution"] == "gag-domain-tinydom"
    assert Path(row["path"]) == target / "gag_domain_tinydom" / "module"
    rc, out, err = gag_subprocess("info", "tinydom", env=env)
    assert rc == 0 and "verified" in out
    # pip cannot uninstall what lives outside the environment: refused, with the fix
    rc, out, err = gag_subprocess("uninstall-domain", "tinydom", env=env)
    assert rc == 1 and "outside this environment" in flat(err)
    # without the target on the path the domain is gone
    env["PYTHONPATH"] = str(REPO)
    rc, out, err = gag_subprocess("list", "--json", env=env)
    assert "tinydom" not in [r["name"] for r in json.loads(out)]


@pytest.fixture(scope="module")
def scratch_venv(tmp_path_factory):
    """A throwaway venv that sees this environment's packages (gag, pip) but installs into its own site-packages."""
    venv = tmp_path_factory.mktemp("venv") / "v"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    parent = sysconfig.get_paths()["purelib"]
    (site / "_gag_parent_env.pth").write_text(f"import site; site.addsitedir({parent!r})\n")
    return python, site


def test_install_domain_from_a_wheel_with_pip_then_uninstall(packaged, scratch_venv, gag_home):
    python, site = scratch_venv
    env = {**os.environ, "GAG_HOME": str(gag_home), "PYTHONPATH": str(REPO)}
    rc, out, err = gag_subprocess("install-domain", str(packaged["wheel"]), env=env, python=python)
    assert rc == 0, out + err
    assert "Installed domain tinydom (package)" in flat(out)
    assert (site / "gag_domain_tinydom" / "module" / MANIFEST).is_file()
    assert store.read_record("tinydom")["distribution"] == "gag-domain-tinydom"
    rc, out, err = gag_subprocess("list", "--json", env=env, python=python)
    row = next(r for r in json.loads(out) if r["name"] == "tinydom")
    assert (row["source"], row["version"], row["distribution"]) == ("package", "0.1.0", "gag-domain-tinydom")
    assert distribution.installed_version("gag-domain-tinydom") is None  # this test's own environment is untouched
    rc, out, err = gag_subprocess("uninstall-domain", "tinydom", env=env, python=python)
    assert rc == 0 and "Uninstalled package gag-domain-tinydom" in flat(out), err
    assert not (site / "gag_domain_tinydom").exists() and not list(site.glob("gag_domain_tinydom-*"))
    assert store.read_record("tinydom") == {}
    rc, out, err = gag_subprocess("list", "--json", env=env, python=python)
    assert "tinydom" not in [r["name"] for r in json.loads(out)]


def test_package_that_does_not_verify_is_refused_or_uninstalled(packaged, scratch_venv, gag_home, tmp_path):
    """A tampered module file is refused before pip installs anything; a package whose entry point registers
    something that does not verify is installed, found wanting, and pip-uninstalled again."""
    import shutil

    python, site = scratch_venv
    env = {**os.environ, "GAG_HOME": str(gag_home), "PYTHONPATH": str(REPO)}
    before = sorted(p.name for p in site.iterdir())
    tampered = tmp_path / "tampered"
    shutil.copytree(packaged["project"], tampered)
    with open(tampered / "gag_domain_tinydom" / "module" / "projector.safetensors", "r+b") as f:
        f.seek(-4, 2)
        f.write(b"\x01\x02\x03\x04")
    rc, out, err = gag_subprocess("install-domain", str(build_wheel(tampered, tmp_path / "d1")), env=env, python=python)
    assert rc == 1 and "tampered with" in flat(err)
    assert sorted(p.name for p in site.iterdir()) == before

    misnamed = tmp_path / "misnamed"
    shutil.copytree(packaged["project"], misnamed)
    init = misnamed / "gag_domain_tinydom" / "__init__.py"
    init.write_text(init.read_text().replace("register('tinydom', MODULE)", "register('other', MODULE)"))
    rc, out, err = gag_subprocess("install-domain", str(build_wheel(misnamed, tmp_path / "d2")), env=env, python=python)
    assert rc == 1 and "registers domain 'other' for a module named 'tinydom'" in flat(err)
    assert "uninstalled again" in flat(err)
    assert sorted(p.name for p in site.iterdir()) == before


def test_name_option_is_refused_for_packages(packaged):
    r = CliRunner().invoke(cli(), ["install-domain", str(packaged["wheel"]), "--name", "x"])
    assert r.exit_code == 1 and "--name applies to folders and Hub repos" in flat(r.output)


@pytest.fixture
def fake_package_domain(make_module):
    """A plugin registered in-process (not through pip) whose register_domains ships a module folder."""
    from gag_plugins import hookimpl
    from gag_plugins.manager import load_plugins

    folder = make_module("shipped")

    class Plugin:
        @staticmethod
        @hookimpl
        def register_domains(register):
            register("shipped", folder)

    pm = load_plugins()
    pm.register(Plugin, name="gag-tests-fake-domain-package")
    try:
        yield folder
    finally:
        pm.unregister(name="gag-tests-fake-domain-package")


def test_a_folder_does_not_silently_shadow_a_package_domain(fake_package_domain, make_module, gag_home):
    runner = CliRunner()
    rows = json.loads(runner.invoke(cli(), ["list", "--json"]).output)
    assert {"name": "shipped", "source": "package"}.items() <= next(r for r in rows if r["name"] == "shipped").items()
    other = make_module("other")
    r = runner.invoke(cli(), ["install-domain", str(other), "--name", "shipped"])
    assert r.exit_code == 1 and "provided by package gag-tests-fake-domain-package; pass --force" in flat(r.output)
    assert not (gag_home / "domains" / "shipped").exists()
    assert runner.invoke(cli(), ["install-domain", str(other), "--name", "shipped", "--force"]).exit_code == 0
    rows = json.loads(runner.invoke(cli(), ["list", "--json"]).output)
    assert next(r for r in rows if r["name"] == "shipped")["source"] == "folder"  # GAG_HOME wins
    assert runner.invoke(cli(), ["uninstall-domain", "shipped"]).exit_code == 0  # removes the folder first
    r = runner.invoke(cli(), ["uninstall-domain", "shipped"])
    assert r.exit_code == 1 and "which pip does not know" in flat(r.output)


# --- the Hub, without network -------------------------------------------------------------------

class FakeHub:
    """Enough of the Hub's HTTP API for snapshot_download, served in-process through huggingface_hub's own
    client factory hook (``set_client_factory`` with an httpx MockTransport): no socket, no network."""

    def __init__(self):
        self.repos: dict[str, dict] = {}  # repo -> {"refs": {name: commit}, "commits": {commit: {path: bytes}}}
        self.requests: list = []
        self.online = True

    def publish(self, repo: str, files: dict[str, bytes], refs=("main",)) -> str:
        commit = hashlib.sha1(json.dumps(sorted((k, hashlib.sha256(v).hexdigest()) for k, v in files.items())).encode()).hexdigest()
        entry = self.repos.setdefault(repo, {"refs": {}, "commits": {}})
        entry["commits"][commit] = dict(files)
        for ref in refs:
            entry["refs"][ref] = commit
        return commit

    def publish_folder(self, repo: str, folder: Path, extra: dict | None = None, refs=("main",)) -> str:
        files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
        return self.publish(repo, {**files, ".gitattributes": b"*.safetensors filter=lfs\n", **(extra or {})}, refs)

    def _files(self, repo, rev):
        entry = self.repos.get(repo)
        if entry is None:
            return None, None
        commit = entry["refs"].get(rev, rev)
        return commit, entry["commits"].get(commit)

    def handle(self, request):
        httpx2 = http_module()
        assert self.online, f"the Hub was contacted while offline: {request.method} {request.url}"
        self.requests.append(request)
        path = unquote(request.url.path)
        if m := re.fullmatch(r"/api/models/([^/]+/[^/]+)/revision/(.+)", path):
            commit, files = self._files(m[1], m[2])
            if files is None:
                return httpx2.Response(404, headers={"X-Error-Code": "RepoNotFound" if commit is None else "RevisionNotFound"})
            return httpx2.Response(200, json={"id": m[1], "sha": commit, "siblings": [{"rfilename": f} for f in files]})
        if m := re.fullmatch(r"/api/models/([^/]+/[^/]+)/tree/([^/]+)", path):
            _, files = self._files(m[1], m[2])
            return httpx2.Response(200, json=[{"type": "file", "path": f, "size": len(b), "oid": hashlib.sha1(b).hexdigest()}
                                              for f, b in files.items()])
        if m := re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path):
            commit, files = self._files(m[1], m[2])
            if not files or m[3] not in files:
                return httpx2.Response(404, headers={"X-Error-Code": "EntryNotFound"})
            body = files[m[3]]
            headers = {"X-Repo-Commit": commit, "ETag": f'"{hashlib.sha256(body).hexdigest()}"',
                       "Content-Length": str(len(body))}
            return httpx2.Response(200, headers=headers, content=b"" if request.method == "HEAD" else body)
        return httpx2.Response(404)

    def paths_requested(self) -> list[str]:
        return [unquote(r.url.path) for r in self.requests]


ENDPOINT = "https://hub.example.test"


def http_module():
    """The HTTP library huggingface_hub's client factory uses (httpx or its successor), for its MockTransport."""
    from huggingface_hub.utils._http import default_client_factory

    client = default_client_factory()
    client.close()
    return sys.modules[type(client).__module__.split(".")[0]]


@pytest.fixture
def fake_hub(tmp_path, monkeypatch):
    import huggingface_hub

    if not hasattr(huggingface_hub, "set_client_factory"):
        pytest.skip("this huggingface_hub has no set_client_factory (needs >= 1.0)")
    from huggingface_hub import set_client_factory
    from huggingface_hub.utils._http import default_client_factory

    httpx2 = http_module()
    hub = FakeHub()
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_ENDPOINT", ENDPOINT)
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    set_client_factory(lambda: httpx2.Client(transport=httpx2.MockTransport(hub.handle), follow_redirects=True))
    try:
        yield hub
    finally:
        set_client_factory(default_client_factory)


def test_hub_pull_offline_from_a_cache_populated_by_huggingface_hub(make_module, fake_hub, monkeypatch, tmp_path):
    from huggingface_hub import snapshot_download

    module = make_module("tinydom")
    fake_hub.publish_folder("acme/tinydom", module, extra={"pytorch_model.bin": b"\x80\x04pickle"}, refs=("main", "v1"))
    # populate the cache with huggingface_hub itself (HF_HOME/hub is its cache layout: blobs, snapshots, refs)
    snapshot_download("acme/tinydom", revision="v1", cache_dir=tmp_path / "hf" / "hub", endpoint=ENDPOINT)
    fake_hub.online = False
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    r = CliRunner().invoke(cli(), ["install-domain", "hf:acme/tinydom@v1"])
    assert r.exit_code == 0, r.output
    dom = store.list_installed()["tinydom"]
    commit = fake_hub.repos["acme/tinydom"]["refs"]["v1"]
    assert dom.source == "hub" and dom.origin == f"hf:acme/tinydom@{commit}"
    assert sorted(p.name for p in dom.path.iterdir()) == sorted(p.name for p in module.iterdir())  # no .bin, no .gitattributes
    verify_module(dom.path)
    rows = json.loads(CliRunner().invoke(cli(), ["list", "--json"]).output)
    assert next(r for r in rows if r["name"] == "tinydom")["source"] == "hub"


def test_hub_pull_online_uses_endpoint_token_revision_and_patterns(make_module, fake_hub, monkeypatch):
    module = make_module("tinydom")
    fake_hub.publish_folder("acme/tinydom", module, extra={"evil.pkl": b"\x80\x04", "weights.bin": b"x"}, refs=("dev",))
    monkeypatch.setenv("HF_TOKEN", "hf_secret_for_test")
    r = CliRunner().invoke(cli(), ["install-domain", "hf:acme/tinydom@dev", "--name", "renamed"])
    assert r.exit_code == 0, r.output
    assert verify_module(store.list_installed()["renamed"].path).name == "renamed"
    assert {r.url.host for r in fake_hub.requests} == {"hub.example.test"}
    assert all(r.headers.get("authorization") == "Bearer hf_secret_for_test" for r in fake_hub.requests
               if "/resolve/" in r.url.path or "/api/models/" in r.url.path)
    fetched = [p for p in fake_hub.paths_requested() if "/resolve/" in p]
    assert fetched and not [p for p in fetched if p.endswith((".pkl", ".bin", ".gitattributes"))]
    assert "/api/models/acme/tinydom/revision/dev" in fake_hub.paths_requested()


def test_hub_errors_are_one_clear_line_and_change_nothing(fake_hub, monkeypatch, gag_home):
    before = tree_hash(gag_home)
    r = CliRunner().invoke(cli(), ["install-domain", "hf:acme/missing"])
    assert r.exit_code == 1 and "does not exist, is private, or is gated" in flat(r.output)
    fake_hub.online = False
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    r = CliRunner().invoke(cli(), ["install-domain", "hf:acme/missing@v9"])
    assert r.exit_code == 1 and "not (completely) in the Hugging Face cache" in flat(r.output)
    assert "Unset HF_HUB_OFFLINE" in flat(r.output)
    assert tree_hash(gag_home) == before


def test_hub_download_refuses_oversized_repos_before_downloading(make_module, fake_hub, monkeypatch, gag_home):
    fake_hub.publish_folder("acme/tinydom", make_module("tinydom"))
    before = tree_hash(gag_home)
    r = CliRunner().invoke(cli(), ["install-domain", "hf:acme/tinydom", "--max-size", "10KB"])
    assert r.exit_code == 1 and "Nothing was downloaded" in flat(r.output)
    assert not [r for r in fake_hub.requests if "/resolve/" in r.url.path and r.method == "GET"]
    assert tree_hash(gag_home) == before


# --- push ----------------------------------------------------------------------------------------

@pytest.fixture
def hub_calls(monkeypatch, tmp_path):
    """Mock HfApi's network methods; upload_folder snapshots the folder it is given (a temporary copy)."""
    from huggingface_hub import HfApi

    calls: dict[str, list] = {"create_repo": [], "create_branch": [], "upload_folder": []}

    def create_repo(self, repo_id, **kw):
        calls["create_repo"].append({"repo_id": repo_id, **kw})

    def create_branch(self, repo_id, **kw):
        calls["create_branch"].append({"repo_id": repo_id, **kw})

    def upload_folder(self, **kw):
        folder = Path(kw["folder_path"])
        snap = tmp_path / f"uploaded{len(calls['upload_folder'])}"
        import shutil

        shutil.copytree(folder, snap)
        calls["upload_folder"].append({**kw, "snapshot": snap, "endpoint": self.endpoint})
        return f"{ENDPOINT}/{kw['repo_id']}/commit/abc123"

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "create_branch", create_branch)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    monkeypatch.setenv("HF_ENDPOINT", ENDPOINT)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return calls


def test_push_domain_uploads_a_verified_module_with_a_hub_ready_card(make_module, hub_calls, fake_hub):
    runner = CliRunner()
    module = make_module("tinydom")
    runner.invoke(cli(), ["install-domain", str(module)])
    r = runner.invoke(cli(), ["push-domain", "tinydom", "--repo", "acme/tinydom", "--private", "--revision", "dev"])
    assert r.exit_code == 0, r.output
    assert "gag install-domain hf:acme/tinydom@dev" in flat(r.output)
    assert hub_calls["create_repo"] == [{"repo_id": "acme/tinydom", "repo_type": "model", "private": True, "exist_ok": True}]
    assert hub_calls["create_branch"] == [{"repo_id": "acme/tinydom", "repo_type": "model", "branch": "dev", "exist_ok": True}]
    (up,) = hub_calls["upload_folder"]
    assert (up["repo_id"], up["repo_type"], up["revision"], up["endpoint"]) == ("acme/tinydom", "model", "dev", ENDPOINT)
    assert up["allow_patterns"] == up["delete_patterns"] == distribution.HUB_PATTERNS
    folder = up["snapshot"]
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) == sorted(
        p.relative_to(module).as_posix() for p in module.rglob("*") if p.is_file())
    manifest = verify_module(folder)  # the uploaded copy verifies: the card's new hash is in its manifest
    card = (folder / CARD).read_text()
    meta = hub_push._front_matter(card)
    assert meta["library_name"] == "gag" and "gag" in meta["tags"] and "gag-domain-tinydom" in meta["tags"]
    assert "base_model" not in meta  # a local folder is not a Hub model id; the Hub would reject it
    assert manifest.files[CARD] == sha256_file(folder / CARD) != read_manifest(module).files[CARD]
    for rel in ("projector.safetensors", "expert/adapter_model.safetensors"):
        assert sha256_file(folder / rel) == sha256_file(module / rel)
    # what was pushed installs from the Hub
    fake_hub.publish_folder("acme/tinydom", folder, refs=("dev",))
    store.uninstall("tinydom")
    r = runner.invoke(cli(), ["install-domain", "hf:acme/tinydom@dev"])
    assert r.exit_code == 0, r.output


def test_push_keeps_a_good_card_and_maps_the_embedded_base(make_module, tmp_path):
    from gag_core.assemble import model_card

    manifest = read_manifest(make_module("tinydom"))
    manifest.base = {**manifest.base, "id": EMBEDDED_ID}
    card = distribution.hub_card(manifest, model_card(manifest))
    assert hub_push._front_matter(card)["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert distribution.hub_card(manifest, card) is None  # already Hub-ready: left alone
    manifest.base = {**manifest.base, "id": "Qwen/Qwen3-8B"}
    assert distribution.hub_card(manifest, model_card(manifest)) is None
    assert distribution.hub_card(manifest, "# no front matter\n") is not None


def test_push_refuses_offline_and_bad_repo_ids(make_module, hub_calls, monkeypatch):
    runner = CliRunner()
    runner.invoke(cli(), ["install-domain", str(make_module("tinydom"))])
    r = runner.invoke(cli(), ["push-domain", "tinydom", "--repo", "not a repo"])
    assert r.exit_code == 1 and "Invalid Hub repo" in r.output
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    r = runner.invoke(cli(), ["push-domain", "tinydom", "--repo", "acme/tinydom"])
    assert r.exit_code == 1 and "HF_HUB_OFFLINE is set" in flat(r.output)
    assert hub_calls["upload_folder"] == []


# --- gag list ------------------------------------------------------------------------------------

def test_list_check_fills_compatible_from_the_base_fingerprint(make_module, tiny_paths):
    runner = CliRunner()
    runner.invoke(cli(), ["install-domain", str(make_module("same"))])
    runner.invoke(cli(), ["install-domain", str(make_module("other", base_key="llama_base"))])
    plain = runner.invoke(cli(), ["list"])
    assert plain.exit_code == 0 and "compatible" not in plain.output and "--check" in plain.output
    r = runner.invoke(cli(), ["list", "--json", "--check", "--base", tiny_paths["base"]])
    assert r.exit_code == 0, r.output
    rows = {row["name"]: row for row in json.loads(r.output)}
    assert rows["same"]["compatible"] == "yes" and rows["other"]["compatible"] == "no"
    assert rows["other"]["base"] == tiny_paths["llama_base"] and rows["same"]["source"] == "folder"
    table = runner.invoke(cli(), ["list", "--check", "--base", tiny_paths["llama_base"]])
    assert table.exit_code == 0 and "compatible" in table.output

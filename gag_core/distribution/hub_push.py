"""``gag push-domain``: upload a verified copy of a module, with a Hub-ready model card, to a Hub model repo."""

from __future__ import annotations

import tempfile
from pathlib import Path

from ..errors import ConfigError, DistributionError, GagError
from ..models import EMBEDDED_ID
from ..module import CARD, Manifest, copy_module, verify_module
from ..safety import SizeLimits
from .hub_pull import HUB_PATTERNS, first_line, hub_settings
from .sources import REPO_ID, REVISION

EMBEDDED_HUB_BASE = "HuggingFaceTB/SmolLM2-135M-Instruct"


def hub_base_model(base_id: str) -> str | None:
    """The ``base_model`` a Hub card may name: a Hub repo id (the embedded model maps to its source repo)."""
    if base_id == EMBEDDED_ID:
        return EMBEDDED_HUB_BASE
    return base_id if REPO_ID.match(base_id) and not Path(base_id).exists() else None


def _front_matter(card: str) -> dict | None:
    import yaml

    if not card.startswith("---\n"):
        return None
    end = card.find("\n---", 4)
    try:
        meta = yaml.safe_load(card[4:end]) if end > 0 else None
    except yaml.YAMLError:
        return None
    return meta if isinstance(meta, dict) else None


def hub_card(manifest: Manifest, card: str | None) -> str | None:
    """A refreshed model card when ``card`` lacks the front matter the Hub needs; None when it is fine."""
    import yaml

    from ..assemble import model_card

    want = {"library_name": "gag", "base_model": hub_base_model(manifest.base["id"])}
    meta = _front_matter(card or "")
    if meta is not None and all(meta.get(k) == v for k, v in want.items()) and "gag" in (meta.get("tags") or []):
        return None
    fresh = model_card(manifest)
    body = fresh[fresh.find("\n---", 4) + len("\n---"):] if fresh.startswith("---\n") else "\n" + fresh
    meta = {k: v for k, v in want.items() if v is not None}
    meta["tags"] = ["gag", "generation-augmented-generation", "lora", f"gag-domain-{manifest.name}"]
    return "---\n" + yaml.safe_dump(meta, sort_keys=False) + "---" + body


def prepare_upload(folder: Path, dest: Path, limits: SizeLimits | None = None) -> tuple[Path, Manifest]:
    """A verified copy of the module with a Hub-ready card (the manifest's hash of README.md updated to match)."""
    verify_module(folder, limits)  # errors name the user's folder, not the temporary copy
    manifest = copy_module(folder, dest, limits)
    card_path = dest / CARD
    refreshed = hub_card(manifest, card_path.read_text(encoding="utf-8") if card_path.is_file() else None)
    if refreshed is not None:
        card_path.write_text(refreshed, encoding="utf-8")
        manifest.save(dest, limits)
        manifest = verify_module(dest, limits)
    return dest, manifest


def push_module(folder: Path, repo_id: str, *, private: bool = False, revision: str | None = None,
                token: str | None = None, api=None, limits: SizeLimits | None = None) -> str:
    """Create (or reuse) a model repo and upload the module so it mirrors the folder. Returns the commit URL."""
    if not REPO_ID.match(repo_id):
        raise ConfigError(f"Invalid Hub repo {repo_id!r}: expected ORG/NAME.")
    if revision is not None and not REVISION.match(revision):
        raise ConfigError(f"Invalid branch name {revision!r}.")
    if hub_settings().offline:
        raise DistributionError("HF_HUB_OFFLINE is set, so nothing can be pushed; unset it and retry.")
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi(endpoint=hub_settings().endpoint, token=token)
    with tempfile.TemporaryDirectory(prefix="gag-push-") as tmp:
        upload, manifest = prepare_upload(Path(folder), Path(tmp) / "module", limits)
        try:
            api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
            if revision and revision != "main":
                api.create_branch(repo_id, repo_type="model", branch=revision, exist_ok=True)
            commit = api.upload_folder(repo_id=repo_id, repo_type="model", folder_path=str(upload), revision=revision,
                                       commit_message=f"gag domain {manifest.name} v{manifest.version}",
                                       allow_patterns=HUB_PATTERNS, delete_patterns=HUB_PATTERNS)
        except GagError:
            raise
        except Exception as exc:
            raise DistributionError(f"Could not push to hf:{repo_id}: {type(exc).__name__}: {first_line(exc)}. Log in with "
                                    "`hf auth login` or set HF_TOKEN to a token with write access; check HF_ENDPOINT.") from None
    return str(getattr(commit, "commit_url", None) or commit)

"""Domain module format v1 (DESIGN.md §3): one folder for save, load, install, package, push and pull.

```
gag-domain.json                 sorted-key manifest with the sha256 of every other file
expert/adapter_config.json      peft LoRA of the expert backbone
expert/adapter_model.safetensors
projector.safetensors           layer mixer + projector
router/prototypes.safetensors   k-means prototypes of the training questions
router/exemplars.jsonl          exemplar questions (to rebuild prototypes with another encoder)
router/lexical.json             optional: term document frequencies for hybrid routing (gag_core.lexical)
router/calibration.json         optional: held-out questions for the router's calibration (gag_core.calibration)
knowledge/passages.jsonl        the passages a grounded expert reads (readout.context_passages > 0; gag_core.grounding)
README.md                       Hugging Face model card
```
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .errors import IncompatibleModuleError, ModuleFormatError
from .jsonl import iter_objects
from .models import fingerprints_match
from .projectors import BUILTIN_PROJECTORS, ProjectorBundle, ProjectorConfig
from .readouts import ReadoutConfig
from .safety import (SizeLimits, check_adapter_config, check_file_hashes, check_manifest_fields,
                     read_safetensors_header, scan_folder, sha256_file)

FORMAT_VERSION = 1
MANIFEST = "gag-domain.json"
ADAPTER_CONFIG = "expert/adapter_config.json"
ADAPTER_WEIGHTS = "expert/adapter_model.safetensors"
PROJECTOR = "projector.safetensors"
PROTOTYPES = "router/prototypes.safetensors"
EXEMPLARS = "router/exemplars.jsonl"
LEXICAL = "router/lexical.json"  # optional, like CALIBRATION: modules built before hybrid routing have neither
CALIBRATION = "router/calibration.json"
CARD = "README.md"
TRAIN_QA = "data/train_qa.jsonl"  # optional, like CORPUS_SAMPLE: the data `gag update-domain` replays
CORPUS_SAMPLE = "data/corpus_sample.jsonl"
PASSAGES = "knowledge/passages.jsonl"  # required when the readout's expert reads passages (context_passages > 0)
OPTIONAL_FILES = (LEXICAL, CALIBRATION, TRAIN_QA, CORPUS_SAMPLE, PASSAGES)
REQUIRED_FILES = (ADAPTER_CONFIG, ADAPTER_WEIGHTS, PROJECTOR, PROTOTYPES, EXEMPLARS)
MANIFEST_KEYS = {"format_version", "name", "version", "description", "base", "expert", "readout", "projector",
                 "prompt", "router", "files", "training", "history"}
MAX_MANIFEST_BYTES = 4 * 1024**2
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")


RESERVED_NAMES = ("general", "auto")  # the plain base; "route it for me" (gag serve's model names)


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name) or name in RESERVED_NAMES:
        raise ModuleFormatError(f"Invalid domain name {name!r}: use 1-64 lowercase letters, digits, '-', '_' or '.', "
                                "starting with a letter or digit ('general' and 'auto' are reserved route names).")
    return name


@dataclass
class Manifest:
    name: str
    base: dict  # {"id", "hidden_size", "fingerprint"}
    expert: dict  # {"id", "hidden_size"}
    readout: ReadoutConfig
    projector: ProjectorConfig
    router: dict  # {"encoder", "num_prototypes", "dim"}
    prompt: dict = field(default_factory=dict)  # {"instruction", "template"}
    version: str = "0.1.0"
    description: str = ""
    training: dict = field(default_factory=dict)
    files: dict = field(default_factory=dict)  # {relpath: sha256}
    history: list = field(default_factory=list)  # one entry per `gag update-domain` (absent when never updated)
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict:
        return {"format_version": self.format_version, "name": self.name, "version": self.version,
                "description": self.description, "base": self.base, "expert": self.expert,
                "readout": self.readout.to_dict(), "projector": self.projector.to_dict(), "prompt": self.prompt,
                "router": self.router, "training": self.training, "files": dict(sorted(self.files.items())),
                **({"history": self.history} if self.history else {})}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, indent=2, ensure_ascii=False) + "\n"

    def save(self, folder: Path, limits: SizeLimits | None = None) -> Path:
        """Write ``gag-domain.json`` into ``folder`` (sorted keys, format version) with the sha256 of every other
        file in it. Only for files gag has just written or verified: the hashes are what vouches for them."""
        folder = Path(folder)
        self.files = {rel: sha256_file(path) for rel, path in scan_folder(folder, limits).items() if rel != MANIFEST}
        path = folder / MANIFEST
        path.write_text(self.to_json(), encoding="utf-8")
        return path

    @classmethod
    def from_dict(cls, data: dict) -> "Manifest":
        if not isinstance(data, dict):
            raise ModuleFormatError(f"{MANIFEST} must hold a JSON object.")
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise ModuleFormatError(f"{MANIFEST} has format_version {version!r}; this gag reads version {FORMAT_VERSION}. "
                                    "Upgrade gag or re-export the module.")
        unknown = sorted(set(data) - MANIFEST_KEYS)
        if unknown:
            raise ModuleFormatError(f"{MANIFEST} has unknown fields {unknown}; gag never executes code from a module "
                                    "and refuses manifests it does not fully understand.")
        check_manifest_fields(data, MANIFEST)
        check_file_hashes(data.get("files") or {})
        history = data.get("history", [])
        if not isinstance(history, list) or not all(isinstance(h, dict) for h in history):
            raise ModuleFormatError(f"{MANIFEST}: 'history' must be a list of objects (one per update).")
        try:
            readout = ReadoutConfig(**data["readout"])
            projector = ProjectorConfig(**data["projector"])
            m = cls(name=check_name(data["name"]), base=dict(data["base"]), expert=dict(data["expert"]),
                    readout=readout, projector=projector, router=dict(data["router"]),
                    prompt=dict(data.get("prompt") or {}), version=str(data.get("version", "0.1.0")),
                    description=str(data.get("description", "")), training=dict(data.get("training") or {}),
                    files=dict(data.get("files") or {}), history=list(history))
        except (KeyError, TypeError) as exc:
            raise ModuleFormatError(f"{MANIFEST} is missing or has a malformed field: {exc}. Re-export the module.") from None
        for key in ("id", "hidden_size", "fingerprint"):
            if key not in m.base:
                raise ModuleFormatError(f"{MANIFEST}: base.{key} is missing.")
        if int(m.expert.get("hidden_size", -1)) != m.projector.expert_hidden:
            raise ModuleFormatError(f"{MANIFEST}: expert.hidden_size {m.expert.get('hidden_size')} differs from "
                                    f"projector.expert_hidden {m.projector.expert_hidden}.")
        if int(m.base["hidden_size"]) != m.projector.base_hidden:
            raise ModuleFormatError(f"{MANIFEST}: base.hidden_size {m.base['hidden_size']} differs from "
                                    f"projector.base_hidden {m.projector.base_hidden}.")
        return m


def read_manifest(folder: Path) -> Manifest:
    path = Path(folder) / MANIFEST
    if not path.is_file() or path.is_symlink():
        raise ModuleFormatError(f"{folder} has no {MANIFEST}; it is not a gag domain module.")
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise ModuleFormatError(f"{path} is larger than {MAX_MANIFEST_BYTES} bytes; it is not a gag manifest.")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ModuleFormatError(f"{path} is not valid JSON ({exc}); the module is corrupt.") from None
    return Manifest.from_dict(data)


def expected_projector_shapes(config: ProjectorConfig) -> dict[str, list[int]]:
    """Tensor shapes the manifest's projector config implies. For a plugin's projector kind only the parts
    gag owns (layer mixer, gain) are known here; the rest is checked when the plugin's class loads them."""
    if config.kind in BUILTIN_PROJECTORS:
        with torch.device("meta"):
            bundle = ProjectorBundle(config)
        return {k: list(v.shape) for k, v in bundle.state_dict().items()}
    return {"mixer.logits": [config.slots, config.layers], "gain": []}


def check_projector_values(state: dict[str, torch.Tensor], name: str) -> None:
    """NaN/inf weights or a non-positive standardiser std would inject garbage silently: refuse them."""
    bad = sorted(k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all()))
    if "input_std" in state and not bool((state["input_std"] > 0).all()):
        bad.append("input_std (not > 0)")
    if bad:
        raise ModuleFormatError(f"{PROJECTOR} of module {name!r} holds non-finite or invalid values in {bad}; the "
                                "file is corrupt. Re-download or retrain the module.")


def verify_module(folder: Path, limits: SizeLimits | None = None) -> Manifest:
    """Full verification: files, types, hashes, safetensors headers and shapes (from headers only), then the
    projector's values (NaN/inf, standardiser std > 0), read only once its header has proven it small and
    well-formed."""
    folder = Path(folder)
    files = scan_folder(folder, limits)
    manifest = read_manifest(folder)
    listed = set(manifest.files)
    present = set(files) - {MANIFEST}
    missing = sorted(set(REQUIRED_FILES) - listed) + sorted(listed - present)
    if missing:
        raise ModuleFormatError(f"Module {manifest.name!r} is missing {sorted(set(missing))}; re-export or re-download it.")
    extra = sorted(present - listed)
    if extra:
        raise ModuleFormatError(f"Module {manifest.name!r} contains files not listed in its manifest: {extra}.")
    for rel, digest in sorted(manifest.files.items()):
        actual = sha256_file(files[rel])
        if actual != digest:
            raise ModuleFormatError(f"{rel} in module {manifest.name!r} has sha256 {actual[:12]}… but the manifest says "
                                    f"{str(digest)[:12]}…; the file is corrupt or was tampered with. Re-download it.")
    for rel in files:
        if rel.endswith(".safetensors"):
            read_safetensors_header(files[rel])
    found = {k: v["shape"] for k, v in read_safetensors_header(files[PROJECTOR]).items()}
    expected = expected_projector_shapes(manifest.projector)
    if manifest.projector.kind not in BUILTIN_PROJECTORS:  # a plugin's own tensors: checked at load time
        found = {k: v for k, v in found.items() if not k.startswith("projector.")}
    if found != expected:
        raise ModuleFormatError(
            f"{PROJECTOR} of module {manifest.name!r} does not match its projector config "
            f"(expected {len(expected)} tensors {_shape_summary(expected)}, found {_shape_summary(found)}).")
    from safetensors.torch import load_file

    check_projector_values(load_file(str(files[PROJECTOR])), manifest.name)
    protos = read_safetensors_header(files[PROTOTYPES]).get("prototypes")
    if protos is None or len(protos["shape"]) != 2 or protos["shape"][1] != int(manifest.router.get("dim", -1)):
        raise ModuleFormatError(f"{PROTOTYPES} must hold 'prototypes' of shape [n, {manifest.router.get('dim')}]; "
                                f"found {protos}.")
    check_adapter_config(_read_json(files[ADAPTER_CONFIG]), ADAPTER_CONFIG)
    _check_router_files(files)
    if manifest.readout.context_passages and PASSAGES not in files:
        raise ModuleFormatError(f"Module {manifest.name!r}: its expert reads passages (readout.context_passages = "
                                f"{manifest.readout.context_passages}) but it ships no {PASSAGES}; re-export it.")
    for name, info in read_safetensors_header(files[ADAPTER_WEIGHTS]).items():
        if "lora_" not in name:
            raise ModuleFormatError(f"{ADAPTER_WEIGHTS} holds {name!r}, which is not a LoRA tensor.")
        if info["shape"] and max(info["shape"]) > 4 * max(manifest.expert.get("hidden_size", 0), 1) * 8:
            raise ModuleFormatError(f"{ADAPTER_WEIGHTS}: tensor {name!r} of shape {info['shape']} is implausibly large "
                                    f"for an expert of hidden size {manifest.expert.get('hidden_size')}.")
    return manifest


def _check_router_files(files: dict[str, Path]) -> None:
    """The optional routing files must parse (their hashes were checked with every other file's)."""
    from .calibration import read_route_calibration
    from .lexical import LexicalIndex

    if LEXICAL in files:
        LexicalIndex.load(files[LEXICAL])
    if CALIBRATION in files:
        read_route_calibration(files[CALIBRATION].read_text(encoding="utf-8"), CALIBRATION)


def _shape_summary(shapes: dict) -> str:
    return ", ".join(f"{k}{v}" for k, v in sorted(shapes.items())[:4]) + (" …" if len(shapes) > 4 else "")


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ModuleFormatError(f"{path.name} is not valid JSON ({exc}).") from None
    if not isinstance(data, dict):
        raise ModuleFormatError(f"{path.name} must hold a JSON object.")
    return data


# --- writing -------------------------------------------------------------------------------------

def copy_module(src: Path, dst: Path, limits: SizeLimits | None = None) -> Manifest:
    """Copy every file of a module folder into ``dst`` (new or empty) and verify the copy, which is what
    gets used; returns its manifest. Callers that must refuse early verify ``src`` first."""
    dst = Path(dst)
    for rel, path in scan_folder(Path(src), limits).items():
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dst / rel)
    return verify_module(dst, limits)


def write_module(folder: Path, manifest: Manifest, *, projector: ProjectorBundle, adapter_dir: Path,
                 prototypes: torch.Tensor, exemplars: list[str], card: str,
                 router_files: dict[str, str] | None = None, data_files: dict[str, str] | None = None) -> Path:
    """Write a complete module atomically (staging folder, then rename). Returns the folder.
    ``router_files``: the optional {LEXICAL or CALIBRATION: JSON text}; ``data_files``: {TRAIN_QA, CORPUS_SAMPLE,
    PASSAGES: JSONL}."""
    from safetensors.torch import save_file

    folder = Path(folder)
    check_name(manifest.name)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.writing-", dir=folder.parent))
    try:
        (staging / "expert").mkdir()
        (staging / "router").mkdir()
        for src, dst in ((Path(adapter_dir) / "adapter_config.json", ADAPTER_CONFIG),
                         (Path(adapter_dir) / "adapter_model.safetensors", ADAPTER_WEIGHTS)):
            if not src.is_file():
                raise ModuleFormatError(f"The expert adapter folder {adapter_dir} has no {src.name}; save the LoRA with "
                                        "peft's save_pretrained(safe_serialization=True).")
            shutil.copyfile(src, staging / dst)
        state = {k: v.detach().float().cpu().contiguous() for k, v in projector.state_dict().items()}
        save_file(state, str(staging / PROJECTOR), metadata={"format": "pt"})
        save_file({"prototypes": prototypes.detach().float().cpu().contiguous()}, str(staging / PROTOTYPES),
                  metadata={"format": "pt"})
        with open(staging / EXEMPLARS, "w", encoding="utf-8") as f:
            for q in exemplars:
                f.write(json.dumps({"question": q}, ensure_ascii=False) + "\n")
        (staging / CARD).write_text(card, encoding="utf-8")
        for rel, text in {**(router_files or {}), **(data_files or {})}.items():
            if rel not in OPTIONAL_FILES:
                raise ModuleFormatError(f"{rel} is not an optional module file; use one of {OPTIONAL_FILES}.")
            (staging / rel).parent.mkdir(exist_ok=True)
            (staging / rel).write_text(text, encoding="utf-8")
        manifest.router = {**manifest.router, "num_prototypes": int(prototypes.shape[0]), "dim": int(prototypes.shape[1])}
        manifest.save(staging)
        verify_module(staging)
        if folder.exists():
            old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
            os.replace(folder, old)
            os.replace(staging, folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, folder)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return folder


# --- loading -------------------------------------------------------------------------------------

@dataclass
class DomainModule:
    """A verified module folder; tensors are read on demand."""

    path: Path
    manifest: Manifest

    @classmethod
    def open(cls, folder: Path, verify: bool = True) -> "DomainModule":
        folder = Path(folder)
        manifest = verify_module(folder) if verify else read_manifest(folder)
        return cls(folder, manifest)

    @property
    def name(self) -> str:
        return self.manifest.name

    def check_base(self, base_model) -> None:
        """Refuse a base model other than the one the projector was aligned to."""
        from .models import embedding_fingerprint, hidden_size

        found_h = hidden_size(base_model)
        want = self.manifest.base
        if found_h != int(want["hidden_size"]):
            raise IncompatibleModuleError(
                f"Domain {self.name!r} projects into a base of hidden size {want['hidden_size']} ({want['id']}), but the "
                f"loaded base has hidden size {found_h}. Load base {want['id']!r} or retrain the domain for this base.")
        if not fingerprints_match(want["fingerprint"], embedding_fingerprint(base_model)):
            raise IncompatibleModuleError(
                f"Domain {self.name!r} was aligned to base {want['id']!r}, whose input embeddings differ from the loaded "
                "base model's. Load that base model or retrain the domain with `gag train-domain`.")

    def check_expert(self, expert_model) -> None:
        from .models import hidden_size

        found = hidden_size(expert_model)
        if found != int(self.manifest.expert["hidden_size"]):
            raise IncompatibleModuleError(
                f"Domain {self.name!r} expects expert {self.manifest.expert['id']!r} of hidden size "
                f"{self.manifest.expert['hidden_size']}, but the loaded expert has {found}. Load that expert "
                f"(--expert {self.manifest.expert['id']}) or retrain the domain for this expert.")

    def load_projector(self, projector_cls=None) -> ProjectorBundle:
        from safetensors.torch import load_file

        bundle = ProjectorBundle(self.manifest.projector, projector_cls)
        try:  # values were checked by verify_module when the module was opened
            bundle.load_state_dict(load_file(str(self.path / PROJECTOR)))
        except RuntimeError as exc:
            raise ModuleFormatError(f"{PROJECTOR} of domain {self.name!r} does not fit its projector "
                                    f"{self.manifest.projector.kind!r}: {str(exc)[:300]}. Re-export the module.") from None
        bundle.eval().requires_grad_(False)
        return bundle

    def load_prototypes(self) -> torch.Tensor:
        from safetensors.torch import load_file

        return load_file(str(self.path / PROTOTYPES))["prototypes"]

    def exemplars(self) -> list[str]:
        return [row["question"] for _, row in iter_objects(self.path / EXEMPLARS)]

    def load_lexical(self):
        """The module's :class:`~gag_core.lexical.LexicalIndex`, or None (built before hybrid routing)."""
        from .lexical import LexicalIndex

        return LexicalIndex.load(self.path / LEXICAL) if LEXICAL in self.manifest.files else None

    def calibration_questions(self) -> list[str]:
        """Held-out questions for the router's calibration ([] when the module ships none)."""
        from .calibration import read_route_calibration

        if CALIBRATION not in self.manifest.files:
            return []
        return read_route_calibration((self.path / CALIBRATION).read_text(encoding="utf-8"), CALIBRATION)[0]

    @property
    def adapter_dir(self) -> Path:
        return self.path / "expert"

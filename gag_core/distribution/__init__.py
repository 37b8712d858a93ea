"""How a domain module travels (DESIGN.md §4), one module per job:

- ``sources``: ``parse_source`` tells a folder, a ``.whl``/``.tar.gz`` file, a PyPI requirement and
  ``hf:ORG/NAME[@REVISION]`` apart.
- ``pip_packages``: pip of the running interpreter; stage a package with ``--target`` and verify what it ships.
- ``hub_pull``: ``snapshot_download`` limited to safetensors/JSON/JSONL/Markdown, copied into a plain folder.
- ``pip_project``: ``package_module`` writes a pip-installable project exposing the module through ``gag``.
- ``hub_push``: ``push_module`` uploads a verified copy with a Hub-ready model card.

Installing what these resolve is ``gag_core.install``'s job. Nothing here imports gag_plugins.
"""

from .hub_pull import HUB_PATTERNS, HubModule, download_hub, hub_settings, materialize_snapshot, pull_hub
from .hub_push import hub_base_model, hub_card, prepare_upload, push_module
from .pip_packages import (StagedPackage, fetch_artifact, installed_version, pip_install_staged, pip_uninstall,
                           run_pip, stage_package)
from .pip_project import package_module, package_names
from .sources import HUB_PREFIX, Source, parse_source

__all__ = ["HUB_PATTERNS", "HUB_PREFIX", "HubModule", "Source", "StagedPackage", "download_hub", "fetch_artifact",
           "hub_base_model", "hub_card", "hub_settings", "installed_version", "materialize_snapshot", "package_module",
           "package_names", "parse_source", "pip_install_staged", "pip_uninstall", "prepare_upload", "pull_hub",
           "push_module", "run_pip", "stage_package"]

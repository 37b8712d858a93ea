"""The plugin manager: built-ins first, then the ``gag`` entry-point group.

``GAG_LOAD_PLUGINS`` limits which entry-point plugins load: a comma-separated list of distribution or
entry-point names; an empty value loads none (the rescue when a broken plugin stops gag from starting).
"""

from __future__ import annotations

import importlib.metadata
import logging
import os

import pluggy

from gag_core.errors import PluginError

from . import hookspecs

log = logging.getLogger(__name__)
GROUP = "gag"

pm = pluggy.PluginManager(GROUP)
pm.add_hookspecs(hookspecs)
_loaded = False
load_errors: list[str] = []


def load_plugins() -> pluggy.PluginManager:
    global _loaded
    if _loaded:
        return pm
    _loaded = True
    from . import builtins

    pm.register(builtins, name="gag.builtins")
    allowed = os.environ.get("GAG_LOAD_PLUGINS")
    wanted = None if allowed is None else {x.strip() for x in allowed.split(",") if x.strip()}
    for ep in importlib.metadata.entry_points(group=GROUP):
        dist = ep.dist.name if ep.dist else ep.name
        if wanted is not None and ep.name not in wanted and dist not in wanted:
            continue
        if pm.has_plugin(ep.name):
            continue
        try:
            pm.register(ep.load(), name=ep.name)  # register validates the hookimpls: part of loading
        except Exception as exc:  # a broken third-party plugin must not hide the others
            msg = f"Plugin {ep.name!r} ({dist}) failed to load: {exc}. Set GAG_LOAD_PLUGINS='' to start without plugins."
            load_errors.append(msg)
            log.warning(msg)
    return pm


def reset_for_tests() -> None:
    """Forget loaded plugins (tests only)."""
    global _loaded
    for name, plugin in list(pm.list_name_plugin()):
        pm.unregister(plugin)
    _loaded = False
    load_errors.clear()


def collect(hook_name: str) -> dict:
    """Call a ``register_*`` hook and return {name: value}; duplicate names are refused."""
    load_plugins()
    found: dict = {}

    def register(name, value):
        if name in found:
            raise PluginError(f"Two plugins registered {hook_name[9:].rstrip('s')} {name!r}; uninstall one of them.")
        found[name] = value

    getattr(pm.hook, hook_name)(register=register)
    return found

"""The plugin manager: built-ins first, then the ``gag`` entry-point group.

``GAG_LOAD_PLUGINS`` limits which entry-point plugins load: a comma-separated list of distribution or
entry-point names; an empty value loads none (the rescue when a broken plugin stops gag from starting).
Like pluggy's ``load_setuptools_entrypoints``, loading records which pip distribution ships each plugin.
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
BUILTINS = "gag.builtins"

pm = pluggy.PluginManager(GROUP)
pm.add_hookspecs(hookspecs)
load_errors: list[str] = []
distributions: dict[str, str] = {}  # plugin (entry-point) name -> the pip distribution that ships it


def allowed(entry_point: str, distribution: str) -> bool:
    """Whether ``GAG_LOAD_PLUGINS`` lets this plugin load (unset: every plugin)."""
    value = os.environ.get("GAG_LOAD_PLUGINS")
    if value is None:
        return True
    wanted = {x.strip() for x in value.split(",") if x.strip()}
    return entry_point in wanted or distribution in wanted


def register_entry_point(ep: importlib.metadata.EntryPoint, distribution: str = ""):
    """Load an entry point and register it once under its name, recording its distribution; returns the plugin."""
    plugin = ep.load()
    if not pm.has_plugin(ep.name):
        pm.register(plugin, name=ep.name)  # register validates the hookimpls: part of loading
        if distribution:
            distributions[ep.name] = distribution
    return plugin


def load_plugins() -> pluggy.PluginManager:
    if pm.has_plugin(BUILTINS):
        return pm
    from . import builtins

    pm.register(builtins, name=BUILTINS)
    for ep in importlib.metadata.entry_points(group=GROUP):
        dist = ep.dist.name if ep.dist else ""
        if not allowed(ep.name, dist or ep.name) or pm.has_plugin(ep.name):
            continue
        try:
            register_entry_point(ep, dist)
        except Exception as exc:  # a broken third-party plugin must not hide the others
            msg = (f"Plugin {ep.name!r} ({dist or ep.name}) failed to load: {exc}. "
                   "Set GAG_LOAD_PLUGINS='' to start without plugins.")
            load_errors.append(msg)
            log.warning(msg)
    return pm


def forget_distribution(distribution: str) -> list[str]:
    """Unregister the plugins ``distribution`` ships (after pip removed it); returns their names."""
    names = [name for name, dist in distributions.items() if dist == distribution]
    for name in names:
        if pm.has_plugin(name):
            pm.unregister(name=name)
        del distributions[name]
    return names


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

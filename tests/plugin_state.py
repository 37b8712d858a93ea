"""Test helper: forget every loaded plugin, so the next ``load_plugins()`` starts from scratch."""

from gag_plugins import manager


def forget_plugins() -> None:
    for _, plugin in list(manager.pm.list_name_plugin()):
        manager.pm.unregister(plugin)
    manager.load_errors.clear()
    manager.distributions.clear()

"""gag's plugin layer: hookspecs, the plugin manager, built-in registrations, domain discovery."""

from .hookspecs import hookimpl

__all__ = ["hookimpl"]

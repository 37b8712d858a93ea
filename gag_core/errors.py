"""Errors raised by gag. Every message names the thing, what was expected, what was found, and the fix.

The classes also subclass the built-in exception a caller would already catch
(``ValueError``, ``FileNotFoundError``, ...), so existing ``except`` clauses keep working.
"""


class GagError(Exception):
    """Base class of every error gag raises on purpose."""


class ConfigError(GagError, ValueError):
    """A configuration value is invalid."""


class ModelLoadError(GagError, RuntimeError):
    """A base or expert model could not be loaded."""


class InjectionError(GagError, ValueError):
    """Injected vectors do not fit the prompt (count, size, dtype)."""


class ModuleFormatError(GagError, ValueError):
    """A domain module folder is malformed, unsafe, or corrupt."""


class IncompatibleModuleError(GagError, ValueError):
    """A domain module was aligned to a different base or expert model than the one loaded."""


class DomainNotFoundError(GagError, KeyError):
    """No installed domain has the requested name."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""


class DataError(GagError, ValueError):
    """Training or evaluation data is malformed or too small."""


class TrainingError(GagError, RuntimeError):
    """Training stopped (non-finite loss, incompatible checkpoint, ...)."""


class PluginError(GagError, RuntimeError):
    """A plugin failed to load or registered something invalid."""


class InputError(GagError, ValueError):
    """A user query is unusable (empty, too long, ...)."""


class DistributionError(GagError, RuntimeError):
    """Installing, packaging, pulling or pushing a domain failed (pip, the Hub, a package without a module)."""

"""gag's own readouts, projectors and encoders, registered through the same hooks as third-party plugins."""

from gag_core.projectors import BUILTIN_PROJECTORS
from gag_core.readouts import BUILTIN_READOUTS

from .hookspecs import hookimpl


@hookimpl
def register_readouts(register):
    for kind, cls in BUILTIN_READOUTS.items():
        register(kind, cls)


@hookimpl
def register_projectors(register):
    for kind, cls in BUILTIN_PROJECTORS.items():
        register(kind, cls)

"""The plugin surface of gag. Hooks hand the plugin a ``register`` callback; gag owns the registries."""

import pluggy

hookspec = pluggy.HookspecMarker("gag")
hookimpl = pluggy.HookimplMarker("gag")


@hookspec
def register_readouts(register):
    """Register expert readout classes: ``register(kind, cls)``; ``cls(config)`` implements ExpertReadout."""


@hookspec
def register_projectors(register):
    """Register projector classes: ``register(kind, cls)``; ``cls(ProjectorConfig)`` is an ``nn.Module``."""


@hookspec
def register_encoders(register):
    """Register router encoders: ``register(name, factory)``; ``factory(**context)`` returns an encoder."""


@hookspec
def register_augmenters(register):
    """Register Stage I augmenters: ``register(name, cls)``; ``cls(**options)`` has ``augment(documents, context)``
    yielding training texts (str) and/or ``AugmentedQA`` pairs (``gag_core.training.augment``)."""


@hookspec
def register_domains(register):
    """Register domain module folders shipped by a package: ``register(name, path)``."""


@hookspec
def register_datasets(register):
    """Register training/evaluation data sets: ``register(name, folder)`` (used by ``gag demo``)."""


@hookspec
def register_commands(cli):
    """Add commands to the typer app ``cli``."""

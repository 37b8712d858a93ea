"""gag's own readouts, projectors, augmenters and encoders, registered through the same hooks as third-party plugins."""

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


@hookimpl
def register_augmenters(register):
    from gag_core.training.augment_stage import BUILTIN_AUGMENTERS

    for name, cls in BUILTIN_AUGMENTERS.items():
        register(name, cls)


@hookimpl
def register_encoders(register):
    from gag_core.router import ExpertMeanEncoder, SentenceEncoder

    def expert_mean(expert_backbone=None, **_):
        """``expert_backbone()`` -> (model, tokenizer, expert id); the expert is loaded only when asked for."""
        if expert_backbone is None:
            from gag_core.errors import ConfigError

            raise ConfigError("The expert-mean router encoder needs the expert backbone; none was given.")
        model, tokenizer, expert_id = expert_backbone()  # later calls follow the backbone if a domain wraps it
        return ExpertMeanEncoder(model, tokenizer, expert_id, current_model=lambda: expert_backbone()[0])

    register("minilm", lambda **_: SentenceEncoder())
    register("expert-mean", expert_mean)

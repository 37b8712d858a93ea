"""gag_core: interfaces and implementations of Generation-Augmented Generation (no discovery, no CLI)."""

__version__ = "0.1.0"

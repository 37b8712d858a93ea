"""gag demo domain ``registry``: a fictional company register whose knowledge lives in documents.

Registered through the ``gag`` entry-point group exactly like a third-party domain package.
"""

from pathlib import Path

from gag_plugins import hookimpl

HERE = Path(__file__).parent


@hookimpl
def register_datasets(register):
    register("registry", HERE / "data")


@hookimpl
def register_domains(register):
    module = HERE / "module"
    if (module / "gag-domain.json").is_file():
        register("registry", module)

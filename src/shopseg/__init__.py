"""shopseg: from a raw shop export to named customer segments, recommendations, a report and a CRM file.

The Python API mirrors the CLI::

    import shopseg
    result = shopseg.run(["orders.csv"], "out/my-shop")          # shopseg run orders.csv --out out/my-shop
    result.segments, result.profiles, result.report
    shopseg.score("out/my-shop/model", ["new_orders.csv"], "out/scored")   # shopseg score …
    shopseg.migrate("out/my-shop", ["2023.csv"], ["2024.csv"], "out/moves") # shopseg migrate …
    shopseg.run([shopseg.sample_path()], "out/demo")              # shopseg demo
"""

from __future__ import annotations

from shopseg.config import RunConfig, load_config
from shopseg.errors import (
    BackendError,
    ConfigError,
    DataError,
    InputError,
    IntegrityError,
    NotFittedError,
    NotFoundError,
    SchemaError,
    ShopsegError,
)
from shopseg.pipeline import STEPS, RunResult, run, score

__all__ = [
    "STEPS",
    "BackendError",
    "ConfigError",
    "DataError",
    "InputError",
    "IntegrityError",
    "NotFittedError",
    "NotFoundError",
    "RunConfig",
    "RunResult",
    "SchemaError",
    "ShopsegError",
    "generate_shop",
    "load_config",
    "migrate",
    "run",
    "sample_path",
    "score",
]


def __getattr__(name: str) -> object:
    # the generator pulls in numpy/pyarrow paths only when asked for; migrate pulls in scikit-learn
    if name in ("generate_shop", "sample_path"):
        from shopseg import datasets

        return getattr(datasets, name)
    if name == "migrate":
        from shopseg.profile.migrate import migrate

        return migrate
    raise AttributeError(f"module 'shopseg' has no attribute {name!r}")

"""Where the pure analysis of one image runs (SPEC §11): worker processes here, or a Dask cluster.

The image actors stay the unit of concurrency and failure; they hand each `WorkerJob` (a path,
never the image's bytes) to an `Executor` and get back a future of the worker's outcome dict.
"""

from __future__ import annotations

import importlib.util

from medianalysed.executors.base import Executor, settle

__all__ = ["Executor", "available_executors", "settle"]


def available_executors() -> list[str]:
    """The executor kinds this installation can run (`dask` needs the `[dask]` extra)."""
    kinds = ["local"]
    if importlib.util.find_spec("distributed") is not None:
        kinds.append("dask")
    return kinds

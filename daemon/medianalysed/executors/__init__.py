"""Where the pure analysis of one image runs (SPEC §11): worker processes here, or a Dask cluster.

The image actors stay the unit of concurrency and failure; they hand each `WorkerJob` (a path,
never the image's bytes) to an `Executor` and get back a future of the worker's outcome dict.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

# base and local import pebble (a quarter of the CLI's start-up): `--version` lists the kinds
# through this package and must not pay for it. Import Executor and settle from .base.
if TYPE_CHECKING:
    from medianalysed.config import Config
    from medianalysed.executors.base import Executor, ExecutorState

__all__ = ["available_executors", "build_executor"]


def build_executor(
    config: Config,
    *,
    shared_paths: Sequence[tuple[str, Path]] = (),
    on_state: Callable[[ExecutorState], None] = lambda _state: None,
) -> Executor:
    """The executor `[executor] kind` names; `shared_paths` must be seen by Dask workers too."""
    from medianalysed.executors.local import LocalExecutor  # noqa: PLC0415 - see the imports

    processing = config.processing
    if config.executor.kind == "dask":
        # Imported only here: distributed is an optional extra, and heavy to import.
        from medianalysed.executors.daskcluster import DaskExecutor  # noqa: PLC0415

        return DaskExecutor(
            address=config.executor.address,
            workers=processing.effective_workers,
            timeout_s=processing.image_timeout_seconds,
            max_worker_memory=processing.max_worker_memory,
            max_retries=processing.max_retries,
            extra_paths=shared_paths,
            on_state=on_state,
        )
    return LocalExecutor(
        workers=processing.effective_workers,
        timeout_s=processing.image_timeout_seconds,
        max_worker_memory=processing.max_worker_memory,
    )


def available_executors() -> list[str]:
    """The executor kinds this installation can run (`dask` needs the `[dask]` extra)."""
    kinds = ["local"]
    if importlib.util.find_spec("distributed") is not None:
        kinds.append("dask")
    return kinds

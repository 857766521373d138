"""What runs inside the analysis worker processes.

The image actors hand each image to a pebble process pool: the CPU work escapes the
GIL, and a decode that hangs or crashes is killed after `image_timeout_seconds` and its
process replaced, without harming the daemon. Everything here returns plain data
(exceptions with custom constructors do not survive pickling).

A file is opened once, relative to its batch folder and without following links out of it
(`safeopen`); the analysis reads that descriptor only. Whatever was learnt about the file
before a failure (size, mtime, sha256) comes back with the error, so the record keeps it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import logging
import multiprocessing
import os
import resource
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from medianalysed import names, safeopen
from medianalysed.config import format_size
from medianalysed.errors import AnalysisError, ErrorCode, StateCorruptError
from medianalysed.models import AnalysisSettings
from medianalysed.outcomes import ImageError, error_json

logger = logging.getLogger(__name__)

CONTENT_CACHE_SIZE_LIMIT = 4 * 2**30

_WORKER_OOM_SCORE_ADJ = 500  # of -1000..1000: workers are killed before the daemon (0)

_content_cache: Any = None
_content_cache_dir: str | None = None
_memory_limit: int | None = None  # what apply_memory_limit set in this process


@dataclass(frozen=True, slots=True)
class WorkerJob:
    """One image to analyse in a worker process: `relpath` (a key) below the folder `root`."""

    root: str
    relpath: str
    settings: AnalysisSettings
    content_dir: str | None
    source_url: str | None = None
    bypass_cache: bool = False
    follow_links: bool = True  # links inside `root` (a batch folder); False for a loose file
    attempt: int = 1  # which attempt at this image (an executor may spend some: dask)


def _cache(directory: str | None) -> Any:
    global _content_cache, _content_cache_dir  # noqa: PLW0603 - one cache per worker process
    if directory is None:
        return None
    if _content_cache is None or _content_cache_dir != directory:
        import diskcache  # noqa: PLC0415 - only workers need it

        _content_cache = diskcache.Cache(
            directory,
            size_limit=CONTENT_CACHE_SIZE_LIMIT,
            sqlite_cache_size=1024,
            sqlite_mmap_size=0,
        )
        _content_cache_dir = directory
    return _content_cache


def run_job(job: WorkerJob) -> dict[str, Any]:
    """Analyse one file: {"result", "cached", "elapsed_ms"} or {"error", "file", "elapsed_ms"},
    and "vips" when libvips "decoded" it or failed on it ("fallback", Pillow decoded it).

    `file` (on errors) is what could be learnt about the file before the failure, or None.
    """
    from medianalysed import vipsdecode  # noqa: PLC0415 - the imaging stack: workers only

    started = time.perf_counter()
    before = dataclasses.replace(vipsdecode.counts)
    outcome = _outcome(job)
    outcome["elapsed_ms"] = (time.perf_counter() - started) * 1000
    if vipsdecode.counts.decoded > before.decoded:
        outcome["vips"] = "decoded"
    elif vipsdecode.counts.fallbacks > before.fallbacks:
        outcome["vips"] = "fallback"
    return outcome


def _outcome(job: WorkerJob) -> dict[str, Any]:
    learnt: dict[str, Any] = {}
    try:
        return _run(job, learnt)
    except AnalysisError as exc:
        error = ImageError.raised(exc).to_json()
    except MemoryError:
        error = error_json(ErrorCode.DECOMPRESSION_BOMB, _out_of_memory_message())
    except Exception as exc:
        logger.exception("analysis of %s failed unexpectedly", names.log_text(job.relpath))
        error = error_json(ErrorCode.INTERNAL, f"{type(exc).__name__}: {exc}")
    return {"error": error, "file": learnt.get("file")}


def _run(job: WorkerJob, learnt: dict[str, Any]) -> dict[str, Any]:
    """Analyse the file; `learnt["file"]` holds the file section as soon as anything is known."""
    with _open_safely(job) as handle:
        status = os.fstat(handle.fileno())
        # Known before the content is read: kept if reading or the size limit stops us.
        learnt["file"] = _file_section(status.st_size, None, status.st_mtime, job.source_url)
        return _analyse(job, handle, learnt)


def _analyse(job: WorkerJob, handle: BinaryIO, learnt: dict[str, Any]) -> dict[str, Any]:
    # Imported here: only worker processes need the imaging stack (preloaded by the fork
    # server, so this costs nothing per job); the daemon process stays small.
    from medianalysed.analysis import (  # noqa: PLC0415
        OpenedFile,
        analyse_image,
        read_file_facts,
    )

    source = OpenedFile(handle, PurePosixPath(job.relpath).name)
    facts = read_file_facts(source, job.settings)
    file_section = {
        "size": facts.size,
        "sha256": facts.sha256,
        "mtime": facts.mtime,
        "source_url": job.source_url,
    }
    learnt["file"] = file_section
    cache = _cache(job.content_dir)
    key = f"{facts.sha256}:{job.settings.fingerprint()}"
    if cache is not None and not job.bypass_cache:
        cached = _cached_sections(cache, key)
        if cached is not None:
            return {"result": {"file": file_section, **cached}, "cached": True}
    sections = analyse_image(source, facts, job.settings)
    if cache is not None:
        _store_sections(cache, key, sections)
    return {"result": {"file": file_section, **sections}, "cached": False}


def _file_section(
    size: int, sha256: str | None, mtime: float, source_url: str | None
) -> dict[str, Any]:
    moment = datetime.fromtimestamp(mtime, tz=UTC).isoformat(timespec="seconds")
    return {
        "size": size,
        "sha256": sha256,
        "mtime": moment.replace("+00:00", "Z"),
        "source_url": source_url,
    }


@contextlib.contextmanager
def _open_safely(job: WorkerJob) -> Iterator[BinaryIO]:
    """The job's file, opened below its root without following links out of it.

    Raises:
        AnalysisError: REFUSED (a link out of the batch, swapped in, or not a regular file) or
            IO_ERROR (missing, unreadable, a folder...).
    """
    try:
        with safeopen.open_root(job.root) as root:
            fd = safeopen.open_beneath(root, job.relpath, follow_links=job.follow_links)
    except safeopen.RefusedError as exc:
        raise AnalysisError(ErrorCode.REFUSED, exc.reason) from exc
    except OSError as exc:
        raise AnalysisError(ErrorCode.IO_ERROR, _open_error_message(exc)) from exc
    with os.fdopen(fd, "rb") as handle:
        yield handle


def _open_error_message(exc: OSError) -> str:
    reason = exc.strerror or type(exc).__name__
    if exc.errno in {errno.ENOENT, errno.ENOTDIR}:
        return f"cannot open file: {reason} (it was moved or deleted after the batch started)"
    if exc.errno == errno.EISDIR:
        # A folder's record comes from enumeration (it could not be listed): only listing
        # the batch again, not retrying its record, can reach what is inside.
        return "is a folder, not a file: reprocess the batch to list it again"
    return f"cannot open file: {reason}"


def _cached_sections(cache: Any, key: str) -> dict[str, Any] | None:
    try:
        text = cache.get(key)
    except Exception as exc:
        _mark_if_damaged(cache, exc)
        return None
    if text is None:
        return None
    try:
        return dict(json.loads(text))
    except ValueError:
        return None


def _store_sections(cache: Any, key: str, sections: dict[str, Any]) -> None:
    try:
        cache.set(key, json.dumps(sections, separators=(",", ":"), ensure_ascii=False))
    except (OSError, sqlite3.Error) as exc:
        # A full or read-only state disk: the result is still returned; the batch pauses on
        # its own state write, so one line is enough here.
        logger.warning("content cache write failed: %s", exc)
        _mark_if_damaged(cache, exc)
    except Exception:
        logger.warning("content cache write failed", exc_info=True)


def _mark_if_damaged(cache: Any, exc: BaseException) -> None:
    """A damaged content cache is marked, so the next start moves it aside and recreates it."""
    from medianalysed.diskfaults import note_corruption, sqlite_fault  # noqa: PLC0415

    if isinstance(exc, sqlite3.Error) and isinstance(
        sqlite_fault(exc, "state", cache.directory), StateCorruptError
    ):
        note_corruption(Path(cache.directory), str(exc))


def pool_context() -> Any:
    """The multiprocessing context for the worker pool.

    `fork` from a process full of threads (actors, watchdog) can deadlock the child on a
    lock held at fork time; a fork server forks from a clean single-threaded process,
    with the analysis modules already imported, so replacing a killed worker is cheap.
    """
    context = multiprocessing.get_context("forkserver")
    # One BLAS thread per worker: the pool already uses every core.
    for variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(variable, "1")
    context.set_forkserver_preload(list(forkserver_preload()))
    return context


def forkserver_preload() -> tuple[str, ...]:
    """What the fork server imports once, so that a forked worker imports next to nothing.

    A forked worker first runs the parent's main script again (multiprocessing's
    `__mp_main__`; `set_forkserver_preload(["__main__"])` never takes effect on Python 3.11)
    and imports pebble to unpickle its own entry point. For the console script that was all
    of `medianalysed.cli` and pebble (asyncio, ssl) in every worker before its first image,
    0.2 s of CPU each; imported in the server, the script's one import is already done.
    """
    return ("pebble", "medianalysed.cli", "medianalysed.worker", "medianalysed.analysis")


def worker_initializer(max_worker_memory: int = 0) -> None:
    """Run once in each worker process: below the daemon in CPU priority and for the OOM
    killer, and within `max_worker_memory` bytes (0 = no limit)."""
    with contextlib.suppress(OSError):
        os.nice(5)
    _offer_to_the_oom_killer()
    apply_memory_limit(max_worker_memory)


def apply_memory_limit(limit: int) -> None:
    """Cap this process's data (heap and private anonymous mappings) at `limit` bytes.

    RLIMIT_DATA, not RLIMIT_AS: the address space also counts ~800 MB of mapped libraries and
    the untouched 64 MB malloc arenas each decoder thread reserves, none of it memory in use.
    Past the limit allocations fail: Pillow and numpy raise MemoryError, which the job turns
    into a failed image while the daemon stays up. 0 leaves the limit as it is.
    """
    global _memory_limit  # noqa: PLW0603 - one limit per worker process
    if limit <= 0:
        return
    try:
        _, hard = resource.getrlimit(resource.RLIMIT_DATA)
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        resource.setrlimit(resource.RLIMIT_DATA, (limit, hard))
    except (OSError, ValueError) as exc:  # e.g. setrlimit filtered by a seccomp profile
        logger.warning("cannot limit worker memory to %d bytes: %s", limit, exc)
        return
    _memory_limit = limit


def _offer_to_the_oom_killer() -> None:
    """Make the kernel's OOM killer pick a worker before the daemon (raising needs no rights)."""
    path = Path("/proc/self/oom_score_adj")
    with contextlib.suppress(OSError, ValueError):
        if int(path.read_text()) < _WORKER_OOM_SCORE_ADJ:
            path.write_text(str(_WORKER_OOM_SCORE_ADJ))


def _out_of_memory_message() -> str:
    if _memory_limit is None:
        return "ran out of memory decoding it"
    return f"decoding needs more memory than max_worker_memory ({format_size(_memory_limit)})"

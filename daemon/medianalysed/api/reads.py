"""The read side of the API: every answer comes from the state store, never from an actor.

Pages are bounded in work as well as in size: a listing of images filtered by status reads
at most `SCAN_BUDGET` image records per request, so a filter that matches nothing in a
100,000-image batch answers in bounded time with a `next_cursor` to go on from.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from medianalysed import names, outbox
from medianalysed.api.replies import bad_request, not_found
from medianalysed.lifecycle import BatchPhase
from medianalysed.models import BatchStatus, ImageStatus
from medianalysed.progress import progress_of
from medianalysed.state import PATH_CHUNK_SIZE, BatchRecord, ImageRecord, StateStore

DEFAULT_LIMIT: Final = 100
MAX_LIMIT: Final = 1000
SCAN_BUDGET: Final = 20_000
_READ_AHEAD: Final = 250  # records read per query: a small page does not read a whole chunk
RESULTS_READY: Final = frozenset({BatchPhase.WRITTEN, BatchPhase.DISPOSING, BatchPhase.DONE})
_IMAGE_STATUSES: Final = frozenset(str(status) for status in ImageStatus)
_BATCH_STATUSES: Final = frozenset(str(status) for status in BatchStatus)


@dataclass(frozen=True, slots=True)
class PageQuery:
    """`?status=&limit=&cursor=` of a listing, checked."""

    status: str | None
    limit: int
    cursor: str | None

    @classmethod
    def parse(cls, query: dict[str, list[str]], statuses: frozenset[str]) -> PageQuery:
        """Read the query string.

        Raises:
            ApiError: 400 naming the parameter that is wrong.
        """
        status = _single(query, "status")
        if status is not None and status not in statuses:
            raise bad_request(f"status={status!r} is not one of {', '.join(sorted(statuses))}")
        limit_text = _single(query, "limit")
        limit = DEFAULT_LIMIT
        if limit_text is not None:
            if not limit_text.isdigit() or not 1 <= int(limit_text) <= MAX_LIMIT:
                raise bad_request(f"limit={limit_text!r} must be an integer from 1 to {MAX_LIMIT}")
            limit = int(limit_text)
        return cls(status=status, limit=limit, cursor=_single(query, "cursor"))


def _single(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    if not values:
        return None
    if len(values) > 1:
        raise bad_request(f"{name} is given {len(values)} times; give it once")
    return values[0]


def _encode_cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode("utf-8", "surrogatepass")).decode().rstrip("=")


def _decode_cursor(cursor: str) -> str:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        return base64.urlsafe_b64decode(padded.encode("ascii")).decode("utf-8", "surrogatepass")
    except (ValueError, binascii.Error, UnicodeError) as exc:
        raise bad_request("cursor is not one this API gave; start again without it") from exc


# --- batches --------------------------------------------------------------------------------


def batch_document(store: StateStore, record: BatchRecord) -> dict[str, Any]:
    """A batch as the API shows it: the status.json fields, live, and what it came with."""
    document = progress_of(store, record).document()
    document.update(
        inbox=record.inbox,
        priority=str(record.priority),
        tags=list(record.tags),
        created_at=record.created_at,
        completed_at=record.completed_at,
        results_ready=record.phase in RESULTS_READY,
        links={
            "self": batch_path(record.batch_id),
            "images": batch_path(record.batch_id) + "/images",
            "results": batch_path(record.batch_id) + "/results",
        },
    )
    return document


def batch_path(batch_id: str) -> str:
    """`/v1/batches/<id>`, the id percent-encoded."""
    from urllib.parse import quote  # noqa: PLC0415 - tiny, used here only

    return "/v1/batches/" + quote(batch_id, safe="")


def find_batch(store: StateStore, batch_id: str) -> BatchRecord:
    """The batch record.

    Raises:
        ApiError: 404 when no batch has that id.
    """
    record = store.get_batch(batch_id)
    if record is None:
        raise not_found(f"batch {names.log_text(batch_id)!r}")
    return record


def list_batches(store: StateStore, page: PageQuery) -> dict[str, Any]:
    """Batches newest first (by creation time, then id), `page.limit` of them after the cursor."""
    after = None if page.cursor is None else _decode_cursor(page.cursor)
    records = sorted(
        store.iter_batches(skip_damaged=True),
        key=lambda record: (record.created_at, record.batch_id),
        reverse=True,
    )
    items: list[dict[str, Any]] = []
    next_cursor = None
    last_key = ""
    for record in records:
        sort_key = f"{record.created_at}\x00{record.batch_id}"
        if after is not None and sort_key >= after:
            continue
        if page.status is not None and str(record.status) != page.status:
            continue
        if len(items) == page.limit:
            next_cursor = _encode_cursor(last_key)
            break
        items.append(batch_document(store, record))
        last_key = sort_key
    return {"batches": items, "next_cursor": next_cursor}


def batch_statuses() -> frozenset[str]:
    """The statuses `?status=` accepts for batches."""
    return _BATCH_STATUSES


def image_statuses() -> frozenset[str]:
    """The statuses `?status=` accepts for images."""
    return _IMAGE_STATUSES


# --- images ---------------------------------------------------------------------------------


def image_document(path: str, record: ImageRecord | None) -> dict[str, Any]:
    """One image's live status: path (and path_bytes), status, attempts, error code."""
    document: dict[str, Any] = names.path_fields(path)
    if record is None:
        document.update(status=str(ImageStatus.PENDING), attempts=0, error=None)
        return document
    document.update(status=str(record.status), attempts=record.attempts, error=record.error)
    if record.source_url is not None:
        document["source_url"] = record.source_url
    if record.duration_ms is not None:
        document["duration_ms"] = record.duration_ms
    return document


def list_images(store: StateStore, record: BatchRecord, page: PageQuery) -> dict[str, Any]:
    """Images in listing order from the cursor; at most `SCAN_BUDGET` records read."""
    start = 0
    if page.cursor is not None:
        text = _decode_cursor(page.cursor)
        if not text.isdigit():
            raise bad_request("cursor is not one this API gave; start again without it")
        start = int(text)
    items: list[dict[str, Any]] = []
    for position, paths in _chunks_from(store, record, start, min(SCAN_BUDGET, _READ_AHEAD)):
        for offset, stored in enumerate(store.image_texts(record.batch_id, paths)):
            if len(items) == page.limit or position + offset - start >= SCAN_BUDGET:
                return {"images": items, "next_cursor": _encode_cursor(str(position + offset))}
            matches, image = _matching(stored, page.status)
            if matches:
                items.append(image_document(paths[offset], image))
    return {"images": items, "next_cursor": None, "total": record.total}


def _matching(stored: str | None, status: str | None) -> tuple[bool, ImageRecord | None]:
    """Whether an image has `status` (any when None), and its record (None: none yet, pending).

    Stored records are compact JSON, so one without `"status":"<status>"` in its text cannot
    match: most of a filtered listing is skipped without parsing.
    """
    if stored is None:
        return status in {None, str(ImageStatus.PENDING)}, None
    if status is not None and f'"status":"{status}"' not in stored:
        return False, None
    image = ImageRecord.from_json(stored)
    return status is None or str(image.status) == status, image


def _chunks_from(
    store: StateStore, record: BatchRecord, start: int, size: int
) -> Iterator[tuple[int, list[str]]]:
    """(position of the first, paths) from `start` on, at most `size` paths at a time."""
    first_chunk, offset = divmod(start, PATH_CHUNK_SIZE)
    for chunk in range(first_chunk, record.chunks):
        paths = store.get_path_chunk(record.batch_id, chunk)
        begin = offset if chunk == first_chunk else 0
        for at in range(begin, len(paths), size):
            yield chunk * PATH_CHUNK_SIZE + at, paths[at : at + size]


# --- results --------------------------------------------------------------------------------


def results_file(record: BatchRecord) -> Path:
    """The batch's results.jsonl, once it is terminal.

    Raises:
        ApiError: 404 while the batch is not terminal, or when the outbox lost the file.
    """
    if record.phase not in RESULTS_READY:
        raise not_found(
            f"results of batch {names.log_text(record.batch_id)!r} (it is {record.status}; "
            "results.jsonl exists once the batch is terminal)"
        )
    path = Path(record.outbox_dir) / outbox.RESULTS_JSONL
    if not path.is_file():
        raise not_found(f"{outbox.RESULTS_JSONL} of batch {names.log_text(record.batch_id)!r}")
    return path

"""A batch's outbox, written at the end: history, duplicates, results, duplicates.gexf,
status, report.html, summary.

`BatchOutbox.write()` is a generator of progress: the batch actor advances it in short slices
(one message each), so a stop is never held by a long finalising, and dropping the generator
midway leaves no partial file (the results are written to temporary files, renamed at the end).
It reads only what is durable, so the next start redoes an interrupted finalising exactly.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from medianalysed import gexf, names, outbox, reporthtml
from medianalysed.diskfaults import classified
from medianalysed.dupactions import choose_keeper, duplicate_fields, keeper_facts, outermost
from medianalysed.dupgroups import BatchImage, DuplicatePlanner, RecordDuplicates
from medianalysed.dupindex import ImageRef, IndexedImage
from medianalysed.lifecycle import BatchPhase
from medianalysed.models import ANALYSIS_VERSION, ImageStatus
from medianalysed.nearrule import NearRule
from medianalysed.outboxresults import open_results
from medianalysed.outboxsummary import SummaryBuilder
from medianalysed.ports import DuplicateHistory, StateStorage
from medianalysed.progress import BatchProgress, Stage, publish
from medianalysed.readiness import group_of
from medianalysed.report import REPORT_FILE, ReportCollector
from medianalysed.state import BatchRecord, ImageRecord
from medianalysed.urllist import URL_PATH_PREFIX, shown_url

_INDEX_BATCH = 500  # images added to the history per transaction
_PROGRESS_EVERY = 256  # records between two progress reports


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchOutbox:
    """Writes the outbox of one finished batch from its durable state."""

    record: BatchRecord
    store: StateStorage
    history: DuplicateHistory
    near_rule: NearRule
    max_duplicates_listed: int
    config_fingerprint: str

    def write(self) -> Generator[Stage, None, dict[str, Any]]:
        """The outbox, as a generator of progress: results, status.json, then summary.json."""
        batch_dir = Path(self.record.outbox_dir)
        with classified("outbox", batch_dir):
            return (yield from self._write_files(batch_dir))

    def _write_files(self, batch_dir: Path) -> Generator[Stage, None, dict[str, Any]]:
        outbox.make_batch_dir(batch_dir)
        planner = DuplicatePlanner(
            self.history,
            batch_id=self.record.batch_id,
            rule=self.near_rule,
            listed=self.max_duplicates_listed,
        )
        yield from self._index_done_images(planner)
        yield from planner.steps()
        keepers = yield from self._keepers(planner)
        builder = SummaryBuilder()
        report = ReportCollector()
        total = self.record.total
        with open_results(batch_dir) as results:
            for record, thumbnail in self._final_records(planner, keepers):
                results.write(record)
                builder.add(record)
                report.add(record, thumbnail)
                if results.count % _PROGRESS_EVERY == 0:
                    yield ("writing", results.count, total)
        outbox.write_lines_atomic(
            batch_dir / gexf.GEXF_FILE, gexf.lines(builder.duplicate_groups, self.record.batch_id)
        )
        done = BatchProgress.ended(self.record, phase=BatchPhase.DONE)
        fields = publish(self.store, self.record, done)
        fields["completed_at"] = self.record.completed_at
        fields["duration_seconds"] = _duration_s(self.record)
        fields["tags"] = list(self.record.tags)
        fields["priority"] = str(self.record.priority)
        if self.record.note:
            fields["note"] = self.record.note
        summary = builder.build(
            status_fields=fields,
            config_fingerprint=self.config_fingerprint,
            duplicate_groups=_shown_groups(planner.groups()),
            duplicates_capped=planner.capped,
        )
        outbox.write_lines_atomic(batch_dir / REPORT_FILE, reporthtml.lines(summary, report.data))
        outbox.write_json_atomic(batch_dir / outbox.SUMMARY_FILE, summary)
        return summary

    def _index_done_images(self, planner: DuplicatePlanner) -> Iterator[Stage]:
        """Store the done images in the history (a no-op for those already there, so a
        resumed finalising adds nothing twice) and hand them to the planner, in path order."""
        pending: list[IndexedImage] = []
        total = self.record.total
        for seen, path in enumerate(self.store.iter_paths(self.record), start=1):
            indexed = self._indexed(path, self.store.get_image(self.record.batch_id, path))
            if indexed is not None:
                pending.append(indexed)
                planner.add(BatchImage(path, indexed.sha256, indexed.pixel_digest, indexed.hashes))
            if len(pending) >= _INDEX_BATCH:
                self.history.add_many(pending)
                pending = []
            if seen % _PROGRESS_EVERY == 0:
                yield ("indexing", seen, total)
        if pending:
            self.history.add_many(pending)
        yield ("indexing", total, total)

    def _indexed(self, path: str, image: ImageRecord | None) -> IndexedImage | None:
        if image is None or image.status != ImageStatus.DONE or image.result is None:
            return None
        result = image.result
        return IndexedImage(
            ref=ImageRef(self.record.batch_id, path),
            sha256=result["file"]["sha256"],
            pixel_digest=result.get("pixel_digest"),
            hashes=result.get("hashes") or {},
            analysis_version=ANALYSIS_VERSION,
        )

    def _keepers(self, planner: DuplicatePlanner) -> Generator[Stage, None, dict[str, str]]:
        """Per member of a group in this batch (but its keeper), the keeper's record path."""
        keeper_of: dict[str, str] = {}
        groups = [group for found in outermost(planner.groups()).values() for group in found]
        for done, group in enumerate(groups, start=1):
            shown = {names.record_path(path): path for path in group}  # ordered as records are
            facts = []
            for record_path, path in shown.items():
                image = self.store.get_image(self.record.batch_id, path)
                facts.append(keeper_facts(record_path, None if image is None else image.result))
            keeper = choose_keeper(facts)
            keeper_of.update(
                (path, keeper) for shown_path, path in shown.items() if shown_path != keeper
            )
            if done % _PROGRESS_EVERY == 0:
                yield ("keepers", done, len(groups))
        return keeper_of

    def _final_records(
        self, planner: DuplicatePlanner, keepers: dict[str, str]
    ) -> Iterator[tuple[dict[str, Any], str | None]]:
        """Each final record, in path order, with its stored thumbnail (or None)."""
        position = 0  # among the done images, as they were handed to the planner
        for path in self.store.iter_paths(self.record):  # stored in path order
            image = self.store.get_image(self.record.batch_id, path)
            duplicates = None
            if self._indexed(path, image) is not None:
                duplicates = planner.duplicates(position)
                position += 1
            thumbnail = (
                None if image is None or image.result is None else image.result.get("thumbnail")
            )
            yield self._final_record(path, image, duplicates, keepers.get(path)), thumbnail

    def _final_record(
        self,
        path: str,
        image: ImageRecord | None,
        duplicates: RecordDuplicates | None = None,
        keeper: str | None = None,
    ) -> dict[str, Any]:
        image = image or ImageRecord(path=path)
        result = image.result or {}
        file_section = result.get("file") or image.file
        if file_section is None and image.source_url is not None:
            file_section = {"source_url": image.source_url}
        if file_section is not None and file_section.get("source_url"):
            file_section = {**file_section, "source_url": shown_url(file_section["source_url"])}
        group = None if path.startswith(URL_PATH_PREFIX) else group_of(path)
        matches = None if duplicates is None else _shown_matches(duplicates.matches)
        return {
            **names.path_fields(path),
            "group": None if group is None else names.record_path(group),
            "status": str(image.status),
            "error": image.error if image.status != ImageStatus.DONE else None,
            "attempts": image.attempts,
            "duration_ms": image.duration_ms,
            "file": file_section,
            "image": result.get("image"),
            "exif": result.get("exif"),
            "colors": result.get("colors"),
            "hashes": result.get("hashes"),
            "duplicates": matches,
            "duplicate_count": None if duplicates is None else duplicates.count,
            "duplicate_group": (
                None
                if duplicates is None or duplicates.group is None
                else names.record_path(duplicates.group)
            ),
            **duplicate_fields(matches, keeper),
            "analysis_version": ANALYSIS_VERSION,
        }


def _shown_matches(matches: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Duplicate matches name their file as records do (`path`, and `path_bytes` if needed)."""
    return [{**match, **names.path_fields(str(match["path"]))} for match in matches]


def _shown_groups(groups: dict[str, list[list[str]]]) -> dict[str, list[list[str]]]:
    """The summary's duplicate groups, their paths in the records' `path` form."""
    return {
        tier: [[names.record_path(path) for path in group] for group in found]
        for tier, found in groups.items()
    }


def _duration_s(record: BatchRecord) -> float | None:
    if not record.started_at or not record.completed_at:
        return None
    started = datetime.fromisoformat(record.started_at.replace("Z", "+00:00"))
    completed = datetime.fromisoformat(record.completed_at.replace("Z", "+00:00"))
    return round((completed - started).total_seconds(), 3)

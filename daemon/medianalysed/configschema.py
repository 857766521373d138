"""The configuration keys: each declared once, as a field of its section's dataclass (SPEC §6).

`name: type = key(default, kind, help)`. Reading (`config.config_from_dict`), `config show`
(`config.render_config`), `config_fingerprint`, the commented sample `medianalysed.toml` and
the README's key table are all derived from these declarations (`configdocs.py` writes the last
two; a test keeps them current).

To add a key: add one field to its section below, then run `make config-docs`. A new section:
a dataclass like the ones below, a field of `Config`, and an entry in `SECTIONS`.
"""

from __future__ import annotations

import importlib.util
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, get_args
from urllib.parse import urlsplit

from medianalysed.configkeys import (
    Boolean,
    Choice,
    Directory,
    Integer,
    Number,
    Numbers,
    OptionalDirectory,
    Patterns,
    Secrets,
    Size,
    Text,
    key,
)
from medianalysed.configtable import clip, split_listen
from medianalysed.redaction import mask_url

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

WatchMode = Literal["auto", "events", "polling"]
OnComplete = Literal["archive", "delete", "keep"]
LogFormat = Literal["text", "json"]
LogLevel = Literal["debug", "info", "warning", "error"]
ExecutorKind = Literal["local", "dask"]

WATCH_MODES: tuple[WatchMode, ...] = get_args(WatchMode)
ON_COMPLETE_ACTIONS: tuple[OnComplete, ...] = get_args(OnComplete)
LOG_FORMATS: tuple[LogFormat, ...] = get_args(LogFormat)
LOG_LEVELS: tuple[LogLevel, ...] = get_args(LogLevel)
EXECUTOR_KINDS: tuple[ExecutorKind, ...] = get_args(ExecutorKind)

_INBOX_NAME = re.compile(r"[A-Za-z0-9_-]+")
_DASK_ADDRESS = re.compile(
    r"(?:tcp|tls)://[^\s/:]+(?::[0-9]{1,5})?|(?:tcp|tls)://\[[0-9A-Fa-f:.]+\](?::[0-9]{1,5})?"
)


# --- checks of string values -------------------------------------------------------------------


def _listen_problem(listen: str) -> str | None:
    if not listen:
        return None
    try:
        split_listen(listen)
    except ValueError as exc:
        return f"{exc}; expected 'host:port' or '' to disable, got {clip(listen)}"
    return None


def _url_problem(url: str) -> str | None:
    if not url:
        return None
    problem = _url_form_problem(url)
    return None if problem is None else f"{problem}, got {clip(mask_url(url))}"


def _url_form_problem(url: str) -> str | None:
    if any(char.isspace() for char in url):
        return "must not contain whitespace"
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises on a malformed port
    except ValueError:
        return "not a valid url"
    if parts.scheme.lower() not in {"http", "https"}:
        return "must be an http:// or https:// url"
    if not parts.hostname:
        return "must name a host"
    return None


def _executor_kind_problem(kind: str) -> str | None:
    if kind == "dask" and importlib.util.find_spec("distributed") is None:
        return "dask needs the [dask] extra, not installed here: pip install 'medianalysed[dask]'"
    return None


def _dask_address_problem(address: str) -> str | None:
    if address and not _DASK_ADDRESS.fullmatch(address):
        return (
            "expected a Dask scheduler address such as tcp://host:8786 (or '' for a local "
            f"cluster), got {clip(address)}"
        )
    return None


def _inbox_name_problem(name: str) -> str | None:
    if name == "":
        return "must not be empty"
    if not _INBOX_NAME.fullmatch(name):
        return f"must be letters, digits, '_' or '-' only, got {clip(name)}"
    return None


def _ready_marker_problem(marker: str) -> str | None:
    if "/" in marker or "\0" in marker or marker in {".", ".."}:
        return f"must be a file name without '/', got {clip(marker)}"
    return None


# --- the declarations ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class DaemonConfig:
    """The daemon process: where it keeps its state and how it logs."""

    state_dir: Path = key(
        Path("var/state"),
        Directory(),
        """Where the daemon keeps its persistent state (diskcache: batches in progress, webhook
        deliveries, the duplicate index). Must be on a local filesystem: SQLite locking is
        unreliable over NFS/SMB. Must not be inside an inbox, outbox, archive or failed
        directory.""",
    )
    log_format: LogFormat = key(
        "text",
        Choice(LOG_FORMATS),
        """Log line format: "text" for people reading a terminal or journalctl, "json" (one
        object per line, with batch_id/path fields) for log shippers such as Loki,
        Elasticsearch or Vector.""",
    )
    log_level: LogLevel = key(
        "info",
        Choice(LOG_LEVELS),
        """Minimum level logged: debug, info, warning or error. Use "debug" only while
        investigating.""",
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class ProcessingConfig:
    """How images are analysed: concurrency, retries and the limits an image must meet."""

    workers: int = key(
        0,
        Integer(at_least=0),
        """Images analysed at the same time, across all batches. 0 = one per CPU core. Lower it
        to leave CPU or memory for other services; decoding a 100-megapixel image needs
        ~300 MB.""",
    )
    max_retries: int = key(
        3,
        Integer(at_least=0),
        """How many times an image whose failure is retryable (TIMEOUT, IO_ERROR, network
        errors) is tried again before it is reported as failed. 0 = never retry.""",
    )
    retry_backoff_seconds: tuple[float, ...] = key(
        (5, 20, 80),
        Numbers(),
        "Seconds to wait before retry 1, 2, 3… of an image (non-empty, each >= 0).",
    )
    image_timeout_seconds: float = key(
        60,
        Number(above=True),
        """Seconds one image's analysis may take; a hung decode is stopped and the image fails
        with TIMEOUT. Raise it for very large TIFFs or slow disks.""",
    )
    max_file_size: int = key(
        200_000_000,
        Size(),
        "Files larger than this are skipped (TOO_LARGE) without being read.",
        affects_results=True,
    )
    max_pixels: int = key(
        178_956_970,
        Integer(at_least=1),
        """Images with more pixels than this are refused (DECOMPRESSION_BOMB). The default is
        Pillow's own limit; raise it only for trusted input such as scanned maps or
        panoramas.""",
        affects_results=True,
    )
    min_width: int = key(
        0,
        Integer(at_least=0),
        """Images narrower than this many pixels are skipped (TOO_SMALL), e.g. icons and
        tracking pixels. 0 = no minimum.""",
        affects_results=True,
    )
    min_height: int = key(
        0,
        Integer(at_least=0),
        """Images lower than this many pixels are skipped (TOO_SMALL), e.g. icons and tracking
        pixels. 0 = no minimum.""",
        affects_results=True,
    )
    max_worker_memory: int = key(
        2_000_000_000,
        Size(zero_means_none=True),
        """Memory one worker process may allocate (its data: heap and anonymous mappings, the
        kernel's RLIMIT_DATA). An image whose decode needs more fails with DECOMPRESSION_BOMB
        instead of taking the daemon down; "0" or "" = no limit. The default holds the
        largest image max_pixels admits (4 bytes a pixel once decoded: 716 MB) plus the
        worker itself (~200 MB), twice over. Size the service's MemoryMax= for workers x this
        plus 500 MB.""",
    )
    vips: bool = key(
        True,
        Boolean(),
        """Let libvips (pyvips) decode the PNGs and lossless TIFFs it decodes to exactly
        Pillow's pixels, 1.3-1.6x faster. Pillow still reads every header, checks every limit
        and decodes whatever libvips fails on; the results are the same either way. false
        (or no pyvips installed): Pillow decodes everything.""",
    )
    stall_seconds: float = key(
        600,
        Number(above=True),
        """A running batch that makes no progress for this many seconds (no image finished,
        and images held by the workers without an answer, or its actor not answering) is
        stalled: it is logged with its id, counted in medianalysed_batches_stalled_total, and
        /healthz turns unhealthy (so systemd's watchdog restarts the daemon, which resumes the
        batch). Keep it well above image_timeout_seconds and the longest retry backoff.""",
    )

    @property
    def effective_workers(self) -> int:
        """`workers`, with 0 meaning one per CPU."""
        return self.workers or (os.cpu_count() or 1)


@dataclass(frozen=True, slots=True, kw_only=True)
class AnalysisConfig:
    """What an analysis reports."""

    dominant_colors: int = key(
        5,
        Integer(at_least=1, at_most=32),
        "Number of dominant colours reported per image (1..32).",
        affects_results=True,
    )
    near_duplicate_distance: int = key(
        6,
        Integer(at_least=0, at_most=32),
        """pHash limit of the `phash` clause of the near rule (see [near]): two images are
        "near" duplicates when their perceptual hashes (pHash) differ by at most this many
        bits (0..32) and their dHashes by at most [near] phash_dhash. Lower = stricter (fewer
        false matches); 0 keeps only near-identical pixels. Changing it changes results: it is
        part of summary.json's config_fingerprint.""",
        affects_results=True,
    )
    max_duplicates_listed: int = key(
        10,
        Integer(at_least=0, at_most=1000),
        """Each per-image record lists at most this many duplicates (0..1000), closest first;
        it always carries `duplicate_count` (every match) and `duplicate_group`, and
        summary.json lists every group once, so a batch of look-alikes (blank scans, product
        shots on white) keeps a small outbox. 0 lists none.""",
    )
    gps: bool = key(
        True,
        Boolean(),
        "Report GPS coordinates from EXIF. false = GPS is dropped from every result (privacy).",
        affects_results=True,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class NearConfig:
    """The `near` rule's limits (Hamming distances, inclusive), clause by clause: two images are
    near duplicates when every limit of some clause holds. The `phash` clause's pHash limit is
    [analysis] near_duplicate_distance. Defaults measured with benchmarks/bench_near.py (README,
    "Near duplicates"): 95.6 % of planted copies, no false match."""

    phash_dhash: int = key(
        12,
        Integer(at_least=0, at_most=64),
        """dHash limit of the `phash` clause (with pHash <= near_duplicate_distance). 64 =
        no dHash bound: the 0.2.0 rule (pHash alone).""",
        affects_results=True,
    )
    combined_phash: int = key(
        14,
        Integer(at_least=-1, at_most=64),
        """pHash limit of the `combined` clause (crops, brightness changes); -1 turns the
        clause off.""",
        affects_results=True,
    )
    combined_dhash: int = key(
        26,
        Integer(at_least=0, at_most=64),
        """dHash limit of the `combined` clause.""",
        affects_results=True,
    )
    combined_ahash: int = key(
        8,
        Integer(at_least=0, at_most=64),
        """aHash limit of the `combined` clause.""",
        affects_results=True,
    )
    combined_whash: int = key(
        22,
        Integer(at_least=0, at_most=64),
        """wHash limit of the `combined` clause.""",
        affects_results=True,
    )
    combined_colorhash: int = key(
        7,
        Integer(at_least=0, at_most=64),
        """colorhash limit of the `combined` clause.""",
        affects_results=True,
    )
    watermark_phash: int = key(
        16,
        Integer(at_least=-1, at_most=64),
        """pHash limit of the `watermark` clause (a pasted box or logo); -1 turns the clause
        off.""",
        affects_results=True,
    )
    watermark_dhash: int = key(
        8,
        Integer(at_least=0, at_most=64),
        """dHash limit of the `watermark` clause.""",
        affects_results=True,
    )
    watermark_ahash: int = key(
        13,
        Integer(at_least=0, at_most=64),
        """aHash limit of the `watermark` clause.""",
        affects_results=True,
    )
    watermark_whash: int = key(
        10,
        Integer(at_least=0, at_most=64),
        """wHash limit of the `watermark` clause.""",
        affects_results=True,
    )
    watermark_colorhash: int = key(
        4,
        Integer(at_least=0, at_most=64),
        """colorhash limit of the `watermark` clause.""",
        affects_results=True,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricsConfig:
    """The HTTP endpoint for Prometheus and health checks."""

    listen: str = key(
        "127.0.0.1:9464",
        Text(check=_listen_problem, form='"host:port", or "" for none'),
        """"host:port" of the HTTP endpoint serving /metrics, /healthz and /readyz;
        "[::1]:9464" for IPv6, "0.0.0.0:9464" to let a remote Prometheus scrape it, "" to
        disable the endpoint.""",
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class WebhookConfig:
    """The webhook told when a batch finishes."""

    url: str = key(
        "",
        Text(check=_url_problem, url=True, form='http(s) URL, or "" for none'),
        """http(s) URL that receives a POST with the batch summary when a batch finishes.
        "" = no webhook (a batch's own callback_url in batch.toml is still honoured).""",
    )
    secret: str = key(
        "",
        Text(secret=True),
        """Shared secret for the X-Medianalysed-Signature header (HMAC-SHA256 of the body). Set
        one whenever url is set, so the receiver can verify the sender. Shown masked by
        `config show`.""",
    )
    timeout_seconds: float = key(
        10,
        Number(above=True),
        "Seconds one delivery attempt may take before it counts as failed.",
    )
    max_attempts: int = key(
        6,
        Integer(at_least=1),
        "Attempts per delivery (>= 1); after the last one it goes to the dead-letter list.",
    )
    backoff_seconds: tuple[float, ...] = key(
        (1, 5, 30, 120, 600),
        Numbers(),
        """Seconds to wait before attempt 2, 3… (non-empty, each >= 0). Deliveries survive
        restarts.""",
    )
    progress_seconds: float = key(
        10,
        Number(),
        """While a batch runs, a batch.progress event (the status.json fields and a sequence
        number) is POSTed at most this often; 0 = no progress events. A progress event is not
        retried once a newer one exists; terminal events always are.""",
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class DownloadsConfig:
    """Remote images listed in a batch's urls.txt."""

    timeout_seconds: float = key(
        30,
        Number(above=True),
        "Seconds one remote image (from a batch's urls.txt) may take to download.",
    )
    max_bytes: int = key(
        100_000_000,
        Size(),
        "Downloads larger than this are stopped and the image fails.",
    )
    allow_private_networks: bool = key(
        False,
        Boolean(),
        """Loopback, private (10/8, 192.168/16, …) and link-local targets are REFUSED unless
        true. Keep false unless the URLs are trusted: this blocks requests to internal services
        (SSRF).""",
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecutorConfig:
    """Where each image's analysis runs."""

    kind: ExecutorKind = key(
        "local",
        Choice(EXECUTOR_KINDS, check=_executor_kind_problem),
        """Where each image's analysis runs: "local" (worker processes on this machine) or
        "dask" (a Dask distributed cluster; needs `pip install 'medianalysed[dask]'` here and on
        every worker, and the inboxes mounted at the same paths on every worker: see the
        README, "Beyond one machine"). With "dask", [processing] workers is the number of
        images in flight on the cluster. A change takes effect at the next start.""",
    )
    address: str = key(
        "",
        Text(check=_dask_address_problem, form='"tcp://host:port", or "" for a local cluster'),
        """With kind = "dask": the scheduler, e.g. "tcp://scheduler.example:8786". "" starts a
        local cluster of `workers` processes on this machine, for trying it out.""",
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiConfig:
    """The HTTP API under /v1/ on the [metrics] listen address (SPEC §10)."""

    submit: bool = key(
        False,
        Boolean(),
        """Accept POST /v1/batches (a JSON URL list or a multipart upload, written into the
        inbox as a ready folder) and POST /v1/batches/{id}/retry and /cancel. Needs tokens.""",
    )
    tokens: tuple[str, ...] = key(
        (),
        Secrets(),
        """Bearer tokens (Authorization: Bearer <token>), each at least 16 characters; with
        tokens every /v1 request needs one. [] = the read API answers on loopback only. Shown
        masked by `config show` and in logs.""",
    )
    max_upload_bytes: int = key(
        100_000_000,
        Size(),
        "The largest submission body; a larger one is refused with 413.",
    )
    max_files: int = key(
        1000,
        Integer(at_least=1),
        "The most files one multipart submission may hold; more is refused with 413.",
    )
    rate_limit_per_minute: int = key(
        600,
        Integer(at_least=0),
        "Requests a minute per token (per client without tokens) before 429; 0 = no limit.",
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class InboxConfig:
    """One [[inbox]] table per watched directory; repeat the whole table for more inboxes (each
    with its own unique name and directories). Without any [[inbox]], this one is used."""

    name: str = key(
        "default",
        Text(check=_inbox_name_problem, form="letters, digits, _ and -"),
        """Identifies the inbox in logs, metrics and status: letters, digits, "_" and "-"
        only.""",
    )
    path: Path = key(
        Path("var/inbox"),
        Directory(),
        "The watched directory: drop a folder of images (a batch) or loose images here.",
    )
    outbox: Path = key(
        Path("var/outbox"),
        Directory(),
        """Results go to OUTBOX/<batch_id>/ (status.json, results.jsonl, results.csv,
        summary.json).""",
    )
    archive: Path = key(
        Path("var/archive"),
        Directory(),
        'Finished input folders are moved here when on_complete = "archive".',
    )
    failed: Path | None = key(
        None,
        OptionalDirectory(),
        """Where batches with at least one failed image are moved instead; "" = archive as
        usual. The path, outbox, archive and failed directories must differ and not be
        nested.""",
    )
    on_complete: OnComplete = key(
        "archive",
        Choice(ON_COMPLETE_ACTIONS),
        """What happens to a batch's input once its results are safely in the outbox:
        "archive" (move to archive), "delete", or "keep" (leave it in the inbox).""",
    )
    watch: WatchMode = key(
        "auto",
        Choice(WATCH_MODES),
        """How changes are noticed: "events" (inotify; local disks), "polling" (NFS, SMB/CIFS,
        FUSE), or "auto" (polling for network filesystems, events otherwise).""",
    )
    settle_seconds: float = key(
        5,
        Number(),
        """A folder without the ready marker starts once nothing in it (names, sizes, mtimes)
        has changed for this many seconds. Raise it for slow uploads over a network.""",
    )
    ready_marker: str = key(
        ".ready",
        Text(check=_ready_marker_problem, form='file name, or "" for none'),
        """A file with this name in a dropped folder marks it complete at once (no settle
        wait). Write it last. "" = no marker: readiness by settling only.""",
    )
    rescan_seconds: float = key(
        300,
        Number(above=True),
        "Seconds between full rescans of the inbox, which catch anything a watcher missed.",
    )
    ignore: tuple[str, ...] = key(
        (),
        Patterns(),
        """Extra glob patterns of names to ignore, added to the built-in junk list (hidden
        files, @eaDir, .DS_Store, ._*, Thumbs.db, desktop.ini, __MACOSX), e.g. ["*.xmp",
        "*.txt"].""",
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    daemon: DaemonConfig = field(default_factory=DaemonConfig)
    processing: ProcessingConfig = field(default_factory=ProcessingConfig)
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)
    near: NearConfig = field(default_factory=NearConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    webhook: WebhookConfig = field(default_factory=WebhookConfig)
    downloads: DownloadsConfig = field(default_factory=DownloadsConfig)
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)
    api: ApiConfig = field(default_factory=ApiConfig)
    inboxes: tuple[InboxConfig, ...] = (InboxConfig(),)
    source: Path | None = None  # the file this was loaded from; None for built-in defaults


# The [section] tables, in file order; `inboxes` is the array of [[inbox]] tables.
SECTIONS: dict[str, type[DataclassInstance]] = {
    "daemon": DaemonConfig,
    "processing": ProcessingConfig,
    "analysis": AnalysisConfig,
    "near": NearConfig,
    "metrics": MetricsConfig,
    "webhook": WebhookConfig,
    "downloads": DownloadsConfig,
    "executor": ExecutorConfig,
    "api": ApiConfig,
}

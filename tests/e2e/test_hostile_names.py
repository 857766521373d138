"""End-to-end: whatever names and trees a dropper sends, every batch ends and the daemon lives.

Drops, all at once into one running daemon: folders and files whose names are not UTF-8, a
folder name that tries to forge a log line, a 255-byte folder name (twice), a batch with an
unreadable sub-folder, and a tree deeper than PATH_MAX.

Under root the daemon runs without CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH (dropped from its
bounding set before exec, as `setpriv` would): root would otherwise read a chmod 000 folder and
the unreadable-folder part would prove nothing. The test checks the daemon's capabilities.
"""

from __future__ import annotations

import base64
import io
import os
import re
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.e2e.harness import DaemonProcess, cli_command, free_port, wait_for, write_config

pytestmark = pytest.mark.e2e

FORGED = "2026-01-01 00:00:00,000 ERROR medianalysed: forged"
LONG_NAME = "n" * 255
DEEP_LEVELS, DEEP_NAME = 24, b"d" * 200
_DAC_CAPS = (1, 2)  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
# Drops the DAC capabilities from the bounding set, then execs the daemon: as uid 0 the new
# program's capabilities are the bounding set, so permission bits apply to it.
_LAUNCHER = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
for cap in (1, 2):
    if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
        sys.exit(f"cannot drop capability {cap}: {os.strerror(ctypes.get_errno())}")
os.execv(sys.argv[1], sys.argv[1:])
"""
_RECORD_START = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ ")


def jpeg(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (48 + seed, 32), (seed * 7 % 256, 90, 160)).save(buffer, "JPEG")
    return buffer.getvalue()


def write(path: bytes, data: bytes) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(data)


def stage(staging: Path, name: bytes, files: dict[bytes, bytes]) -> bytes:
    folder = os.fsencode(staging) + b"/" + name
    os.makedirs(folder)
    for relative, data in files.items():
        write(folder + b"/" + relative, data)
    return folder


def build_deep(folder: bytes) -> None:
    """DEEP_LEVELS nested folders, through descriptors: no path to the leaf fits in PATH_MAX."""
    os.makedirs(folder)
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(DEEP_LEVELS):
        os.mkdir(DEEP_NAME, dir_fd=fd)
        child = os.open(DEEP_NAME, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = child
    leaf = os.open(b"leaf.jpg", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
    os.write(leaf, jpeg(9))
    os.close(leaf)
    os.close(fd)


def drop(inbox: Path, folder: bytes) -> None:
    os.rename(folder, os.fsencode(inbox) + b"/" + os.path.basename(folder))


def daemon_command() -> list[str]:
    if os.geteuid() != 0:
        return cli_command()
    return [sys.executable, "-c", _LAUNCHER, *cli_command()]


def effective_caps(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^CapEff:\s*([0-9a-f]+)$", status, re.M)[1], 16)  # type: ignore[index]


@pytest.fixture
def process(tmp_path: Path):
    port = free_port()
    config = write_config(
        tmp_path,
        listen=f"127.0.0.1:{port}",
        inbox={"settle_seconds": 0.5},
        processing={"workers": 2, "max_retries": 0},
    )
    daemon = DaemonProcess(tmp_path, config, command=daemon_command())
    daemon.port = port  # type: ignore[attr-defined]
    try:
        daemon.start()
    except AssertionError as exc:
        if "cannot drop capability" in str(exc):
            pytest.skip(f"cannot run the daemon without DAC capabilities here: {exc}")
        raise
    yield daemon
    daemon.stop_quietly()
    for where in ("inbox", "archive"):  # so that a non-root run can clean tmp_path up
        locked = tmp_path / where / "locked-batch" / "locked"
        if locked.is_dir():
            locked.chmod(0o755)


def exact_paths(records: list[dict[str, Any]]) -> list[bytes]:
    """Each record's exact relative name: path_bytes when present, else the path's UTF-8."""
    return [
        base64.b64decode(r["path_bytes"]) if "path_bytes" in r else r["path"].encode("utf-8")
        for r in records
    ]


def test_hostile_names_and_trees_all_end_and_the_daemon_stays_healthy(process, tmp_path):
    if os.geteuid() == 0:
        assert not effective_caps(process.pid) & sum(1 << cap for cap in _DAC_CAPS)
    staging = tmp_path / "staging"
    staging.mkdir()
    inputs: dict[str, list[bytes]] = {}

    undecodable = {b"ok.jpg": jpeg(1), b"img\xff.jpg": jpeg(2), b"sub\xfe/x\xc3.jpg": jpeg(3)}
    drop(process.inbox, stage(staging, b"bad\xff\xfe-name", undecodable))
    inputs["bad\\xff\\xfe-name"] = sorted(undecodable)

    forging = f"x\n{FORGED}".encode()
    drop(process.inbox, stage(staging, forging, {b"a.jpg": jpeg(4), b"b\nc.jpg": jpeg(5)}))
    inputs["x\\n" + FORGED] = [b"a.jpg", b"b\nc.jpg"]

    write(os.fsencode(staging) + b"/loose\xfe.jpg", jpeg(6))
    drop(process.inbox, os.fsencode(staging) + b"/loose\xfe.jpg")
    inputs["loose\\xfe"] = [b"loose\xfe.jpg"]

    locked = stage(staging, b"locked-batch", {b"a.jpg": jpeg(7), b"locked/hidden.jpg": jpeg(8)})
    os.chmod(locked + b"/locked", 0)
    drop(process.inbox, locked)
    inputs["locked-batch"] = [b"a.jpg", b"locked/"]

    deep = os.fsencode(staging) + b"/deep"
    build_deep(deep)
    drop(process.inbox, deep)
    inputs["deep"] = [b"/".join([DEEP_NAME] * DEEP_LEVELS + [b"leaf.jpg"])]

    drop(process.inbox, stage(staging, LONG_NAME.encode(), {b"a.jpg": jpeg(10)}))
    inputs[LONG_NAME] = [b"a.jpg"]

    summaries = {batch_id: process.summary(batch_id) for batch_id in inputs}
    # The same 255-byte name again, once the first is archived: a shortened, suffixed id.
    wait_for((process.archive / LONG_NAME).is_dir, what="the first long batch archived")
    drop(process.inbox, stage(staging, LONG_NAME.encode(), {b"b.jpg": jpeg(11)}))
    second_long = "n" * 253 + "-2"
    inputs[second_long] = [b"b.jpg"]
    summaries[second_long] = process.summary(second_long)

    for batch_id, expected in inputs.items():
        records = process.results(batch_id)
        assert exact_paths(records) == sorted(expected), batch_id  # one record per input
        assert summaries[batch_id]["status"] in {"completed", "partial", "failed"}
        assert summaries[batch_id]["counts"]["pending"] == 0

    def by_path(batch_id: str) -> dict[str, dict[str, Any]]:
        return {r["path"]: r for r in process.results(batch_id)}

    bad = by_path("bad\\xff\\xfe-name")
    assert bad["img\\xff.jpg"]["status"] == "done"
    assert bad["sub\\xfe/x\\xc3.jpg"]["group"] == "sub\\xfe"
    assert "path_bytes" not in bad["ok.jpg"]
    locked_records = by_path("locked-batch")
    assert locked_records["locked/"]["error"]["code"] == "IO_ERROR"
    assert "Permission denied" in locked_records["locked/"]["error"]["message"]
    assert summaries["locked-batch"]["status"] == "partial"
    assert by_path("deep")[inputs["deep"][0].decode()]["status"] == "done"
    # Archived once its results are durable, so just after summary.json appears.
    wait_for((process.archive / second_long / "b.jpg").is_file, what="the second one archived")

    with httpx.Client(base_url=f"http://127.0.0.1:{process.port}", timeout=5) as http:
        assert http.get("/healthz").status_code == 200
    lines = process.log_text().splitlines()
    assert any("forged" in line for line in lines), "the name was logged"
    for line in lines:
        assert _RECORD_START.match(line) or line.startswith(" "), f"not a record: {line!r}"
        assert not line.startswith(FORGED), "a name forged a log line"

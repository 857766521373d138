"""The processes the benchmarks start and watch: the daemon, what /proc says of a process,
a free port, a bounded wait.

Linux only, like the benchmarks. A process that is gone reads as 0 (its memory, its fds),
so a sampler racing a worker's exit records nothing instead of failing.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def start_daemon(
    config: Path,
    log: IO[bytes],
    *,
    env: Mapping[str, str] | None = None,
    new_session: bool = False,
) -> subprocess.Popen[bytes]:
    """`python -m medianalysed run --config CONFIG` in CONFIG's folder, its output in `log`."""
    return subprocess.Popen(
        [sys.executable, "-m", "medianalysed", "run", "--config", str(config)],
        cwd=config.parent,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=new_session,
    )


def status_field(pid: int, field: str) -> int:
    """A number from /proc/PID/status: `VmRSS`, `VmHWM` (kB), `Threads`...; 0 if unreadable."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return 0
    return 0


def process_tree(root: int) -> list[int]:
    """`root` and all its descendants, from one read of /proc."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # The command name in parentheses may hold spaces: split after its closing bracket.
        fields = stat[stat.rindex(")") + 2 :].split()
        parents[int(entry)] = int(fields[1])
    tree, frontier = [root], [root]
    while frontier:
        frontier = [pid for pid, ppid in parents.items() if ppid in frontier]
        tree += frontier
    return tree


def descendants(pid: int) -> list[int]:
    """The processes below `pid` (its workers, their helpers)."""
    return process_tree(pid)[1:]


def open_fds(pid: int) -> int:
    """How many file descriptors `pid` holds open."""
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process (not its children)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until(condition: Callable[[], object], deadline_s: float, what: str) -> None:
    """Poll `condition` until true; exit the benchmark if `what` does not happen in time."""
    deadline = time.monotonic() + deadline_s
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"{what} did not happen within {deadline_s:g} s")
        time.sleep(0.05)

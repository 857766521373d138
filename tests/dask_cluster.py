"""A real Dask cluster on 127.0.0.1 for tests: `dask scheduler` and `dask worker` subprocesses.

Configured as the README tells users to: allowed-failures 0 and worker-saturation 1.0 on the
scheduler, non-daemonic workers (they start analysis processes). A Dask worker exits when its
scheduler goes away; `respawn_workers` starts the missing ones again, as systemd's
`Restart=always` does.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import distributed

from medianalysed.executors.daskcluster import CLUSTER_ENV
from tests.e2e.harness import clean_env, free_port, wait_for

DASK = str(Path(sys.executable).with_name("dask"))


@dataclass
class DaskCluster:
    """One scheduler and `size` single-threaded workers, each a process group of its own."""

    root: Path
    size: int = 2
    worker_env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    scheduler: subprocess.Popen[bytes] | None = None
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def start(self) -> DaskCluster:
        self.start_scheduler()
        self.workers = [self._worker(index) for index in range(self.size)]
        self.wait_for_workers(self.size)
        return self

    def start_scheduler(self) -> None:
        self.scheduler = self._spawn(
            "scheduler",
            [DASK, "scheduler", "--host", "127.0.0.1", "--port", str(self.port), "--no-dashboard"],
            {},
        )

    def stop_scheduler(self) -> None:
        """SIGKILL the scheduler (its workers then exit by themselves)."""
        assert self.scheduler is not None
        _kill(self.scheduler)
        self.scheduler = None

    def _worker(self, index: int) -> subprocess.Popen[bytes]:
        command = [
            DASK, "worker", self.address, "--host", "127.0.0.1", "--nthreads", "1",
            "--no-dashboard", "--name", f"w{index}",
        ]  # fmt: skip
        return self._spawn(f"worker-{index}", command, self.worker_env)

    def _spawn(self, name: str, command: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = (self.root / f"dask-{name}.log").open("ab")
        with log:
            return subprocess.Popen(
                command,
                env=clean_env(**CLUSTER_ENV, **env),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def respawn_workers(self) -> None:
        """Start again the workers whose process exited (systemd's Restart=always)."""
        self.workers = [
            self._worker(index) if process.poll() is not None else process
            for index, process in enumerate(self.workers)
        ]

    def wait_for_workers(self, count: int, timeout: float = 90) -> None:
        with self.client() as client:
            client.wait_for_workers(count, timeout=timeout)

    def worker_pids(self) -> dict[str, int]:
        """Worker address -> pid of its worker process (the nanny's child), asked of each."""
        with self.client() as client:
            return {address: int(pid) for address, pid in client.run(os.getpid).items()}

    @contextlib.contextmanager
    def client(self) -> Iterator[distributed.Client]:
        client = distributed.Client(self.address, timeout=30, set_as_default=False)
        try:
            yield client
        finally:
            client.close()

    def log_text(self) -> str:
        return "\n".join(
            f"--- {path.name}\n{path.read_text(errors='replace')[-3000:]}"
            for path in sorted(self.root.glob("dask-*.log"))
        )

    def stop(self) -> None:
        for process in [*self.workers, *([self.scheduler] if self.scheduler else [])]:
            _kill(process)
        self.workers = []
        self.scheduler = None


def _kill(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


def kill_pid(pid: int) -> None:
    """SIGKILL one process (a Dask worker process, its nanny restarts it)."""
    os.kill(pid, signal.SIGKILL)


def wait_for_pid_gone(pid: int) -> None:
    def gone() -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False

    wait_for(gone, timeout=10, what=f"process {pid} to exit")

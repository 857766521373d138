"""The Dask side of the executor seam, without a cluster: the worker's own check, the units."""

from __future__ import annotations

from pathlib import Path

from medianalysed import __version__
from medianalysed.executors.dasktask import check_worker
from tests.dask_cluster import CLUSTER_ENV

UNITS = Path(__file__).resolve().parents[2] / "systemd" / "dask"


def test_a_worker_names_each_folder_it_cannot_see_and_why(tmp_path: Path) -> None:
    seen = tmp_path / "inbox"
    seen.mkdir()
    (tmp_path / "file").write_text("x")
    answer = check_worker([str(seen), str(tmp_path / "absent"), str(tmp_path / "file")])
    assert answer["version"] == __version__
    assert answer["daemonic"] is False
    assert answer["unseen"] == {
        str(tmp_path / "absent"): "No such file or directory",
        str(tmp_path / "file"): "not a folder",
    }


def test_the_units_users_copy_set_what_the_tests_run_the_cluster_with() -> None:
    scheduler = (UNITS / "medianalysed-dask-scheduler.service").read_text()
    worker = (UNITS / "medianalysed-dask-worker.service").read_text()
    for name, value in CLUSTER_ENV.items():
        if name.startswith("DASK_DISTRIBUTED__SCHEDULER"):
            assert f"Environment={name}={value}" in scheduler
    assert "ExecStart=" in scheduler
    assert " scheduler " in scheduler
    for name, value in CLUSTER_ENV.items():
        if name.startswith(("OMP", "OPENBLAS", "DASK_DISTRIBUTED__WORKER")):
            assert f"Environment={name}={value}" in worker
    assert "Restart=always" in worker  # a worker exits when its scheduler goes away
    assert " worker tcp://" in worker

"""An image actor hands downloads to the downloader's threads and stays free meanwhile."""

from __future__ import annotations

import queue
import threading
from pathlib import Path
from typing import Any

from medianalysed.actors.image import ImageActor
from medianalysed.config import Config, DownloadsConfig
from medianalysed.downloads import Downloader
from medianalysed.executors.local import LocalExecutor
from medianalysed.messages import AnalyseImage, ImageAnalysed, WorkerIdle
from medianalysed.models import AnalysisSettings
from tests.e2e.harness import wait_for
from tests.recording import RecordingActor, expect
from tests.scripted_http import answer, hold, scripted_server


def test_a_download_in_flight_leaves_the_image_actor_free(tmp_path: Path) -> None:
    release = threading.Event()
    messages: queue.Queue[Any] = queue.Queue()
    recorder = RecordingActor.start(messages)
    downloader = Downloader(DownloadsConfig(timeout_seconds=30, allow_private_networks=True))
    executor = LocalExecutor(workers=1, timeout_s=10, max_worker_memory=0)
    try:
        with scripted_server({}) as server:
            server.routes["/x.jpg"] = hold(server, release, then=answer(404))
            actor = ImageActor.start(
                executor=executor,
                settings=AnalysisSettings.from_config(Config()),
                timeout_s=10,
                content_dir=None,
                supervisor=recorder,
                downloader=downloader,
            )
            actor.tell(
                AnalyseImage(
                    batch_id="b",
                    path="urls.txt#L0001",
                    file_path=str(tmp_path / "download"),
                    source_url=f"{server.base}/x.jpg",
                    attempt=1,
                    reply_to=recorder,
                )
            )
            wait_for(server.recorded, what="the download to start")
            # The download waits on the server; the actor still answers at once.
            assert actor.ask("are you free?", timeout=2) is None
            assert not release.is_set()
            release.set()
            analysed = expect(messages, ImageAnalysed)
            expect(messages, WorkerIdle)
    finally:
        release.set()
        downloader.close()
        executor.close()
    assert analysed.path == "urls.txt#L0001"
    assert analysed.error is not None
    assert analysed.error["code"] == "BAD_REQUEST"

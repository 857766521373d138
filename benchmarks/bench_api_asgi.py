"""The same API router behind Starlette + uvicorn, against the daemon's own listener.

    .venv/bin/pip install starlette uvicorn   # not dependencies: for this comparison only
    nice -n 19 .venv/bin/python benchmarks/bench_api_asgi.py --images 20000 --requests 200

Both servers answer from one state store through `ApiRouter.answer` (Starlette runs it in
its thread pool, as a sync state read must be); the client is one httpx client. Printed:
p50/p95 in ms of a small answer (one batch) and a page of 100 images on each server.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bench_api import BIG, build_state, timed
from medianalysed.api.auth import Authenticator
from medianalysed.api.events import EventHub
from medianalysed.api.http import ApiEndpoint
from medianalysed.api.replies import Reply
from medianalysed.api.routes import ApiRequest, ApiRouter
from medianalysed.metrics import Metrics, MetricsServer
from procs import free_port


def starlette_app(router: ApiRouter) -> Starlette:
    async def endpoint(request: Request) -> Response:
        api_request = ApiRequest(
            method=request.method,
            target=request.url.path + ("?" + request.url.query if request.url.query else ""),
            headers=dict(request.headers),
            client_host=request.client.host if request.client else "",
        )
        answer = await run_in_threadpool(router.answer, api_request)
        assert isinstance(answer, Reply)
        return Response(answer.body, answer.status, answer.headers, answer.content_type)

    return Starlette(routes=[Route("/v1/{rest:path}", endpoint)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-asgi-") as tmp:
        store = build_state(Path(tmp), args.images)
        router = ApiRouter(store, Authenticator(()))
        hub = EventHub()
        ours = MetricsServer(
            "127.0.0.1:0",
            Metrics.create("bench", ["default"]).registry,
            health=list,
            ready=lambda: True,
            api=ApiEndpoint(router, hub),
        )
        ours.start()
        port = free_port()
        server = uvicorn.Server(
            uvicorn.Config(starlette_app(router), host="127.0.0.1", port=port, log_level="error")
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        host, ours_port = ours.bound_address
        bases = {
            "stdlib (httpd.py)": f"http://{host}:{ours_port}",
            "starlette+uvicorn": f"http://127.0.0.1:{port}",
        }
        print(f"{args.images} images; ms per request, p50 / p95")
        for name, base in bases.items():
            with httpx.Client(base_url=base, timeout=30) as client:
                one = timed(
                    lambda: client.get(f"/v1/batches/{BIG}").raise_for_status(), args.requests
                )
                page = timed(
                    lambda: client.get(
                        f"/v1/batches/{BIG}/images", params={"limit": 100}
                    ).raise_for_status(),
                    args.requests,
                )
            print(
                f"{name:20} batch {one['p50']:6.2f} / {one['p95']:6.2f}   "
                f"images {page['p50']:6.2f} / {page['p95']:6.2f}"
            )
        server.should_exit = True
        thread.join(10)
        ours.stop()
        store.close()


if __name__ == "__main__":
    main()

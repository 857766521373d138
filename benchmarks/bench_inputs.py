"""What hostile inputs cost: urls.txt listing, batch.toml screening, the download deadline.

Usage: nice -n 19 .venv/bin/python benchmarks/bench_inputs.py [--lines 100000]

Prints, for a urls.txt of `--lines` URLs (a tenth of them malformed, some with userinfo),
the time and peak Python memory of turning it into entries; for the largest batch.toml
accepted (64 KB), the time to screen it (nesting scan, then tomllib) at the worst shapes;
and how long a download from a server that drips one byte every 50 ms takes to give up
with `[downloads] timeout_seconds = 1` (the total deadline), against the per-read timeout
that let it run for ever before; and the peak memory of a gzip bomb download.
"""

from __future__ import annotations

import argparse
import sys
import time
import tracemalloc
from pathlib import Path

from medianalysed.batchoptions import MAX_BATCH_TOML_BYTES, parse_batch_options
from medianalysed.config import DownloadsConfig
from medianalysed.downloads import Downloader
from medianalysed.errors import AnalysisError
from medianalysed.urllist import url_entries


def urls_figures(lines: int) -> None:
    rows = []
    for n in range(lines):
        if n % 10 == 0:
            rows.append(f"http://bad..host/{n}.jpg")
        elif n % 10 == 1:
            rows.append(f"https://user:pw{n}@cdn.example.com/img/{n}.jpg")
        else:
            rows.append(f"https://cdn.example.com/photos/2025/10/{n:08d}.jpg")
    data = ("\n".join(rows) + "\n").encode()
    started = time.perf_counter()
    entries = url_entries(data, truncated=False)
    elapsed = time.perf_counter() - started
    del entries
    tracemalloc.start()  # a second pass: tracing slows the first one several times
    entries = url_entries(data, truncated=False)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(
        f"urls.txt {lines} lines ({len(data) / 1e6:.1f} MB): {elapsed:.2f} s, "
        f"{lines / elapsed:,.0f} lines/s, peak {peak / 1e6:.0f} MB, {len(entries)} entries"
    )


def toml_figures() -> None:
    shapes = {
        "nested 30000 deep": b"tags = " + b"[" * 30000 + b"]" * 30000,
        "strings full of brackets": b'tags = ["' + b"[" * (MAX_BATCH_TOML_BYTES - 20) + b'"]',
        "many small tags": b"tags = [" + b'"t",' * (MAX_BATCH_TOML_BYTES // 5) + b"]",
    }
    for name, shape in shapes.items():
        data = shape[:MAX_BATCH_TOML_BYTES]
        started = time.perf_counter()
        options = parse_batch_options(data)
        elapsed = (time.perf_counter() - started) * 1000
        print(
            f"batch.toml {len(data) // 1024} KB, {name}: {elapsed:.1f} ms ({options.note[:50]!r})"
        )


def deadline_figure() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.scripted_http import drip, scripted_server

    downloader = Downloader(DownloadsConfig(timeout_seconds=1.0, allow_private_networks=True))
    try:
        with scripted_server({}) as server:
            server.routes["/slow"] = drip(server, 0.05)
            started = time.perf_counter()
            try:
                downloader.fetch(f"{server.base}/slow", Path("/tmp/bench-inputs-drip"))
            except AnalysisError as exc:
                code = exc.code
            elapsed = time.perf_counter() - started
    finally:
        downloader.close()
    print(f"dripping server, timeout_seconds = 1: gave up after {elapsed:.2f} s with {code}")


def bomb_figure() -> None:
    import gzip

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.scripted_http import answer, scripted_server

    bomb = gzip.compress(b"\0" * 200_000_000)
    config = DownloadsConfig(timeout_seconds=30, max_bytes=1_000_000, allow_private_networks=True)
    downloader = Downloader(config)
    try:
        route = answer(200, bomb, {"Content-Encoding": "gzip"})
        with scripted_server({"/bomb": route}) as server:
            tracemalloc.start()
            try:
                downloader.fetch(f"{server.base}/bomb", Path("/tmp/bench-inputs-bomb"))
            except AnalysisError as exc:
                code = exc.code
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
    finally:
        downloader.close()
    print(
        f"gzip bomb ({len(bomb) / 1e3:.0f} KB -> 200 MB), max_bytes 1 MB: {code}, "
        f"peak Python memory {peak / 1e6:.1f} MB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=100_000)
    args = parser.parse_args()
    urls_figures(args.lines)
    toml_figures()
    deadline_figure()
    bomb_figure()


if __name__ == "__main__":
    main()

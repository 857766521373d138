"""Bundle probe: import and exercise every dependency the daemon bundles, print versions.

Built by `packaging/build.sh --probe` into dist/medianalysed-probe. Exits 1 if any
dependency does not work frozen. Runs nothing on the network.
"""

# Each check imports its own modules, so a module missing from the bundle fails that check
# (and says so) instead of the whole probe.
# ruff: noqa: PLC0415

from __future__ import annotations

import io
import math
import multiprocessing
import os
import sys
import tempfile
import threading
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

CHECKS: list[tuple[str, Callable[[Path], str]]] = []


def check(name: str) -> Callable[[Callable[[Path], str]], Callable[[Path], str]]:
    """Register a probe step."""

    def register(function: Callable[[Path], str]) -> Callable[[Path], str]:
        CHECKS.append((name, function))
        return function

    return register


@check("watchdog")
def watchdog_inotify(tmp: Path) -> str:
    """The platform observer must be inotify and deliver a real event."""
    from watchdog.events import FileSystemEvent, FileSystemEventHandler
    from watchdog.observers import Observer

    seen = threading.Event()

    class Handler(FileSystemEventHandler):
        def on_any_event(self, event: FileSystemEvent) -> None:
            seen.set()

    observer = Observer()
    observer.schedule(Handler(), str(tmp))
    observer.start()
    try:
        (tmp / "touched").write_bytes(b"x")
        if not seen.wait(10):
            raise RuntimeError("no event within 10 s")
    finally:
        observer.stop()
        observer.join()
    kind = type(observer).__name__
    if kind != "InotifyObserver":
        raise RuntimeError(f"observer is {kind}, not InotifyObserver")
    return kind


@check("pillow + pillow_heif")
def heif_round_trip(_tmp: Path) -> str:
    """Encode and decode a HEIF image through the bundled libheif."""
    import pillow_heif
    from PIL import Image

    pillow_heif.register_heif_opener()
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 30, 30)).save(buffer, format="HEIF", quality=90)
    buffer.seek(0)
    with Image.open(buffer) as image:
        image.load()
        size = image.size
    return f"HEIF {size} libheif {pillow_heif.libheif_version()}"


@check("pyvips (pyvips-binary's libvips)")
def vips_png(_tmp: Path) -> str:
    """Decode a PNG through the bundled libvips, as vipsdecode does."""
    from PIL import Image

    from medianalysed import vipsdecode

    buffer = io.BytesIO()
    Image.linear_gradient("L").save(buffer, format="PNG")
    buffer.seek(0)
    with Image.open(buffer) as image:
        if not vipsdecode.load(image):
            raise RuntimeError("libvips did not decode the PNG")
        pixels = image.getpixel((0, 255))
    return f"libvips {vipsdecode.libvips_version()} decoded a PNG (pixel {pixels})"


@check("imagehash (scipy.fftpack, pywt)")
def hashes(_tmp: Path) -> str:
    """Perceptual hashes that use scipy's DCT and PyWavelets."""
    import imagehash
    from PIL import Image

    image = Image.linear_gradient("L").resize((64, 64))
    return f"phash {imagehash.phash(image)} whash {imagehash.whash(image)}"


@check("numpy + scipy.fft")
def fft(_tmp: Path) -> str:
    """A transform through scipy's compiled FFT."""
    import numpy as np
    import scipy.fft

    return f"rfft sum {float(np.abs(scipy.fft.rfft(np.arange(8.0))).sum()):.3f}"


def run_in_pool(method: str) -> str:
    """Run one task in a pebble pool whose workers start with `method`."""
    from pebble import ProcessPool

    with ProcessPool(max_workers=1, context=multiprocessing.get_context(method)) as pool:
        result = pool.schedule(math.factorial, args=(20,)).result(timeout=60)
    return f"factorial(20) = {result} in a child"


@check("pebble (spawn)")
def spawned_worker(_tmp: Path) -> str:
    """A worker process started the way a frozen binary must: by re-executing itself."""
    return run_in_pool("spawn")


@check("pebble (forkserver)")
def forkserver_worker(_tmp: Path) -> str:
    """A worker forked from a fork server, itself a re-execution of the binary."""
    return run_in_pool("forkserver")


@check("diskcache")
def cache(tmp: Path) -> str:
    """A diskcache Index on sqlite, as the state store uses it."""
    import diskcache

    index = diskcache.Index(str(tmp / "state"))
    index["k"] = {"v": 1}
    return f"index value {index['k']}"


@check("prometheus_client")
def exposition(_tmp: Path) -> str:
    """Exposition through an isolated registry."""
    from prometheus_client import CollectorRegistry, Counter, generate_latest

    registry = CollectorRegistry()
    Counter("probe_things_total", "Things.", registry=registry).inc()
    return f"{len(generate_latest(registry))} bytes of exposition"


@check("httpx + certifi")
def tls_context(_tmp: Path) -> str:
    """httpx's default TLS context, which loads certifi's bundle (no connection made)."""
    import certifi
    import httpx

    with httpx.Client() as client:
        client.build_request("GET", "https://example.invalid/")
    if not Path(certifi.where()).is_file():
        raise RuntimeError(f"certifi bundle missing at {certifi.where()}")
    return f"CA bundle {Path(certifi.where()).stat().st_size} bytes"


@check("pykka")
def actor(_tmp: Path) -> str:
    """One actor round trip."""
    import pykka

    class Echo(pykka.ThreadingActor):
        def on_receive(self, message: object) -> object:
            return message

    ref = Echo.start()
    try:
        answer = ref.ask("pong", timeout=10)
    finally:
        ref.stop()
    return f"actor answered {answer!r}"


def versions() -> str:
    """Installed versions of the bundled distributions."""
    names = [
        "medianalysed", "pykka", "watchdog", "pillow", "pillow-heif", "imagehash", "numpy",
        "scipy", "PyWavelets", "httpx", "certifi", "diskcache", "prometheus-client", "pebble",
        "pyvips", "pyvips-binary",
    ]  # fmt: skip
    found = []
    for name in names:
        try:
            found.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            found.append(f"{name} (no metadata)")
    return ", ".join(found)


def main() -> int:
    """Run every check; 0 when all pass."""
    frozen = bool(getattr(sys, "frozen", False))
    print(f"frozen={frozen} pid={os.getpid()} ppid={os.getppid()} python={sys.version.split()[0]}")
    print(f"bundle dir {getattr(sys, '_MEIPASS', '-')}")
    print(versions())
    failed = 0
    with tempfile.TemporaryDirectory() as tmp_dir:
        for number, (name, function) in enumerate(CHECKS):
            tmp = Path(tmp_dir) / str(number)
            tmp.mkdir()
            try:
                print(f"ok   {name}: {function(tmp)}")
            except Exception as exc:
                failed += 1
                print(f"FAIL {name}: {type(exc).__name__}: {exc}")
    return 1 if failed else 0


if __name__ == "__main__":
    multiprocessing.freeze_support()
    sys.exit(main())

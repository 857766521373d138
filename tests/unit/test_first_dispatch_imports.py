"""`analyze` dispatches its first image before it imports what only finalising needs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from medianalysed.deferred import DEFERRED_MODULES, DeferredImports
from tests.pngs import write_flat_png

# Like the console script, with the executor's submit noting the modules at the first call.
PROBE = """
import json
import sys

from medianalysed.cli import main

if __name__ == "__main__":
    from medianalysed.executors.local import LocalExecutor

    submit = LocalExecutor.submit
    seen = []

    def noting_submit(self, job):
        if not seen:
            seen.append(sorted(sys.modules))
        return submit(self, job)

    LocalExecutor.submit = noting_submit
    code = main(sys.argv[2:])
    with open(sys.argv[1], "w") as modules:
        json.dump(seen[0], modules)
    sys.exit(code)
"""

# Imported by `run` at its start (`deferred.import_all`), by `analyze` after its dispatch.
NOT_BEFORE_THE_FIRST_DISPATCH = {
    "medianalysed.actors.outboxwriter",
    "medianalysed.dupgroups",
    "medianalysed.gexf",
    "medianalysed.report",
    "medianalysed.reporthtml",
    "medianalysed.metrics",
    "prometheus_client",
    "medianalysed.dupindex",
    "numpy",
    "tqdm",
}


def modules_at_first_submit(tmp_path: Path) -> set[str]:
    photos = tmp_path / "photos"
    photos.mkdir()
    write_flat_png(photos / "a.png", 64, 48)
    config = tmp_path / "config.toml"
    config.write_text(f'[daemon]\nstate_dir = "{tmp_path / "state"}"\n[processing]\nworkers = 1\n')
    script = tmp_path / "probe.py"
    script.write_text(PROBE)
    listing = tmp_path / "modules.json"
    command = [sys.executable, str(script), str(listing), "analyze", "--config", str(config)]
    command += [str(photos), "--out", str(tmp_path / "out")]
    subprocess.run(command, check=True, capture_output=True, timeout=120)
    return set(json.loads(listing.read_text()))


def test_analyze_imports_no_finalising_nor_metrics_before_its_first_dispatch(
    tmp_path: Path,
) -> None:
    loaded = modules_at_first_submit(tmp_path)
    assert "medianalysed.actors.batch" in loaded  # the probe saw the daemon running
    assert loaded & NOT_BEFORE_THE_FIRST_DISPATCH == set()


def test_a_deferred_module_that_cannot_be_imported_is_raised_by_check() -> None:
    imports = DeferredImports(("medianalysed.outcomes", "medianalysed.no_such_module"))
    imports.check()  # not started: nothing failed yet
    imports.start()
    imports.join(timeout=60)
    with pytest.raises(ModuleNotFoundError, match=r"medianalysed\.no_such_module"):
        imports.check()


def test_every_deferred_module_imports() -> None:
    imports = DeferredImports()
    imports.start()
    imports.join(timeout=60)
    imports.check()
    assert set(DEFERRED_MODULES) <= set(sys.modules)

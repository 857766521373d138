"""Every hash, colour and pixel digest of the real corpus photos, against stored values.

Speed work on the analysis must not move a single bit: the values in
`data/analysis_values.json` were written by the implementation before it (0.3.0's analysis,
which 0.4.0's per-image CPU work kept bit-identical), and any change of them is a change of
PIPELINE_ID (models.py). After such a deliberate change, write them again with
`.venv/bin/python -m tests.unit.test_analysis_values --write` and say why in the commit.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from medianalysed.analysis import AnalysisSettings, analyse_file
from medianalysed.errors import AnalysisError
from medianalysed.hashes import (
    FloatArray,
    _lanczos_matrix,
    _lanczos_positions,
    _normalised_rows,
)
from tests.corpora import ESSENTIAL_CORPUS, require_corpora

VALUES = Path(__file__).parent / "data" / "analysis_values.json"
CORPORA = ("exif-samples", "imagededup-testdata")
FIELDS = ("hashes", "colors", "pixel_digest")


def _photos() -> dict[str, Path]:
    corpora = require_corpora()
    roots = {"essential": ESSENTIAL_CORPUS, **{name: corpora / name for name in CORPORA}}
    return {
        f"{label}/{path.relative_to(root)}": path
        for label, root in roots.items()
        for path in sorted(root.rglob("*"))
        if path.is_file() and not path.name.startswith(".")
    }


def _values(path: Path) -> dict[str, Any]:
    try:
        record = analyse_file(path, AnalysisSettings())
    except AnalysisError as exc:
        return {"error": str(exc.code)}
    return {field: record[field] for field in FIELDS}


def test_every_corpus_photo_keeps_its_stored_values() -> None:
    stored = json.loads(VALUES.read_text())
    photos = _photos()
    assert set(stored) == set(photos), "corpus files added or removed: write the values again"
    changed = [key for key, path in photos.items() if _values(path) != stored[key]]
    assert not changed, f"{len(changed)} of {len(photos)} changed, e.g. {changed[:5]}"


def _dense_lanczos(full: int, out: int, block: float, blocks: int) -> FloatArray:
    """The kernel evaluated over every block and masked, as before the support-only version."""
    x, lengths = _lanczos_positions(full, out, block, blocks)
    weights = np.where((x >= -3) & (x < 3), np.sinc(x) * np.sinc(x / 3), 0.0) * lengths[None, :]
    return _normalised_rows(weights)


@pytest.mark.parametrize("seed", range(4))
def test_the_support_only_lanczos_weights_equal_the_dense_ones_bit_for_bit(seed: int) -> None:
    rng = np.random.default_rng(seed)
    for _ in range(200):
        full = int(rng.integers(2, 20000))
        block = float(rng.choice([1, 2, 4, 8, 16, 12.6, 3.5, 24, 48, 96]))
        blocks = max(1, int(np.ceil(full / block)))
        for out in (8, 9, 32):
            expected = _dense_lanczos(full, out, block, blocks)
            assert np.array_equal(_lanczos_matrix(full, out, block, blocks), expected)


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    values = {key: _values(path) for key, path in _photos().items()}
    VALUES.write_text(json.dumps(values, indent=1, sort_keys=True) + "\n")
    print(f"wrote {len(values)} values to {VALUES}")

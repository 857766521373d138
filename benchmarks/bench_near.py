"""Near-duplicate benchmark: recall per planted variant and false matches among distinct photos.

    .bench-venv/bin/python benchmarks/bench_near.py        (or: make bench-near)

Families of real photos and their planted variants come from `near_variants.py` (made once under
benchmarks/data/near/). Every file is hashed the way the daemon hashes it
(`medianalysed.analysis.analyse_file`: the five hashes from the reduced decode), and, where the
libraries are installed, with PDQ (`pdqhash`, Meta's 256-bit hash for this job) and imagededup's
PHash. Then, for each method:

- recall per variant: the share of (original, variant) pairs it links, for every family;
- false matches: the pairs of images of different families it links, over *all* such pairs
  (originals, variants and flips alike: ~4 million pairs), and how many pairs of distinct
  originals among them;
- the HDR twins (the same shot with and without HDR) are shown apart and scored in neither.

Methods: the 0.2.0 rule (pHash <= 6), pHash at every distance 0..20 (a sweep, with the largest
distance that keeps zero false matches), imagededup's PHash at its default distance 10, PDQ at
Meta's suggested 31 and at its own zero-false-match distance, and the daemon's rule of this
version (`medianalysed.nearrule`, default thresholds) — the same code that decides `near` in the
daemon, run vectorised over every pair. This follows how `perception` benchmarks hashers
(transform a base set, hash everything, report recall per transform at a precision bound) with
the bound set to no false match at all.

Writes benchmarks/results/near.json and near.md and prints the tables.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

import near_variants
from medianalysed.analysis import analyse_file
from medianalysed.dupindex import HASH_NAMES
from medianalysed.models import PIPELINE_ID, AnalysisSettings
from medianalysed.nearrule import NearRule
from near_variants import FLIP, TWINS, VARIANTS, Member, group_of

RESULTS_DIR = Path(__file__).resolve().parent / "results"
HASH_CACHE = near_variants.DATA_DIR / "hashes.json"
PHASH_SWEEP = range(21)
PDQ_SUGGESTED = 31
IMAGEDEDUP_DEFAULT = 10

BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]


# --------------------------------------------------------------------------- hashing


def _daemon_hashes(path: str) -> dict[str, str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hashes: dict[str, str] = analyse_file(Path(path), AnalysisSettings())["hashes"]
    return hashes


def _pdq_hash(path: str) -> str | None:
    try:
        import pdqhash
    except ImportError:
        return None
    from PIL import Image, ImageOps

    with Image.open(path) as opened:
        image = ImageOps.exif_transpose(opened).convert("RGB")
    bits, _quality = pdqhash.compute(np.asarray(image))
    return np.packbits(bits.astype(bool)).tobytes().hex()


def _imagededup_hash(path: str) -> str | None:
    try:
        from imagededup.methods import PHash
    except ImportError:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        found = PHash(verbose=False).encode_image(image_file=path)
    return None if found is None else str(found)


def _all_hashes(path: str) -> dict[str, str | None]:
    return {**_daemon_hashes(path), "pdq": _pdq_hash(path), "imagededup": _imagededup_hash(path)}


def hash_members(members: list[Member], workers: int) -> list[dict[str, str | None]]:
    """Every member's hashes, computed in `workers` processes and cached by pipeline and file."""
    cache: dict[str, Any] = {}
    if HASH_CACHE.exists():
        cache = json.loads(HASH_CACHE.read_text())
    if cache.get("pipeline") != PIPELINE_ID:
        cache = {"pipeline": PIPELINE_ID, "files": {}}
    files: dict[str, dict[str, str | None]] = cache["files"]
    missing = [str(m.path) for m in members if str(m.path) not in files]
    if missing:
        print(f"near: hashing {len(missing)} files in {workers} processes", flush=True)
        with ProcessPoolExecutor(workers) as pool:
            for path, found in zip(
                missing, pool.map(_all_hashes, missing, chunksize=8), strict=True
            ):
                files[path] = found
        HASH_CACHE.write_text(json.dumps(cache))
    return [files[str(m.path)] for m in members]


# --------------------------------------------------------------------------- pairs


@dataclass(frozen=True, slots=True)
class Pairs:
    """Index pairs into the member list, with what each pair is."""

    left: IntArray
    right: IntArray


def positive_pairs(members: list[Member]) -> dict[str, Pairs]:
    """Per variant name: (original, variant) of every family."""
    original = {m.family: i for i, m in enumerate(members) if m.variant == "original"}
    by_variant: dict[str, tuple[list[int], list[int]]] = {}
    for index, member in enumerate(members):
        if member.variant in VARIANTS:
            left, right = by_variant.setdefault(member.variant, ([], []))
            left.append(original[member.family])
            right.append(index)
    return {name: Pairs(np.array(a), np.array(b)) for name, (a, b) in by_variant.items()}


def twin_families() -> set[frozenset[str]]:
    return {frozenset(pair) for pair in TWINS}


def negative_pairs(members: list[Member]) -> Pairs:
    """Every pair of members of different families, HDR twins' cross pairs left out."""
    families = sorted({m.family for m in members})
    code = {family: i for i, family in enumerate(families)}
    root = {}
    for family in families:  # a flipped copy's family, for the twin test only
        root[family] = family.removesuffix(" (flipped)")
    fam = np.array([code[m.family] for m in members])
    left, right = np.triu_indices(len(members), k=1)
    keep = fam[left] != fam[right]
    twins = twin_families()
    twin_codes = [
        (code[a], code[b])
        for a in families
        for b in families
        if a < b and frozenset((root[a], root[b])) in twins and root[a] != root[b]
    ]
    for a, b in twin_codes:
        keep &= ~(((fam[left] == a) & (fam[right] == b)) | ((fam[left] == b) & (fam[right] == a)))
    return Pairs(left[keep], right[keep])


def twin_pairs(members: list[Member]) -> Pairs:
    """The HDR twins: original against original."""
    original = {m.family: i for i, m in enumerate(members) if m.variant == "original"}
    found = [(original[a], original[b]) for a, b in TWINS if a in original and b in original]
    return Pairs(np.array([a for a, _ in found]), np.array([b for _, b in found]))


# --------------------------------------------------------------------------- distances


def hash_matrix(
    hashes: list[dict[str, str | None]], name: str
) -> tuple[npt.NDArray[np.uint64], BoolArray]:
    """One hash of every member as rows of 64-bit words, and which members have it."""
    texts = [h.get(name) for h in hashes]
    width = max((len(t) for t in texts if t), default=16)
    words = -(-width // 16)
    out = np.zeros((len(texts), words), dtype=np.uint64)
    present = np.zeros(len(texts), dtype=bool)
    for row, text in enumerate(texts):
        if not text:
            continue
        padded = text.rjust(words * 16, "0")
        out[row] = [int(padded[i * 16 : (i + 1) * 16], 16) for i in range(words)]
        present[row] = True
    return out, present


UNREADABLE = 1 << 20  # the distance of a pair one of whose files a method could not read


def distances(matrix: npt.NDArray[np.uint64], present: BoolArray, pairs: Pairs) -> IntArray:
    """Hamming distance of every pair, in chunks (millions of pairs)."""
    out = np.empty(len(pairs.left), dtype=np.int64)
    step = 1 << 20
    for start in range(0, len(out), step):
        left, right = pairs.left[start : start + step], pairs.right[start : start + step]
        found = np.bitwise_count(matrix[left] ^ matrix[right]).sum(axis=1)
        out[start : start + step] = np.where(present[left] & present[right], found, UNREADABLE)
    return out


@dataclass(frozen=True, slots=True)
class Method:
    """A way to decide `near` from the pairs' distances."""

    name: str
    needs: tuple[str, ...]
    decide: Callable[[dict[str, IntArray]], BoolArray]


def methods(rule: NearRule) -> list[Method]:
    return [
        Method("0.2.0 rule: pHash <= 6", ("phash",), lambda d: d["phash"] <= 6),
        Method(
            f"imagededup PHash <= {IMAGEDEDUP_DEFAULT} (its default)",
            ("imagededup",),
            lambda d: d["imagededup"] <= IMAGEDEDUP_DEFAULT,
        ),
        Method(f"PDQ <= {PDQ_SUGGESTED}", ("pdq",), lambda d: d["pdq"] <= PDQ_SUGGESTED),
        Method("0.3.0 rule (nearrule defaults)", rule.needs, lambda d: rule.decide(d)[0]),
    ]


# --------------------------------------------------------------------------- report


def evaluate(
    members: list[Member], hashes: list[dict[str, str | None]], rule: NearRule
) -> dict[str, Any]:
    positives = positive_pairs(members)
    negatives = negative_pairs(members)
    twins = twin_pairs(members)
    originals = np.array([m.variant == "original" for m in members])
    names = (*HASH_NAMES, "pdq", "imagededup")
    matrices = {name: hash_matrix(hashes, name) for name in names}
    available = {name for name, (_, present) in matrices.items() if present.any()}

    def dist(pairs: Pairs) -> dict[str, IntArray]:
        return {name: distances(*matrices[name], pairs) for name in available}

    pos = {variant: dist(pairs) for variant, pairs in positives.items()}
    neg = dist(negatives)
    twin = dist(twins)
    distinct_originals = originals[negatives.left] & originals[negatives.right]
    report: dict[str, Any] = {
        "families": len({m.family for m in members if m.variant == "original"}),
        "files": len(members),
        "negative_pairs": len(negatives.left),
        "distinct_original_pairs": int(distinct_originals.sum()),
        "methods": {},
    }
    chosen = methods(rule)
    for distance in PHASH_SWEEP:
        chosen.append(
            Method(f"pHash <= {distance}", ("phash",), lambda d, k=distance: d["phash"] <= k)
        )
    if "pdq" in available:
        limit = int(neg["pdq"].min()) - 1
        chosen.append(
            Method(
                f"PDQ <= {limit} (its zero-false-match distance)",
                ("pdq",),
                lambda d, k=limit: d["pdq"] <= k,
            )
        )
    for method in chosen:
        if not set(method.needs) <= available:
            report["methods"][method.name] = None
            continue
        recall = {variant: float(method.decide(d).mean()) for variant, d in pos.items()}
        false = method.decide(neg)
        report["methods"][method.name] = {
            "recall": recall,
            "recall_all": float(np.mean([method.decide(d).mean() for d in pos.values()])),
            "false_matches": int(false.sum()),
            "false_original_pairs": int((false & distinct_originals).sum()),
            "flip_matches": int((false & _flip_pairs(members, negatives)).sum()),
            "hdr_twins_linked": int(method.decide(twin).sum()) if len(twins.left) else 0,
        }
    report["phash_zero_false_limit"] = int(neg["phash"].min()) - 1
    return report


def _flip_pairs(members: list[Member], pairs: Pairs) -> BoolArray:
    """Pairs of an image and a flip of its own photo."""
    family = np.array([m.family.removesuffix(" (flipped)") for m in members])
    flip = np.array([m.variant == FLIP for m in members])
    same = family[pairs.left] == family[pairs.right]
    return same & (flip[pairs.left] | flip[pairs.right])


def markdown(report: dict[str, Any], names: Iterable[str]) -> str:
    names = [n for n in names if report["methods"].get(n)]
    variants = list(VARIANTS)
    head = "| variant | " + " | ".join(names) + " |"
    lines = [head, "|---|" + "---:|" * len(names)]
    for variant in variants:
        cells = [f"{100 * report['methods'][n]['recall'][variant]:.0f} %" for n in names]
        lines.append(f"| {variant} ({group_of(variant)}) | " + " | ".join(cells) + " |")
    cells = [f"**{100 * report['methods'][n]['recall_all']:.1f} %**" for n in names]
    lines.append("| **all planted variants** | " + " | ".join(cells) + " |")
    cells = [
        f"{report['methods'][n]['false_matches']} ({report['methods'][n]['false_original_pairs']})"
        for n in names
    ]
    lines.append(
        f"| false matches of {report['negative_pairs']:,} distinct pairs "
        f"(of them originals) | " + " | ".join(cells) + " |"
    )
    cells = [str(report["methods"][n]["flip_matches"]) for n in names]
    lines.append("| flips linked to their photo (not wanted) | " + " | ".join(cells) + " |")
    cells = [str(report["methods"][n]["hdr_twins_linked"]) for n in names]
    lines.append(f"| HDR twins linked (of {len(TWINS)}, not scored) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def sweep_markdown(report: dict[str, Any]) -> str:
    lines = ["| pHash distance | recall | false matches |", "|---:|---:|---:|"]
    for distance in PHASH_SWEEP:
        found = report["methods"][f"pHash <= {distance}"]
        lines.append(
            f"| {distance} | {100 * found['recall_all']:.1f} % | {found['false_matches']} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    started = time.monotonic()
    members = near_variants.build()
    hashes = hash_members(members, args.workers)
    rule = NearRule.default()
    report = evaluate(members, hashes, rule)
    report["seconds"] = round(time.monotonic() - started, 1)
    report["load_average"] = [round(x, 2) for x in os.getloadavg()]
    main_names = [m.name for m in methods(rule)]
    pdq_best = [n for n in report["methods"] if n.startswith("PDQ <=") and "zero" in n]
    table = markdown(
        report, [*main_names[:1], "pHash <= 10", *main_names[1:3], *pdq_best, main_names[3]]
    )
    text = (
        f"{report['families']} photos, {report['files']} files "
        f"({len(VARIANTS)} planted variants and a flip per photo)\n\n{table}\n\n"
        "pHash alone keeps zero false matches up to distance "
        f"{report['phash_zero_false_limit']}\n\n"
        f"{sweep_markdown(report)}\n"
    )
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / "near.json").write_text(json.dumps(report, indent=1) + "\n")
    (RESULTS_DIR / "near.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

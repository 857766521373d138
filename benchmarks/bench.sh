#!/usr/bin/env bash
# `make bench`: build .bench-venv if missing, fetch the photo set if missing, run the benchmark.
# Arguments are passed to benchmarks/run.py (e.g. --methods floor,engine --repeat 3); then
# bench_near.py runs. `bench.sh near [options]` runs bench_near.py alone.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.bench-venv"
STAMP="$VENV/.installed-stamp"
CONSTRAINTS="$ROOT/benchmarks/constraints.txt"
PYTHON="${PYTHON:-python3}"

pip_install() {
    "$VENV/bin/python" -m pip install --quiet --constraint "$CONSTRAINTS" "$@"
}

if [[ ! -x "$VENV/bin/python" || ! -f "$STAMP" ]]; then
    echo "bench: creating $VENV (torch from local wheels, then imagededup, then medianalysed)"
    "$PYTHON" -m venv "$VENV"
    # torch first and pinned, so nothing later can resolve a multi-GB CUDA build from the index.
    pip_install torch==2.14.1 torchvision==0.29.1
    pip_install imagededup
    # PDQ for bench_near.py: pdqhash ships no wheel, pip builds it (needs g++).
    pip_install pdqhash==0.2.8 || echo "bench: pdqhash did not build; bench_near.py skips PDQ"
    pip_install -e "$ROOT[dask]"
    touch "$STAMP"
elif [[ "$ROOT/pyproject.toml" -nt "$STAMP" || "$CONSTRAINTS" -nt "$STAMP" ]]; then
    echo "bench: project dependencies changed; reinstalling medianalysed into $VENV"
    pip_install -e "$ROOT[dask]"
    touch "$STAMP"
fi

"$VENV/bin/python" "$ROOT/benchmarks/fetch_photos.py"
if [[ "${1:-}" == near ]]; then
    shift
    exec "$VENV/bin/python" "$ROOT/benchmarks/bench_near.py" "$@"
fi
"$VENV/bin/python" "$ROOT/benchmarks/run.py" "$@"
# The local executor against a 2-worker Dask cluster on this machine (benchmarks/results/executor.json).
"$VENV/bin/python" "$ROOT/benchmarks/bench_executor.py"
# Near-duplicate recall and false matches (variants and hashes are cached under data/near/).
exec "$VENV/bin/python" "$ROOT/benchmarks/bench_near.py"

#!/usr/bin/env bash
# Build dist/medianalysed, a one-file PyInstaller binary, from a venv of its own (.build-venv).
#
#   packaging/build.sh            # dist/medianalysed (entry: packaging/entry.py -> medianalysed.cli.main)
#   packaging/build.sh --probe    # dist/medianalysed-probe: imports every bundled dependency and
#                                 # exercises it once; run it to check what the bundle contains
#
# Environment: PYTHON (default python3; needs a shared libpython, e.g. pyenv's default build).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python3}
venv="$root/.build-venv"

if [[ ! -x "$venv/bin/python" ]]; then
    "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet "pyinstaller>=6.10,<7"
# Non-editable, so the bundle holds an installed copy; a local directory is always rebuilt.
"$venv/bin/python" -m pip install --quiet "$root"

cd "$root"
"$venv/bin/pyinstaller" --noconfirm --clean --log-level WARN \
    --distpath "$root/dist" --workpath "$root/build/pyinstaller" \
    packaging/medianalysed.spec -- "$@"

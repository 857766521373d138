#!/usr/bin/env bash
# Build dist/medianalysed/, a one-directory PyInstaller build, from a venv of its own (.build-venv),
# and dist/medianalysed-<version>-<arch>.tar.gz, the one thing to copy to another machine.
#
#   packaging/build.sh            # dist/medianalysed/medianalysed (entry: packaging/entry.py ->
#                                 # medianalysed.cli.main) and the tarball
#   packaging/build.sh --probe    # dist/medianalysed-probe/medianalysed-probe: imports every bundled
#                                 # dependency and exercises it once; run it to check the bundle
#
# Environment: PYTHON (default python3; needs a shared libpython, e.g. pyenv's default build).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python3}
venv="$root/.build-venv"
work="$root/build/pyinstaller"

if [[ ! -x "$venv/bin/python" ]]; then
    "$python" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip install --quiet --no-cache-dir)
"${pip[@]}" --upgrade pip
"${pip[@]}" "pyinstaller>=6.10,<7"
# Non-editable, so the bundle holds an installed copy; a local directory is always rebuilt.
"${pip[@]}" "$root"
# pip builds the wheel in build/ (bdist.*, lib/): not needed once installed.
rm -rf "$root/build/lib" "$root/build/bdist".* "$root"/daemon/*.egg-info

name=medianalysed
[[ " $* " == *" --probe "* ]] && name=medianalysed-probe
cd "$root"
"$venv/bin/pyinstaller" --noconfirm --clean --log-level WARN \
    --distpath "$root/dist" --workpath "$work" \
    packaging/medianalysed.spec -- "$@"
# PyInstaller's work directory (analysis caches, the PKG/PYZ archives) is a copy of what dist/ has.
rm -rf "$work"

# The bundled libraries as Debian ships its own: not executable, no symbols, no RUNPATH into
# the build machine (pyenv's lib-dynload modules point at its lib/; _internal/ has what they
# need). Libraries that auditwheel grafted into a wheel (name-<hash>.so) were rewritten by
# patchelf once already: strip breaks those ("ELF load command ... not page-aligned"), so
# they stay as the wheel ships them. The executable too: its archive is appended to the ELF.
internal="$root/dist/$name/_internal"
find "$internal" -type f -name '*.so*' -print0 | while IFS= read -r -d '' lib; do
    chmod 644 "$lib"
    [[ "$(basename "$lib")" =~ -[0-9a-f]{8}(\.so|-) ]] && continue
    # grep without -q reads all of readelf's output: -q would exit at the first match and,
    # under pipefail, readelf's SIGPIPE would make the test false.
    if readelf -S "$lib" | grep '\.symtab' >/dev/null; then
        strip --strip-unneeded --remove-section=.comment --remove-section=.note "$lib"
    fi
    if [[ "$(patchelf --print-rpath "$lib")" == /* ]]; then
        patchelf --remove-rpath "$lib"
    fi
done

if [[ " $* " != *" --probe "* ]]; then
    "$root/dist/medianalysed/medianalysed" --version
    version=$("$venv/bin/python" -c 'import medianalysed; print(medianalysed.__version__)')
    tarball="$root/dist/medianalysed-$version-$(uname -m).tar.gz"
    tar -C "$root/dist" --owner=0 --group=0 --numeric-owner -czf "$tarball" medianalysed
    echo "built $root/dist/medianalysed/medianalysed and $tarball"
fi

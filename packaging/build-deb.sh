#!/usr/bin/env bash
# Build dist/medianalysed_<version>_<arch>.deb from the one-directory build (make binary) with
# dpkg-deb: /usr/lib/medianalysed/ (the build), /usr/bin/medianalysed (a symlink into it), the
# unit, the sysusers and tmpfiles snippets, /etc/medianalysed/medianalysed.toml (a conffile,
# from config/production.toml), medianalysed(1) generated from the argparse parser, copyright
# and changelog. packaging/debian/ holds the control template and the maintainer scripts.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build="$root/dist/medianalysed"
debian="$root/packaging/debian"
stage="$root/build/deb"
python="$root/.build-venv/bin/python"

if [[ ! -x "$build/medianalysed" || ! -x "$python" ]]; then
    echo "build-deb.sh: $build/medianalysed is missing: run make binary first" >&2
    exit 1
fi
version=$("$python" -c 'import medianalysed; print(medianalysed.__version__)')
arch=$(dpkg --print-architecture)
deb="$root/dist/medianalysed_${version}_${arch}.deb"
# Reproducible dates: the last commit's, else now.
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$root" log -1 --format=%ct 2>/dev/null || date +%s)}

rm -rf "$stage"
install -d "$stage/DEBIAN" "$stage/usr/bin" "$stage/usr/lib" "$stage/lib/systemd/system" \
    "$stage/usr/lib/sysusers.d" "$stage/usr/lib/tmpfiles.d" "$stage/etc/medianalysed" \
    "$stage/usr/share/man/man1" "$stage/usr/share/doc/medianalysed" \
    "$stage/usr/share/lintian/overrides"
cp -a "$build" "$stage/usr/lib/medianalysed"
ln -s ../lib/medianalysed/medianalysed "$stage/usr/bin/medianalysed"
install -m 644 "$root/systemd/medianalysed.service" "$stage/lib/systemd/system/"
install -m 644 "$root/packaging/sysusers.d/medianalysed.conf" "$stage/usr/lib/sysusers.d/"
install -m 644 "$root/packaging/tmpfiles.d/medianalysed.conf" "$stage/usr/lib/tmpfiles.d/"
install -m 644 "$root/config/production.toml" "$stage/etc/medianalysed/medianalysed.toml"
"$python" -m medianalysed.manpage | gzip -9n > "$stage/usr/share/man/man1/medianalysed.1.gz"
install -m 644 "$debian/copyright" "$stage/usr/share/doc/medianalysed/"
install -m 644 "$debian/lintian-overrides" "$stage/usr/share/lintian/overrides/medianalysed"
sed -e "s/@VERSION@/$version/" -e "s/@DATE@/$(date -R -u -d "@$SOURCE_DATE_EPOCH")/" \
    "$debian/changelog.in" | gzip -9n > "$stage/usr/share/doc/medianalysed/changelog.gz"

# Files are root's, readable by all; directories 755 (dpkg-deb --root-owner-group sets owners).
find "$stage" -type d -exec chmod 755 {} +
find "$stage/usr/lib/medianalysed" -type f ! -perm -u+x -exec chmod 644 {} +
find "$stage/usr/lib/medianalysed" -type f -perm -u+x -exec chmod 755 {} +
find "$stage" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

# The newest glibc symbol version any bundled ELF file needs: everything else is bundled.
glibc=$(find "$stage/usr/lib/medianalysed" -type f \( -name '*.so*' -o -perm -u+x \) \
    -exec objdump -T {} + 2>/dev/null | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' \
    | sort -uV | tail -n1)
size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$size/" \
    -e "s/@DEPENDS@/libc6 (>= $glibc), init-system-helpers (>= 1.52)/" \
    "$debian/control.in" > "$stage/DEBIAN/control"
install -m 644 "$debian/conffiles" "$stage/DEBIAN/"
install -m 755 "$debian/postinst" "$debian/prerm" "$debian/postrm" "$stage/DEBIAN/"
(cd "$stage" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z \
    | xargs -0 md5sum > DEBIAN/md5sums)
chmod 644 "$stage/DEBIAN/md5sums"

# gzip: xz takes over a minute on the ~200 MB build; every dpkg reads gzip.
dpkg-deb --root-owner-group -Zgzip -z6 --build "$stage" "$deb"
rm -rf "$stage"
echo "built $deb"

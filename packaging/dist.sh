#!/usr/bin/env bash
# The last step of `make dist`: packs the trees `make install` staged into
#   OUT/kawrap-VERSION-x86_64-linux.tar.gz  from STAGE/kawrap-VERSION-x86_64-linux (PREFIX=)
#   OUT/kawrap_VERSION_amd64.deb            from STAGE/deb (PREFIX=/usr)
# Usage: packaging/dist.sh VERSION STAGE OUT
# The packing adds nothing that varies: every file is owned by root and
# stamped with the last commit's time (SOURCE_DATE_EPOCH, which dpkg-deb
# honours too), so the same build in the same directory gives the same bytes
# (the binaries themselves hold the source directory's path).
set -euo pipefail
[ $# -eq 3 ] || { echo "usage: $0 VERSION STAGE OUT" >&2; exit 2; }
version=$1 stage=$2 out=$3
packaging=$(cd "$(dirname "$0")" && pwd)
workspace=$(dirname "$packaging")
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$workspace" log -1 --format=%ct 2>/dev/null || date +%s)}
export SOURCE_DATE_EPOCH LC_ALL=C
mkdir -p "$out"

# The tarball: files only, no directory entries, so that unpacking it over
# /usr/local (README: tar -C /usr/local --strip-components=1 -xzf …) never
# changes the mode or owner of a directory that is already there, nor
# replaces a symlink to a directory with a directory.
name=kawrap-$version-x86_64-linux
(cd "$stage" && find "$name" -type f | sort) >"$stage/tar-files"
tar --create --no-recursion --format=gnu --owner=0 --group=0 --numeric-owner \
    --mtime="@$SOURCE_DATE_EPOCH" -C "$stage" -T "$stage/tar-files" | gzip -9n >"$out/$name.tar.gz.partial"
mv "$out/$name.tar.gz.partial" "$out/$name.tar.gz"
echo "dist: $out/$name.tar.gz"

# The .deb, as Debian's policy has it: compressed man pages, and the
# licence in /usr/share/doc/kawrap/copyright.
root=$stage/deb
gzip -9n "$root"/usr/share/man/man1/*.1
{
    echo "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/"
    echo "Upstream-Name: kawrap"
    echo
    echo "Files: *"
    echo "Copyright: The kawrap authors"
    echo "License: MIT or Apache-2.0"
    echo
    echo "License: MIT"
    sed -e 's/^/ /' -e 's/^ $/ ./' "$workspace/LICENSE-MIT"
    echo
    echo "License: Apache-2.0"
    echo " On Debian systems, the full text of the Apache License, Version 2.0,"
    echo " is in /usr/share/common-licenses/Apache-2.0."
} >"$root/usr/share/doc/kawrap/copyright"
mkdir -p "$root/DEBIAN"
installed_size=$(du -sk "$root/usr" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@INSTALLED_SIZE@/$installed_size/" \
    "$packaging/debian/control" >"$root/DEBIAN/control"
(cd "$root" && find usr -type f | sort | xargs md5sum) >"$root/DEBIAN/md5sums"
find "$root" -type d -exec chmod 0755 {} +
find "$root/DEBIAN" -type f -exec chmod 0644 {} +
deb=$out/kawrap_${version}_amd64.deb
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb.partial" >/dev/null
mv "$deb.partial" "$deb"
echo "dist: $deb"

#!/usr/bin/env bash
# Fetches one Debian package exactly as shipped, with `apt-get download` (no root
# needed, nothing installed), and unpacks it with `dpkg-deb -x`.
#
# usage: guest-payload/fetch-deb.sh [--depends PREFIX] PACKAGE DIR
#
# Downloads PACKAGE's .deb into DIR and unpacks it into DIR/unpacked (replaced). With
# `--depends PREFIX`, PACKAGE is a metapackage (linux-image-cloud-amd64) and the
# package fetched is its first dependency whose name starts with PREFIX (the versioned
# linux-image-6.1.0-N-cloud-amd64 it points at today). If apt's lists do not know the
# package, they are refreshed once (`apt-get update`, as root or through sudo).
#
# Prints the fetched package's name on stdout; apt's own output goes to
# DIR/fetch.log. Fails with one line on stderr (e.g. offline), leaving DIR/unpacked
# absent, so callers can go on without the package.
set -euo pipefail
prefix=""
if [ "${1:-}" = --depends ]; then
    prefix=$2
    shift 2
fi
if [ $# -ne 2 ]; then
    echo "usage: $0 [--depends PREFIX] PACKAGE DIR" >&2
    exit 2
fi
package=$1
dir=$2
mkdir -p "$dir"
log=$dir/fetch.log
: >"$log"
rm -rf "$dir/unpacked"

# The package to download: PACKAGE itself, or its first dependency named PREFIX*.
resolve() {
    if [ -n "$prefix" ]; then
        apt-cache depends "$package" 2>>"$log" | awk -v prefix="$prefix" \
            '$1 == "Depends:" && index($2, prefix) == 1 { print $2; exit }'
    else
        apt-cache show --no-all-versions "$package" >>"$log" 2>&1 && echo "$package"
    fi
}
wanted=$(resolve || true)
if [ -z "$wanted" ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update -qq >>"$log" 2>&1 || true
    wanted=$(resolve || true)
fi
if [ -z "$wanted" ]; then
    echo "fetch-deb: $package is not in the apt lists (offline? see $log)" >&2
    exit 1
fi
# apt-get download writes <name>_<version>_<arch>.deb into the current directory;
# old downloads of the same package are removed first so the glob below is unique.
rm -f "$dir/${wanted}"_*.deb
if ! (cd "$dir" && apt-get download -q "$wanted") >>"$log" 2>&1; then
    echo "fetch-deb: apt-get download $wanted failed (offline? see $log)" >&2
    exit 1
fi
debs=("$dir/${wanted}"_*.deb)
rm -rf "$dir/unpacked.tmp"
dpkg-deb -x "${debs[0]}" "$dir/unpacked.tmp"
mv "$dir/unpacked.tmp" "$dir/unpacked"
echo "$wanted"

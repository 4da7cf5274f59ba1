#!/usr/bin/env bash
# Builds the Linux guest payload's initramfs: a gzip-compressed newc cpio archive
# (the format the kernel unpacks into its rootfs; Debian's kernel has RD_GZIP).
#
# usage: guest-payload/mkinitramfs.sh <busybox> <rootfs-dir> <output.cpio.gz> [<modules-dir>]
#
# Contents: the directories /bin /sbin /usr/bin /usr/sbin /dev /proc /sys /tmp /etc
# /root; the device node /dev/console (5,1), which the kernel opens for PID 1 before
# /init runs; /bin/busybox (a static binary) with /bin/sh linking to it; and every file
# under <rootfs-dir> (/init, /etc/inittab, ...) with its executable bit. The other
# applet links are made at boot by /init (`busybox --install -s`). With <modules-dir>
# (extract-modules.sh's output: *.ko and `load-order`), its files go to /lib/modules/,
# where /etc/init.d/rcS loads them.
#
# The archive is written here, entry by entry, rather than with cpio(1) from a staging
# tree: a device node in a staging tree needs root, and this way no host tool beyond
# bash, stat and gzip is needed. Every entry belongs to root (0:0) with mtime 0, and
# gzip -n leaves out the name and time, so the same inputs give the same bytes.
# Format: the kernel's Documentation/driver-api/early-userspace/buffer-format.rst.
set -euo pipefail
if [ $# -ne 3 ] && [ $# -ne 4 ]; then
    echo "usage: $0 <busybox> <rootfs-dir> <output.cpio.gz> [<modules-dir>]" >&2
    exit 2
fi
busybox=$1
rootfs=$2
out=$3
modules=${4:-}
[ -f "$busybox" ] || { echo "mkinitramfs: $busybox: no such file" >&2; exit 1; }
[ -d "$rootfs" ] || { echo "mkinitramfs: $rootfs: no such directory" >&2; exit 1; }
if [ -n "$modules" ] && [ ! -f "$modules/load-order" ]; then
    echo "mkinitramfs: $modules/load-order: no such file (see extract-modules.sh)" >&2
    exit 1
fi
if [ -n "$modules" ] && [ -e "$rootfs/lib" ]; then
    echo "mkinitramfs: $rootfs/lib would clash with the modules' /lib" >&2
    exit 1
fi

archive=$(mktemp)
trap 'rm -f "$archive" "$out.tmp"' EXIT
inode=0

# pad COUNT: COUNT zero bytes.
pad() {
    if [ "$1" -gt 0 ]; then head -c "$1" /dev/zero >>"$archive"; fi
}

# entry NAME MODE SIZE NLINK RDEV_MAJOR RDEV_MINOR: one newc header and the name,
# padded to 4 bytes; the caller appends SIZE bytes of data (then data_pad SIZE).
entry() {
    local name=$1 mode=$2 size=$3 nlink=$4 rdev_major=$5 rdev_minor=$6
    local name_size=$((${#name} + 1))
    inode=$((inode + 1))
    # magic, ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor,
    # rdevmajor, rdevminor, namesize, check
    printf '070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X' \
        "$inode" "$mode" 0 0 "$nlink" 0 "$size" 0 0 "$rdev_major" "$rdev_minor" "$name_size" 0 >>"$archive"
    printf '%s\0' "$name" >>"$archive"
    pad $(((4 - (110 + name_size) % 4) % 4))
}

data_pad() {
    pad $(((4 - $1 % 4) % 4))
}

# directory NAME [MODE]
directory() {
    entry "$1" $((0040000 | ${2:-0755})) 0 2 0 0
}

# file NAME SOURCE: a regular file, executable if SOURCE is.
file() {
    local mode=$((0100644)) size
    [ -x "$2" ] && mode=$((0100755))
    size=$(stat -c %s "$2")
    entry "$1" "$mode" "$size" 1 0 0
    cat "$2" >>"$archive"
    data_pad "$size"
}

# symlink NAME TARGET
symlink() {
    entry "$1" $((0120777)) ${#2} 1 0 0
    printf '%s' "$2" >>"$archive"
    data_pad ${#2}
}

# character_device NAME MAJOR MINOR MODE
character_device() {
    entry "$1" $((0020000 | $4)) 0 1 "$2" "$3"
}

for name in bin sbin usr usr/bin usr/sbin dev proc sys etc root; do
    directory "$name"
done
directory tmp $((01777))
character_device dev/console 5 1 $((0600))
file bin/busybox "$busybox"
symlink bin/sh busybox
# The rootfs files, parents first (sorted paths), without the directories made above.
while IFS= read -r path; do
    name=${path#"$rootfs"/}
    if [ -d "$path" ]; then
        case " bin sbin usr usr/bin usr/sbin dev proc sys tmp etc root " in
            *" $name "*) ;;
            *) directory "$name" ;;
        esac
    elif [ -f "$path" ]; then
        file "$name" "$path"
    else
        echo "mkinitramfs: $path: only files and directories are supported" >&2
        exit 1
    fi
done < <(find "$rootfs" -mindepth 1 | LC_ALL=C sort)
if [ -n "$modules" ]; then
    directory lib
    directory lib/modules
    while IFS= read -r path; do
        file "lib/modules/${path##*/}" "$path"
    done < <(find "$modules" -maxdepth 1 -type f | LC_ALL=C sort)
fi
entry 'TRAILER!!!' 0 0 1 0 0

gzip -9 -n <"$archive" >"$out.tmp"
mv "$out.tmp" "$out"
echo "mkinitramfs: wrote $out ($(stat -c %s "$out") bytes, $inode entries)"

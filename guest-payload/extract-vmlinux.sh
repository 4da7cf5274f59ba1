#!/usr/bin/env bash
# Extracts the vmlinux ELF from a bzImage whose payload is LZ4-compressed (Debian 12's
# cloud kernel), for booting the kernel straight from QEMU (`-kernel vmlinux`: QEMU
# boots an ELF with a XEN_ELFNOTE_PHYS32_ENTRY note through PVH) — the `make bench`
# baseline without Basalt.
#
# usage: guest-payload/extract-vmlinux.sh <bzImage> <vmlinux>
#
# Where the payload is (Linux boot protocol, /work/shared/docs/pvh-abi.md §1.1): the
# protected-mode code starts at (setup_sects + 1) * 512 (setup_sects at 0x1f1, 0 means
# 4); payload_offset (u32 at 0x248) counts from there and payload_length (u32 at 0x24c)
# includes a 4-byte trailer (the uncompressed size), which is not LZ4 data. The LZ4
# "legacy" frame (magic 02 21 4c 18) is what `lz4 -d` reads.
set -euo pipefail
if [ $# -ne 2 ]; then
    echo "usage: $0 <bzImage> <vmlinux>" >&2
    exit 2
fi
image=$1
out=$2
# little-endian unsigned integer of WIDTH bytes at OFFSET
read_le() {
    od -An -t "u$2" -j "$1" -N "$2" --endian=little "$image" | tr -d ' '
}
[ "$(od -An -c -j 0x202 -N 4 "$image" | tr -d ' ')" = HdrS ] || { echo "extract-vmlinux: $image is not a bzImage" >&2; exit 1; }
setup_sects=$(read_le $((0x1f1)) 1)
[ "$setup_sects" -ne 0 ] || setup_sects=4
payload_offset=$(read_le $((0x248)) 4)
payload_length=$(read_le $((0x24c)) 4)
start=$(((setup_sects + 1) * 512 + payload_offset))
magic=$(od -An -t x1 -j "$start" -N 4 "$image" | tr -d ' ')
[ "$magic" = 02214c18 ] || { echo "extract-vmlinux: payload at $start is not LZ4 (starts $magic)" >&2; exit 1; }
dd if="$image" bs=1M iflag=skip_bytes,count_bytes skip="$start" count=$((payload_length - 4)) status=none | lz4 -d -c >"$out.tmp"
[ "$(od -An -c -N 4 "$out.tmp" | tr -d ' ')" = '177ELF' ] || { echo "extract-vmlinux: the payload did not unpack to an ELF" >&2; exit 1; }
mv "$out.tmp" "$out"
echo "extract-vmlinux: wrote $out ($(stat -c %s "$out") bytes)"

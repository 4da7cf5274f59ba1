#!/usr/bin/env bash
# Builds build/basalt.img from the hypervisor ELF: a GRUB 2 hybrid image (grub-mkrescue)
# that boots on legacy BIOS and UEFI, from a CD, a hard disk or a USB stick.
#
# usage: image/mkimage.sh <hypervisor.elf> <output.img>
set -euo pipefail
elf=$1
out=$2
here=$(cd "$(dirname "$0")" && pwd)
staging=$(mktemp -d)
trap 'rm -rf "$staging"' EXIT
mkdir -p "$staging/boot/grub"
cp "$elf" "$staging/boot/basalt.elf"
cp "$here/grub/grub.cfg" "$staging/boot/grub/grub.cfg"
# Reproducible-ish: a fixed volume id; grub-mkrescue embeds BIOS (i386-pc) and UEFI
# (x86_64-efi) GRUB, an El Torito catalogue for CDs, and an MBR/GPT for disks.
grub-mkrescue --quiet --locales= --fonts= --themes= -o "$out.tmp" "$staging" -- -volid BASALT >/dev/null 2>&1 || {
    echo "mkimage: grub-mkrescue failed; rerunning with output:" >&2
    grub-mkrescue -o "$out.tmp" "$staging" -- -volid BASALT >&2
    exit 1
}
mv "$out.tmp" "$out"
echo "mkimage: wrote $out ($(stat -c %s "$out") bytes)"

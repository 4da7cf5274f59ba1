#!/usr/bin/env bash
# Builds build/basalt.img from the hypervisor ELF: a GRUB 2 hybrid image (grub-mkrescue)
# that boots on legacy BIOS and UEFI, from a CD, a hard disk or a USB stick.
#
# usage: image/mkimage.sh <hypervisor.elf> <output.img> [FILE:MODULE_NAME ...]
#
# Each FILE:MODULE_NAME (a guest kernel, a domain config) is copied to
# /boot/modules/<basename of FILE> and loaded by both menu entries as a multiboot2
# module named MODULE_NAME — the name the toolstack knows it by (`demo.elf`,
# `demo.cfg`). The modules follow `basalt-symbols`, which stays first. GRUB loads
# everything into RAM at boot, so the appliance never reads the medium again.
set -euo pipefail
if [ $# -lt 2 ]; then
    echo "usage: $0 <hypervisor.elf> <output.img> [FILE:MODULE_NAME ...]" >&2
    exit 2
fi
elf=$1
out=$2
shift 2
here=$(cd "$(dirname "$0")" && pwd)
staging=$(mktemp -d)
trap 'rm -rf "$staging"' EXIT
mkdir -p "$staging/boot/grub"
cp "$elf" "$staging/boot/basalt.elf"

# The module2 lines for the extra files, indented like the menu entries' lines.
module_lines=""
for argument in "$@"; do
    file=${argument%%:*}
    name=${argument#*:}
    if [ "$file" = "$argument" ] || [ -z "$file" ] || [ -z "$name" ]; then
        echo "mkimage: '$argument' is not FILE:MODULE_NAME" >&2
        exit 2
    fi
    case $name in
        *[!A-Za-z0-9._-]*) echo "mkimage: module name '$name' may only use A-Z a-z 0-9 . _ -" >&2; exit 2 ;;
    esac
    [ -f "$file" ] || { echo "mkimage: $file: no such file" >&2; exit 1; }
    base=$(basename "$file")
    case $base in
        *[!A-Za-z0-9._-]*) echo "mkimage: file name '$base' may only use A-Z a-z 0-9 . _ -" >&2; exit 2 ;;
    esac
    mkdir -p "$staging/boot/modules"
    if [ -e "$staging/boot/modules/$base" ]; then
        echo "mkimage: two files named $base" >&2
        exit 2
    fi
    cp "$file" "$staging/boot/modules/$base"
    module_lines+="    module2 /boot/modules/$base $name"$'\n'
done

# grub.cfg marks where the modules go with a `# @GUEST_MODULES@` line in each entry.
grep -q '@GUEST_MODULES@' "$here/grub/grub.cfg" || { echo "mkimage: grub.cfg lacks @GUEST_MODULES@" >&2; exit 1; }
MODULE_LINES=$module_lines awk '/@GUEST_MODULES@/ { printf "%s", ENVIRON["MODULE_LINES"]; next } { print }' \
    "$here/grub/grub.cfg" > "$staging/boot/grub/grub.cfg"

# Reproducible-ish: a fixed volume id; grub-mkrescue embeds BIOS (i386-pc) and UEFI
# (x86_64-efi) GRUB, an El Torito catalogue for CDs, and an MBR/GPT for disks.
grub-mkrescue --quiet --locales= --fonts= --themes= -o "$out.tmp" "$staging" -- -volid BASALT >/dev/null 2>&1 || {
    echo "mkimage: grub-mkrescue failed; rerunning with output:" >&2
    grub-mkrescue -o "$out.tmp" "$staging" -- -volid BASALT >&2
    exit 1
}
mv "$out.tmp" "$out"
echo "mkimage: wrote $out ($(stat -c %s "$out") bytes, $# extra modules)"

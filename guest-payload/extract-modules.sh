#!/usr/bin/env bash
# Copies the kernel modules the Linux guest payload needs out of an unpacked Debian
# kernel package, with every module they depend on, in the order they must be loaded.
#
# usage: guest-payload/extract-modules.sh <unpacked-package> <out-dir> <module>...
#
# <unpacked-package> is the root `dpkg-deb -x` made (it holds lib/modules/<version>/).
# For each <module> (a module name: `xen-blkfront` and `xen_blkfront` are the same):
# - built into the kernel (listed in lib/modules/<version>/modules.builtin): one line
#   says so and nothing is copied — Debian 12's cloud kernel has ext4, jbd2, mbcache,
#   crc16 and crc32c built in;
# - otherwise its .ko, and before it, recursively, the modules named by its `depends=`
#   field (.modinfo). The package has no modules.dep (depmod writes it at install
#   time), so the field is read from the module itself, as depmod does.
#
# <out-dir> is replaced and ends up holding <name>.ko for each module (decompressed if
# the package ships .ko.xz or .ko.zst: busybox insmod loads plain ELF only) and
# `load-order`, one file name a line, dependencies first: the order /etc/init.d/rcS
# loads them in. The files are the package's bytes (or their decompression), so the
# same package gives the same output.
set -euo pipefail
if [ $# -lt 3 ]; then
    echo "usage: $0 <unpacked-package> <out-dir> <module>..." >&2
    exit 2
fi
package=$1
out=$2
shift 2

versions=("$package"/lib/modules/*/)
if [ ${#versions[@]} -ne 1 ] || [ ! -d "${versions[0]}" ]; then
    echo "extract-modules: expected exactly one $package/lib/modules/<version>/" >&2
    exit 1
fi
moddir=${versions[0]%/}

# Module names as the kernel spells them: '-' and '_' are the same.
canonical() {
    printf '%s' "${1//-/_}"
}

# Every module file of the package, by canonical name.
declare -A module_file=()
while IFS= read -r path; do
    base=${path##*/}
    base=${base%.xz}
    base=${base%.zst}
    module_file[$(canonical "${base%.ko}")]=$path
done < <(find "$moddir/kernel" -type f \( -name '*.ko' -o -name '*.ko.xz' -o -name '*.ko.zst' \) | LC_ALL=C sort)

declare -A builtin=()
if [ -f "$moddir/modules.builtin" ]; then
    while IFS= read -r path; do
        base=${path##*/}
        builtin[$(canonical "${base%.ko}")]=1
    done <"$moddir/modules.builtin"
fi

staging=$(mktemp -d)
trap 'rm -rf "$staging"' EXIT

# decompressed SOURCE DESTINATION: the module as an ELF file.
decompressed() {
    case $1 in
        *.ko.xz)
            command -v xz >/dev/null || { echo "extract-modules: $1 needs xz to decompress" >&2; exit 1; }
            xz -dc "$1" >"$2" ;;
        *.ko.zst)
            command -v zstd >/dev/null || { echo "extract-modules: $1 needs zstd to decompress" >&2; exit 1; }
            zstd -qdc "$1" >"$2" ;;
        *) cp "$1" "$2" ;;
    esac
}

# The comma-separated `depends=` value of an ELF module's .modinfo strings (NUL-separated
# key=value pairs; a module without dependencies has an empty `depends=`).
depends_of() {
    tr '\0' '\n' <"$1" | sed -n 's/^depends=//p' | head -n 1
}

declare -A state=() # canonical name -> visiting | done
order=()

# visit NAME REQUIRED_BY: NAME's dependencies, then NAME (post-order).
visit() {
    local name
    name=$(canonical "$1")
    case ${state[$name]:-} in
        done) return ;;
        visiting) echo "extract-modules: dependency cycle through $name" >&2; exit 1 ;;
    esac
    if [ -n "${builtin[$name]:-}" ]; then
        echo "extract-modules: $name is built into the kernel" >&2
        state[$name]=done
        return
    fi
    local source=${module_file[$name]:-}
    if [ -z "$source" ]; then
        echo "extract-modules: no module $name in $moddir (needed by $2)" >&2
        exit 1
    fi
    state[$name]=visiting
    decompressed "$source" "$staging/$name.ko"
    local dependency dependencies
    dependencies=$(depends_of "$staging/$name.ko")
    for dependency in ${dependencies//,/ }; do
        visit "$dependency" "$name"
    done
    state[$name]=done
    order+=("$name.ko")
}

for module in "$@"; do
    visit "$module" "the payload"
done

rm -rf "$out"
mkdir -p "$out"
: >"$out/load-order"
for file in ${order[@]+"${order[@]}"}; do
    cp "$staging/$file" "$out/$file"
    echo "$file" >>"$out/load-order"
done
echo "extract-modules: $(basename "$moddir"): ${order[*]:-no modules} -> $out" >&2

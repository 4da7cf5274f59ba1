//! The loader against the guest users care about: Debian 12's cloud kernel exactly as
//! shipped (`make guest-kernel` fetches it with `apt-get download` into build/guests/).
//! Its bzImage must unpack (LZ4 legacy) into a PVH ELF whose entry note and segments
//! match what the kernel's own headers say.

use basalt_dom0::toolstack::{bzimage, pvh_elf};
use std::path::PathBuf;

fn kernel_path() -> PathBuf {
    if let Some(path) = std::env::var_os("BASALT_GUEST_KERNEL") {
        return PathBuf::from(path);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../build/guests/vmlinuz")
}

#[test]
fn debian_cloud_kernel_unpacks_to_a_pvh_elf() {
    let path = kernel_path();
    let file = std::fs::read(&path)
        .unwrap_or_else(|error| panic!("{}: {error}; run `make guest-kernel` first", path.display()));
    let image = bzimage::parse(&file).expect("a bzImage");
    assert!(image.protocol_version >= 0x020f, "protocol {:#x}", image.protocol_version);
    assert_eq!(image.compression, bzimage::Compression::Lz4, "Debian 12 cloud kernels are LZ4-compressed");
    let elf = image.decompress(256 << 20).expect("the payload unpacks");
    assert_eq!(elf.len(), image.uncompressed_size as usize);
    let kernel = pvh_elf::parse(&elf).expect("a PVH kernel");
    assert!(kernel.is_64_bit);
    assert!(!kernel.relocatable);
    // Linux loads at 16 MiB (CONFIG_PHYSICAL_START) and its PVH entry (pvh_start_xen)
    // lies in the first segment, a little above.
    let (start, end) = kernel.physical_extent();
    assert_eq!(
        start,
        0x0100_0000,
        "segments {:#x?}",
        kernel.segments.iter().map(|s| s.physical_address).collect::<Vec<_>>()
    );
    assert!(end > start && end < 256 << 20, "image ends at {end:#x}");
    let first = &kernel.segments[0];
    assert!(u64::from(kernel.entry) > first.physical_address);
    assert!(u64::from(kernel.entry) < first.physical_address + first.data.len() as u64);
    // The vmlinux's own e_entry (startup_64) is not the PVH entry.
    let elf_entry = u64::from_le_bytes(elf[24..32].try_into().unwrap());
    assert_ne!(elf_entry, u64::from(kernel.entry));
    eprintln!(
        "{}: {} segments, {:#x}..{:#x}, PVH entry {:#x}, {} bytes unpacked",
        path.display(),
        kernel.segments.len(),
        start,
        end,
        kernel.entry,
        elf.len()
    );
}

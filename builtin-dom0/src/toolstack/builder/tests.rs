use super::*;
use crate::toolstack::config::{parse, Limits};
use crate::toolstack::pvh_platform::{ACPI_TABLES_ADDRESS, HVM_START_MAGIC, SPECIAL_PAGES_END};
use alloc::string::{String, ToString};
use alloc::vec;

pub(crate) const MIB: u64 = 1 << 20;
/// Where the synthetic kernel's text starts and enters (Linux: 16 MiB).
pub(crate) const KERNEL_BASE: u64 = 0x0100_0000;
pub(crate) const KERNEL_ENTRY: u32 = 0x0100_0040;

/// A minimal ELF64 PVH kernel: one PT_LOAD of `text` at `paddr` with `memsz` bytes in
/// memory, and a PT_NOTE with Xen's PHYS32_ENTRY note giving `entry`.
pub(crate) fn pvh_elf_at(paddr: u64, text: &[u8], memsz: u64, entry: u32) -> Vec<u8> {
    let mut note = Vec::new();
    note.extend_from_slice(&4u32.to_le_bytes()); // namesz
    note.extend_from_slice(&4u32.to_le_bytes()); // descsz
    note.extend_from_slice(&18u32.to_le_bytes()); // XEN_ELFNOTE_PHYS32_ENTRY
    note.extend_from_slice(b"Xen\0");
    note.extend_from_slice(&entry.to_le_bytes());
    let headers_end = 64 + 2 * 56;
    let note_offset = headers_end as u64;
    let text_offset = note_offset + note.len() as u64;
    let mut file = vec![0u8; 64];
    file[..4].copy_from_slice(b"\x7fELF");
    file[4] = 2; // ELFCLASS64
    file[5] = 1; // little-endian
    file[6] = 1;
    file[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    file[18..20].copy_from_slice(&62u16.to_le_bytes()); // EM_X86_64
    file[24..32].copy_from_slice(&0xffff_ffff_8100_0000u64.to_le_bytes()); // e_entry (not PVH's)
    file[32..40].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
    file[54..56].copy_from_slice(&56u16.to_le_bytes());
    file[56..58].copy_from_slice(&2u16.to_le_bytes());
    let program_header = |kind: u32, offset: u64, paddr: u64, filesz: u64, memsz: u64| {
        let mut header = vec![0u8; 56];
        header[0..4].copy_from_slice(&kind.to_le_bytes());
        header[8..16].copy_from_slice(&offset.to_le_bytes());
        header[16..24].copy_from_slice(&(0xffff_ffff_8000_0000 + paddr).to_le_bytes());
        header[24..32].copy_from_slice(&paddr.to_le_bytes());
        header[32..40].copy_from_slice(&filesz.to_le_bytes());
        header[40..48].copy_from_slice(&memsz.to_le_bytes());
        header
    };
    file.extend(program_header(1, text_offset, paddr, text.len() as u64, memsz));
    file.extend(program_header(4, note_offset, 0, note.len() as u64, note.len() as u64));
    file.extend_from_slice(&note);
    file.extend_from_slice(text);
    file
}

/// The usual synthetic kernel: 256 bytes of text at 16 MiB, 2 MiB in memory.
pub(crate) fn pvh_elf() -> Vec<u8> {
    let text: Vec<u8> = (0..=255u8).collect();
    pvh_elf_at(KERNEL_BASE, &text, 2 * MIB, KERNEL_ENTRY)
}

/// `elf` wrapped as a bzImage with a legacy-LZ4 payload (as Debian's kernels are).
pub(crate) fn bzimage_of(elf: &[u8]) -> Vec<u8> {
    let mut payload = 0x184c_2102u32.to_le_bytes().to_vec();
    let compressed = lz4_flex::block::compress(elf);
    payload.extend_from_slice(&(compressed.len() as u32).to_le_bytes());
    payload.extend_from_slice(&compressed);
    payload.extend_from_slice(&(elf.len() as u32).to_le_bytes());
    let code_start = 4 * 512;
    let mut file = vec![0u8; code_start];
    file[0x1f1] = 3;
    file[0x1fe..0x200].copy_from_slice(&0xaa55u16.to_le_bytes());
    file[0x202..0x206].copy_from_slice(b"HdrS");
    file[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
    file[0x248..0x24c].copy_from_slice(&0u32.to_le_bytes());
    file[0x24c..0x250].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    file.extend_from_slice(&payload);
    file
}

fn config(extra: &str) -> DomainConfig {
    let text = alloc::format!("name='t'\nkernel='vmlinuz'\nmemory=64\nvcpus=2\ncmdline='console=hvc0'\n{extra}");
    parse(&text, &Limits::for_machine(4, 4096)).unwrap().config
}

/// Both steps, for a module that must not build: the message.
fn build_error(config: &DomainConfig, module: &[u8], ramdisk: Option<&[u8]>) -> String {
    let error = unpack_kernel(config, module).and_then(|kernel| build_pvh_image(config, &kernel, ramdisk).map(|_| ()));
    error.unwrap_err().to_string()
}

/// Whether `bytes` lies inside `buffer` (borrowed from it, not a copy).
fn lies_inside(bytes: &[u8], buffer: &[u8]) -> bool {
    buffer.as_ptr_range().contains(&bytes.as_ptr()) && bytes.as_ptr_range().end <= buffer.as_ptr_range().end
}

fn check_invariants(image: &BootImage<'_>) {
    for pair in image.chunks.windows(2) {
        assert!(pair[0].end() <= pair[1].gpa, "{:?} overlaps {:?}", pair[0].kind, pair[1].kind);
    }
    for chunk in &image.chunks {
        assert!(image.backing.iter().any(|range| range.start <= chunk.gpa && chunk.end() <= range.end));
    }
    for pair in image.backing.windows(2) {
        assert!(pair[0].end <= pair[1].start);
    }
}

#[test]
fn builds_a_synthetic_pvh_elf() {
    let module = pvh_elf();
    let ramdisk = vec![0x5a; 3000];
    let kernel = unpack_kernel(&config(""), &module).unwrap();
    assert!(matches!(kernel, KernelElf::Module(bytes) if bytes.as_ptr() == module.as_ptr()));
    let image = build_pvh_image(&config(""), &kernel, Some(&ramdisk)).unwrap();
    check_invariants(&image);
    assert_eq!((image.memory_bytes, image.vcpus, image.entry), (64 * MIB, 2, KERNEL_ENTRY));
    let kinds: Vec<ChunkKind> = image.chunks.iter().map(|chunk| chunk.kind).collect();
    assert_eq!(kinds, [ChunkKind::KernelSegment(0), ChunkKind::StartInfo, ChunkKind::Ramdisk, ChunkKind::AcpiTables]);
    // The kernel's file bytes only (not its 2 MiB memory size), borrowed from the module.
    let text = &image.chunks[0];
    assert_eq!(text.gpa, KERNEL_BASE);
    assert_eq!(&text.bytes[..], &(0..=255u8).collect::<Vec<_>>()[..]);
    assert!(matches!(text.bytes, Cow::Borrowed(_)));
    assert!(lies_inside(&text.bytes, &module));
    assert!(lies_inside(&image.chunks[2].bytes, &ramdisk));
    // The boot block sits above the kernel's memory size, not just its file bytes.
    let start_info = &image.chunks[1];
    assert_eq!(u64::from(image.start_info_gpa), start_info.gpa);
    assert!(start_info.gpa >= KERNEL_BASE + 2 * MIB);
    assert_eq!(&start_info.bytes[..4], &HVM_START_MAGIC.to_le_bytes());
    assert!(start_info.bytes.ends_with(b"console=hvc0\0"));
    assert_eq!(&image.chunks[2].bytes[..], &ramdisk[..]);
    assert_eq!(image.chunks[3].gpa, ACPI_TABLES_ADDRESS);
    // Every range that needs memory, typed.
    let kinds: Vec<(u64, u64, BackingKind)> =
        image.backing.iter().map(|range| (range.start, range.end, range.kind)).collect();
    assert_eq!(kinds[0], (0, 64 * MIB, BackingKind::Ram));
    assert_eq!((kinds[1].0, kinds[1].2), (ACPI_TABLES_ADDRESS, BackingKind::AcpiTables));
    assert_eq!(kinds[2], (SPECIAL_PAGES_START, SPECIAL_PAGES_END, BackingKind::SpecialPages));
    assert_eq!(image.memory_map.len(), 3);
}

#[test]
fn unpacks_a_bzimage_once_and_borrows_its_segments() {
    let image_file = bzimage_of(&pvh_elf());
    let kernel = unpack_kernel(&config(""), &image_file).unwrap();
    let KernelElf::Unpacked(elf) = &kernel else { panic!("not unpacked: {kernel:?}") };
    assert_eq!(elf, &pvh_elf());
    let image = build_pvh_image(&config(""), &kernel, None).unwrap();
    check_invariants(&image);
    assert_eq!(image.entry, KERNEL_ENTRY);
    // The segment is the unpacked ELF's own bytes, not a copy.
    assert!(matches!(image.chunks[0].bytes, Cow::Borrowed(_)));
    assert!(lies_inside(&image.chunks[0].bytes, elf));
    assert_eq!(&image.chunks[0].bytes[..], &(0..=255u8).collect::<Vec<_>>()[..]);
    assert!(!image.chunks.iter().any(|chunk| chunk.kind == ChunkKind::Ramdisk));
    // Only the platform blobs are owned.
    for chunk in &image.chunks {
        let owned = matches!(chunk.bytes, Cow::Owned(_));
        assert_eq!(owned, matches!(chunk.kind, ChunkKind::StartInfo | ChunkKind::AcpiTables), "{:?}", chunk.kind);
    }
}

#[test]
fn an_unpacked_kernel_the_heap_cannot_hold_is_an_error() {
    let error = BuildError::BzImage {
        kernel: "vmlinuz".to_string(),
        error: BzImageError::OutOfMemory { size: 53 * MIB as usize },
    };
    assert_eq!(
        error.to_string(),
        "kernel 'vmlinuz': not enough hypervisor memory to unpack the kernel (53 MiB needed)"
    );
    assert_eq!(
        BuildError::OutOfMemory { needed: 1025 }.to_string(),
        "not enough hypervisor memory for the boot image's chunk list (2 KiB needed)"
    );
}

#[test]
fn refuses_what_does_not_fit_or_is_not_a_kernel() {
    let config = config("");
    let message = |module: &[u8], ramdisk: Option<&[u8]>| build_error(&config, module, ramdisk);
    assert_eq!(
        message(b"hello, world", None),
        "kernel 'vmlinuz' is neither an ELF with a PVH entry note nor a bzImage"
    );
    assert_eq!(message(b"", None), message(b"\x7fEL", None));
    // A kernel above the domain's RAM.
    let high = pvh_elf_at(0x1000_0000, &[0x90; 16], 16, 0x1000_0000);
    assert_eq!(
        message(&high, None),
        "kernel 'vmlinuz' loads at 0x10000000..0x10000010, outside the domain's 64 MiB of RAM"
    );
    // Segment inside RAM but the ramdisk does not fit after the boot block.
    let big_ramdisk = vec![0u8; 63 << 20];
    assert!(message(&pvh_elf(), Some(&big_ramdisk)).starts_with("guest platform: needs"));
    // An ELF without the entry note.
    let mut no_note = pvh_elf();
    let note_type_at = 64 + 2 * 56 + 8;
    no_note[note_type_at] = 17;
    assert_eq!(message(&no_note, None), "kernel 'vmlinuz': no XEN_ELFNOTE_PHYS32_ENTRY note: not a PVH kernel");
    // A bzImage whose payload unpacks to more than the guest's memory.
    let mut huge = bzimage_of(&pvh_elf());
    let length = huge.len();
    huge[length - 4..].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(message(&huge, None).starts_with("kernel 'vmlinuz': kernel unpacks to"));
    // A bzImage holding something that is not an ELF.
    assert_eq!(message(&bzimage_of(b"not an elf at all"), None), "kernel 'vmlinuz': not an ELF file");
}

#[test]
fn truncated_and_mutated_kernels_never_panic() {
    let config = config("");
    let kernels = [pvh_elf(), bzimage_of(&pvh_elf())];
    for kernel in &kernels {
        for length in 0..kernel.len() {
            if let Ok(unpacked) = unpack_kernel(&config, &kernel[..length]) {
                let _ = build_pvh_image(&config, &unpacked, None);
            }
        }
    }
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for round in 0..4000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let mut kernel = kernels[round % 2].clone();
        let at = (state % kernel.len() as u64) as usize;
        kernel[at] = (state >> 32) as u8;
        if let Ok(unpacked) = unpack_kernel(&config, &kernel) {
            if let Ok(image) = build_pvh_image(&config, &unpacked, Some(b"rd")) {
                check_invariants(&image);
            }
        }
    }
}

/// The real Debian cloud kernel, when `make guest-kernel` has fetched it (or
/// `BASALT_GUEST_KERNEL` names a copy, as for tests/debian_kernel.rs).
#[test]
fn debian_kernel_when_present() {
    extern crate std;
    let default = std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../build/guests/vmlinuz"));
    let path = std::env::var_os("BASALT_GUEST_KERNEL").map_or(default, std::path::PathBuf::from);
    let Ok(kernel) = std::fs::read(&path) else {
        std::eprintln!("skipping: {} not present (make guest-kernel)", path.display());
        return;
    };
    let unpacked = unpack_kernel(&config("memory=512"), &kernel).unwrap();
    let image = build_pvh_image(&config("memory=512"), &unpacked, Some(&[1, 2, 3])).unwrap();
    check_invariants(&image);
    assert_eq!(image.chunks[0].gpa, KERNEL_BASE);
    assert!(u64::from(image.entry) > KERNEL_BASE);
    assert!(lies_inside(&image.chunks[0].bytes, unpacked.bytes()));
    // Too little memory for Debian's kernel is a clear error, not a crash.
    assert!(unpack_kernel(&config("memory=16"), &kernel).is_err());
}

//! The loader against the guest users care about: Debian 12's cloud kernel exactly as
//! shipped (`make guest-kernel` fetches it with `apt-get download` into build/guests/).
//! Its bzImage must unpack (LZ4 legacy) into a PVH ELF whose entry note and segments
//! match what the kernel's own headers say, and the builder must lay it out within the
//! appliance's hypervisor heap (63 MiB with 1 GiB of RAM), where the 53 MiB unpacked
//! ELF leaves no room for a second copy of its segments.
//!
//! The heap is modelled by [`BudgetedHeap`], this test binary's global allocator: on a
//! thread that has set a budget, an allocation beyond it fails (null), as the
//! hypervisor's heap does; everywhere else it is the system allocator.

use basalt_dom0::toolstack::builder::{build_pvh_image, unpack_kernel, ChunkKind, KernelElf};
use basalt_dom0::toolstack::config::{self, DomainConfig, Limits};
use basalt_dom0::toolstack::{bzimage, pvh_elf};
use std::alloc::{GlobalAlloc, Layout, System};
use std::borrow::Cow;
use std::cell::Cell;
use std::path::PathBuf;

/// The system allocator, with a per-thread budget (see the file's doc).
struct BudgetedHeap;

thread_local! {
    /// Bytes this thread may hold at once, if limited.
    static BUDGET: Cell<Option<usize>> = const { Cell::new(None) };
    /// Bytes allocated on this thread since the budget was set and not yet freed.
    static IN_USE: Cell<usize> = const { Cell::new(0) };
    /// The most `IN_USE` has been since the budget was set.
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

impl BudgetedHeap {
    /// Counts `size` more bytes against the budget; false if they do not fit.
    fn charge(size: usize) -> bool {
        let Ok(Some(budget)) = BUDGET.try_with(Cell::get) else { return true };
        let in_use = IN_USE.get().saturating_add(size);
        if in_use > budget {
            return false;
        }
        IN_USE.set(in_use);
        PEAK.set(PEAK.get().max(in_use));
        true
    }

    fn refund(size: usize) {
        if let Ok(Some(_)) = BUDGET.try_with(Cell::get) {
            IN_USE.set(IN_USE.get().saturating_sub(size));
        }
    }
}

// SAFETY: every block comes from `System` and goes back to it with the same layout;
// the budget only decides whether to ask (a refusal is a null pointer, which
// `GlobalAlloc::alloc` may return). `realloc` is the default (alloc, copy, dealloc), so
// a growing buffer is charged for both copies, as on a heap that cannot grow in place.
unsafe impl GlobalAlloc for BudgetedHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !BudgetedHeap::charge(layout.size()) {
            return std::ptr::null_mut();
        }
        // SAFETY: the caller's layout has a non-zero size (`GlobalAlloc::alloc`'s contract).
        let block = unsafe { System.alloc(layout) };
        if block.is_null() {
            BudgetedHeap::refund(layout.size());
        }
        block
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        BudgetedHeap::refund(layout.size());
        // SAFETY: `block` was allocated by `alloc` above, i.e. by `System`, with `layout`.
        unsafe { System.dealloc(block, layout) }
    }
}

#[global_allocator]
static HEAP: BudgetedHeap = BudgetedHeap;

/// Runs `work` on this thread with a heap of `budget` bytes; returns its result and
/// the most it held at once.
fn with_heap<T>(budget: usize, work: impl FnOnce() -> T) -> (T, usize) {
    /// Lifts the budget even if `work` panics (the panic must be able to allocate).
    struct Lift;
    impl Drop for Lift {
        fn drop(&mut self) {
            BUDGET.set(None);
        }
    }
    IN_USE.set(0);
    PEAK.set(0);
    BUDGET.set(Some(budget));
    let lift = Lift;
    let result = work();
    drop(lift);
    (result, PEAK.get())
}

/// The appliance's hypervisor heap when the machine has 1 GiB of RAM.
const APPLIANCE_HEAP: usize = 63 << 20;

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

fn config(memory_mib: u32) -> DomainConfig {
    let text = format!("name = 'debian'\nkernel = 'vmlinuz'\nmemory = {memory_mib}\ncmdline = 'console=hvc0'\n");
    config::parse(&text, &Limits::for_machine(4, 4096)).expect("a valid config").config
}

/// `create linux` in the appliance: the builder unpacks the kernel once, borrows its
/// segments from it, and fits the heap; a heap too small for the kernel is an error
/// (with the size it needs), not an allocation panic.
#[test]
fn debian_cloud_kernel_builds_within_the_appliance_heap() {
    let path = kernel_path();
    let file = std::fs::read(&path)
        .unwrap_or_else(|error| panic!("{}: {error}; run `make guest-kernel` first", path.display()));
    let unpacked_size = bzimage::parse(&file).expect("a bzImage").uncompressed_size as usize;
    let config = config(512);
    let ramdisk = [1u8, 2, 3];

    // Facts about the image, gathered under the budget and checked outside it.
    let (built, peak) = with_heap(APPLIANCE_HEAP, || {
        let kernel = unpack_kernel(&config, &file)?;
        let image = build_pvh_image(&config, &kernel, Some(&ramdisk))?;
        let elf = kernel.bytes().as_ptr_range();
        let segments_borrowed = image
            .chunks
            .iter()
            .filter(|chunk| matches!(chunk.kind, ChunkKind::KernelSegment(_)))
            .all(|chunk| matches!(chunk.bytes, Cow::Borrowed(_)) && elf.contains(&chunk.bytes.as_ptr()));
        let segment_bytes: usize = image
            .chunks
            .iter()
            .filter(|chunk| matches!(chunk.kind, ChunkKind::KernelSegment(_)))
            .map(|chunk| chunk.bytes.len())
            .sum();
        Ok::<_, basalt_dom0::toolstack::builder::BuildError>((
            matches!(kernel, KernelElf::Unpacked(_)),
            segments_borrowed,
            segment_bytes,
        ))
    });
    let (unpacked, segments_borrowed, segment_bytes) = built.unwrap_or_else(|error| panic!("{error}"));
    assert!(unpacked && segments_borrowed);
    eprintln!(
        "heap peak {} KiB: unpacked ELF {} KiB, kernel segments {} KiB (borrowed)",
        peak >> 10,
        unpacked_size >> 10,
        segment_bytes >> 10
    );
    // The ELF once, plus the platform blobs and bookkeeping: no second copy.
    assert!(peak < unpacked_size + (1 << 20), "peak {peak} for a {unpacked_size}-byte ELF");
    assert!(unpacked_size + segment_bytes > APPLIANCE_HEAP, "a copy of the segments would not have fit");

    // A heap smaller than the unpacked kernel.
    let (result, _) = with_heap(unpacked_size - (4 << 20), || unpack_kernel(&config, &file).map(|_| ()));
    assert_eq!(
        result.unwrap_err().to_string(),
        format!(
            "kernel 'vmlinuz': not enough hypervisor memory to unpack the kernel ({} MiB needed)",
            unpacked_size.div_ceil(1 << 20)
        )
    );
}

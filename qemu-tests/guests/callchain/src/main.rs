//! `callchain`: the debugger's test guest (qemu-tests/tests/debugger.rs). It prints
//! `CALLCHAIN-READY marker=0x<address>`, the virtual address of [`CALLCHAIN_MARKER`] (a
//! NUL-terminated string, so mdb's `/s` stops at its end), then calls
//! `callchain_a` → `callchain_b` → `callchain_c` and spins in `callchain_c` for good,
//! interrupts off, counting in [`CALLCHAIN_SPINS`].
//!
//! What the debugger is meant to find: a `%rip` inside `callchain_c`, and through the
//! frame-pointer chain (every guest is built with `-C force-frame-pointers=yes`, see
//! the Makefile's GUEST_RUSTFLAGS) the frames `callchain_c`, `callchain_b`,
//! `callchain_a` in that order, named from the ELF's `.symtab`. The runtime runs the
//! guest in long mode on 4-level page tables (identity, 2 MiB pages), so each read goes
//! through a real PML4 → PDPT → PD walk.
//!
//! Why the functions look the way they do: `#[no_mangle]` so the symbol names are the
//! plain ones the test looks for; `#[inline(never)]` and work after each call (on a
//! value `black_box` hides from the optimiser) so every call stays a `call` with a frame
//! of its own rather than being inlined or turned into a tail jump; the spin's exit
//! condition goes through `black_box` too, so the compiler cannot see that
//! `callchain_c` never returns.
#![no_std]
#![no_main]

use core::hint::black_box;
use core::sync::atomic::{AtomicU64, Ordering};

use basalt_guest_rt::println;

basalt_guest_rt::entry!(main);

/// The bytes the test reads back with `<marker>/s`, live and from the core.
#[unsafe(no_mangle)]
static CALLCHAIN_MARKER: [u8; 29] = *b"BASALT-MDB-MARKER-0123456789\0";

/// Rounds of the spin in `callchain_c`: memory that changes while the guest runs.
#[unsafe(no_mangle)]
static CALLCHAIN_SPINS: AtomicU64 = AtomicU64::new(0);

fn main() -> ! {
    println!("CALLCHAIN-READY marker={:#x}", CALLCHAIN_MARKER.as_ptr() as u64);
    let result = callchain_a(black_box(1));
    // Not reached: callchain_c spins for good. Printed only if it ever returns.
    println!("callchain: the chain returned {result}");
    basalt_guest_rt::poweroff()
}

/// The outermost frame of the chain.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn callchain_a(seed: u64) -> u64 {
    let inner = callchain_b(black_box(seed.wrapping_add(1)));
    black_box(inner).wrapping_mul(3)
}

/// The middle frame.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn callchain_b(seed: u64) -> u64 {
    let inner = callchain_c(black_box(seed.wrapping_mul(5)));
    black_box(inner).wrapping_add(7)
}

/// The innermost frame: spins here while `black_box` says to go on (always).
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn callchain_c(seed: u64) -> u64 {
    let mut value = seed;
    while black_box(true) {
        value = black_box(value.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407));
        CALLCHAIN_SPINS.fetch_add(1, Ordering::Relaxed);
    }
    value
}

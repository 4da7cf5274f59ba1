//! Domain 0, built into the Basalt image.
//!
//! In every Xen protocol Basalt's dom0 is domain 0 (`backend-id = 0`), but it is not a
//! guest: its services run as tasks in the hypervisor's own address space (DESIGN.md,
//! decision 1). This crate will own xenstored, the toolstack (domain manager), the
//! backends (console, blkif, netif + virtual switch, fbif/kbdif) and the drivers for
//! the real machine's devices. It talks to the hypervisor only through the narrow
//! interface that image/ implements (decision 8), so everything here is host-testable.
//!
//! So far it holds the toolstack's portable half: xl.cfg configs, PVH kernel images
//! (ELF, bzImage), the guest platform, the boot image and the domain manager.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod backends;
pub mod block;
pub mod drivers;
pub mod pci;
pub mod shared_page;
pub mod toolstack;
pub mod xenstore;

//! Linux awareness: what the debugger knows about a Linux guest beyond raw memory —
//! its vmcoreinfo page (release, symbol addresses, structure offsets; `vmcoreinfo`)
//! and its kernel log ring (`printk`, behind `::msgbuf`).
//!
//! Everything here reads through the target and trusts nothing it reads: layouts come
//! from the guest's own vmcoreinfo (as makedumpfile and crash use it), and every walk
//! is bounded.

pub mod printk;
pub mod vmcoreinfo;

pub use vmcoreinfo::{operating_system, VmcoreInfo};

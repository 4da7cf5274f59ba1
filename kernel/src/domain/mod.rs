//! Domains: the table of guests, each with its memory, vCPUs, console and life-cycle
//! state, and the operations the domain manager (builtin-dom0's toolstack, through
//! image/) performs on them.
//!
//! Identity: domain 0 is the built-in dom0 (it has no vCPUs of its own here: its work
//! runs on the hypervisor's CPUs between guest slices); guests get ids from 1, handed
//! out in increasing order and never reused while a domain with that id still exists,
//! dying ones included.
//!
//! States: a domain is *running* or *blocked* (derived from its vCPUs), *paused* by the
//! operator, *shutdown* (the guest asked: poweroff/reboot/...), *crashed* (it broke a
//! rule: triple fault, memory it does not have, an exit we cannot handle), or *dying*
//! (destroy in progress). Shutdown and crash stop every vCPU and queue a
//! [`LifecycleEvent`] that dom0 turns into the config's on_poweroff/on_reboot/on_crash
//! action.
//!
//! Locking: the domain table lock is held only to look up or insert/remove entries.
//! Each vCPU has a `run` lock (held by the physical CPU running it, for the whole
//! slice) and a small `control` lock (start state, up/down, timer) that other vCPUs and
//! the toolstack take briefly. Nothing is held across a guest run except that vCPU's
//! `run` lock. The Xen-side state (`xen`: shared_info, event delivery, grants) adds
//! its own order: event-channel table, then a domain's `xen` state, then its memory,
//! then a vCPU's local APIC.

pub mod console;
#[cfg(target_os = "none")]
pub mod debug;
#[cfg(target_os = "none")]
pub mod memory;
#[cfg(target_os = "none")]
pub mod run;
#[cfg(target_os = "none")]
mod table;
#[cfg(target_os = "none")]
pub mod xen;

#[cfg(target_os = "none")]
pub use table::*;

/// Why a domain stopped, as the guest said (SHUTDOWN_* of sched.h) or as the hypervisor
/// decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// The guest asked: SHUTDOWN_poweroff (0), reboot (1), suspend (2), crash (3),
    /// watchdog (4), soft_reset (5), or another code.
    Shutdown(u32),
    /// The hypervisor ended it; the text is the one-line reason.
    Crashed(alloc::string::String),
}

/// A domain stopped and dom0 should apply its life-cycle policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LifecycleEvent {
    pub domain: u16,
    pub reason: StopReason,
}

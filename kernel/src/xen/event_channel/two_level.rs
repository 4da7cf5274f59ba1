//! 2-level event delivery: the bit operations that make a port pending in a guest's
//! shared_info and raise its upcall, over [`EventWords`], which the hypervisor
//! implements with atomic bit operations on guest memory.
//!
//! Why a trait: the guest writes the same words concurrently (it clears pending and
//! selector bits, sets and clears mask bits), so each step must be one atomic
//! operation on guest memory, in Xen's order; the order and the decisions are portable
//! and tested here, the atomics are the hypervisor's. [`SharedInfoBits`] is a plain
//! in-memory implementation over a shared_info page image, for tests and fuzzing.
//!
//! State per port: a pending bit (`shared_info.evtchn_pending`), a mask bit
//! (`evtchn_mask`) and the notify vCPU (kept by [`super::EventChannels`]). Per vCPU:
//! the selector word `vcpu_info.evtchn_pending_sel` (bit = port / 64) and the
//! `evtchn_upcall_pending` byte. Ports at or above [`EVTCHN_2L_NR_CHANNELS`] (4096)
//! do not exist in this ABI and are ignored.
//!
//! Specification: xen/common/event_2l.c (`evtchn_2l_set_pending`,
//! `evtchn_2l_clear_pending`, `evtchn_2l_unmask`), xen/arch/x86/domain.c
//! `vcpu_mark_events_pending`; docs/pvh-abi.md §4.1, §4.4, §4.5.

use alloc::{vec, vec::Vec};

use basalt_xen_abi::event_channel::{
    BITS_PER_EVTCHN_WORD, EVTCHN_2L_NR_CHANNELS, SHARED_INFO_EVTCHN_MASK_OFFSET, SHARED_INFO_EVTCHN_PENDING_OFFSET,
    VCPU_INFO_EVTCHN_PENDING_SEL_OFFSET, VCPU_INFO_EVTCHN_UPCALL_PENDING_OFFSET, VCPU_INFO_SIZE, XEN_LEGACY_MAX_VCPUS,
};

/// Atomic bit operations on a domain's event words. Each method is one atomic
/// read-modify-write (or read) of guest memory. Callers pass ports below 4096;
/// implementations must still tolerate any `port`, `vcpu` or `word` without
/// panicking (for example: reads return `false`; a vCPU without a `vcpu_info` reads
/// as "already set", so no upcall is raised for it).
pub trait EventWords {
    /// Sets the pending bit of `port`; returns its previous value.
    fn test_and_set_pending(&mut self, port: u32) -> bool;
    /// Clears the pending bit of `port`.
    fn clear_pending(&mut self, port: u32);
    fn is_pending(&self, port: u32) -> bool;
    fn is_masked(&self, port: u32) -> bool;
    /// Clears the mask bit of `port`; returns its previous value.
    fn test_and_clear_mask(&mut self, port: u32) -> bool;
    /// Sets bit `word` of `vcpu`'s `evtchn_pending_sel`; returns its previous value.
    fn test_and_set_selector(&mut self, vcpu: u32, word: u32) -> bool;
    /// Sets bit 0 of `vcpu`'s `evtchn_upcall_pending` byte; returns its previous value.
    fn test_and_set_upcall_pending(&mut self, vcpu: u32) -> bool;
}

/// What [`set_pending`] did and what the caller must do.
#[must_use = "an upcall that is not raised leaves the guest unaware of the event"]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// The port is outside the 2-level ABI: nothing changed.
    InvalidPort,
    /// The port was already pending: nothing changed, nothing to do.
    AlreadyPending,
    /// Newly pending, but masked, or the vCPU's selector bit or upcall flag was
    /// already set: wake `SCHEDOP_poll` waiters of the port, raise nothing.
    Pending,
    /// Newly pending and `evtchn_upcall_pending` went from 0 to 1: raise the upcall on
    /// the vCPU (pvh-abi.md §4.4) and wake `SCHEDOP_poll` waiters of the port.
    Upcall,
}

impl Delivery {
    /// Whether the caller must raise an upcall on the notify vCPU.
    pub fn raise_upcall(self) -> bool {
        self == Delivery::Upcall
    }

    /// Whether the port became pending (Xen then wakes vCPUs polling on it).
    pub fn newly_pending(self) -> bool {
        matches!(self, Delivery::Pending | Delivery::Upcall)
    }
}

/// An event arrives on `port`, whose notify vCPU is `vcpu` (`evtchn_2l_set_pending`):
/// set the pending bit; if it was clear and the port is unmasked, set the selector
/// bit of the port's word in `vcpu`'s `evtchn_pending_sel`; if that was clear, set
/// `evtchn_upcall_pending` (`vcpu_mark_events_pending`); if that was clear, upcall.
pub fn set_pending(words: &mut dyn EventWords, port: u32, vcpu: u32) -> Delivery {
    if port >= EVTCHN_2L_NR_CHANNELS {
        return Delivery::InvalidPort;
    }
    if words.test_and_set_pending(port) {
        return Delivery::AlreadyPending;
    }
    if !words.is_masked(port)
        && !words.test_and_set_selector(vcpu, port / BITS_PER_EVTCHN_WORD)
        && !words.test_and_set_upcall_pending(vcpu)
    {
        return Delivery::Upcall;
    }
    Delivery::Pending
}

/// EVTCHNOP_unmask of `port`, whose notify vCPU is `vcpu` (`evtchn_2l_unmask`): clear
/// the mask bit; if it was set and the port is pending, set the selector bit, and if
/// that was clear set `evtchn_upcall_pending`. Returns whether to raise an upcall on
/// `vcpu`. Ports outside the ABI change nothing.
pub fn unmask(words: &mut dyn EventWords, port: u32, vcpu: u32) -> bool {
    if port >= EVTCHN_2L_NR_CHANNELS {
        return false;
    }
    words.test_and_clear_mask(port)
        && words.is_pending(port)
        && !words.test_and_set_selector(vcpu, port / BITS_PER_EVTCHN_WORD)
        && !words.test_and_set_upcall_pending(vcpu)
}

/// Clears the pending bit of a closed port (`evtchn_2l_clear_pending`, from
/// `free_evtchn`); see [`super::ClearPending`].
pub fn clear_pending(words: &mut dyn EventWords, port: u32) {
    if port < EVTCHN_2L_NR_CHANNELS {
        words.clear_pending(port);
    }
}

/// Size of the shared_info page.
pub const SHARED_INFO_PAGE_SIZE: usize = 4096;

/// [`EventWords`] over an in-memory image of a shared_info page (pvh-abi.md §4.1):
/// `evtchn_pending` u64[64] at 2048, `evtchn_mask` u64[64] at 2560, and
/// `vcpu_info[32]` at `n * 64` with `evtchn_upcall_pending` (u8) at +0 and
/// `evtchn_pending_sel` (u64) at +8. Only the 32 legacy `vcpu_info` slots exist: for
/// vCPU 32 and above the selector and upcall operations read as already set and write
/// nothing (such vCPUs need a registered `vcpu_info`, which is the hypervisor's).
/// Not atomic: for tests, fuzzing and single-threaded models.
#[derive(Clone)]
pub struct SharedInfoBits {
    page: Vec<u8>,
}

impl Default for SharedInfoBits {
    fn default() -> Self {
        Self::new()
    }
}

impl SharedInfoBits {
    /// A zeroed page: nothing pending, nothing masked.
    pub fn new() -> SharedInfoBits {
        SharedInfoBits { page: vec![0; SHARED_INFO_PAGE_SIZE] }
    }

    /// A copy of `page` (its first 4096 bytes; missing bytes read as zero).
    pub fn from_bytes(page: &[u8]) -> SharedInfoBits {
        let mut bits = SharedInfoBits::new();
        let length = page.len().min(SHARED_INFO_PAGE_SIZE);
        bits.page[..length].copy_from_slice(&page[..length]);
        bits
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.page
    }

    /// What the guest writes: mask or unmask `port` directly.
    pub fn set_masked(&mut self, port: u32, masked: bool) {
        if let Some((byte, bit)) = port_bit(SHARED_INFO_EVTCHN_MASK_OFFSET, port) {
            if masked {
                self.page[byte] |= bit;
            } else {
                self.page[byte] &= !bit;
            }
        }
    }

    /// `evtchn_pending_sel` of `vcpu` (0 for vCPUs without a slot).
    pub fn pending_sel(&self, vcpu: u32) -> u64 {
        vcpu_offset(vcpu, VCPU_INFO_EVTCHN_PENDING_SEL_OFFSET).map_or(0, |offset| self.read_u64(offset))
    }

    /// `evtchn_upcall_pending` of `vcpu` (false for vCPUs without a slot).
    pub fn upcall_pending(&self, vcpu: u32) -> bool {
        vcpu_offset(vcpu, VCPU_INFO_EVTCHN_UPCALL_PENDING_OFFSET).is_some_and(|offset| self.page[offset] & 1 != 0)
    }

    /// What the guest's upcall handler does first: clear `evtchn_upcall_pending`, then
    /// take (read and clear) `evtchn_pending_sel`.
    pub fn take_selector(&mut self, vcpu: u32) -> u64 {
        if let Some(offset) = vcpu_offset(vcpu, VCPU_INFO_EVTCHN_UPCALL_PENDING_OFFSET) {
            self.page[offset] = 0;
        }
        let Some(offset) = vcpu_offset(vcpu, VCPU_INFO_EVTCHN_PENDING_SEL_OFFSET) else {
            return 0;
        };
        let selector = self.read_u64(offset);
        self.page[offset..offset + 8].copy_from_slice(&0u64.to_le_bytes());
        selector
    }

    fn read_u64(&self, offset: usize) -> u64 {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&self.page[offset..offset + 8]);
        u64::from_le_bytes(bytes)
    }

    fn test_bit(&self, array: usize, port: u32) -> bool {
        port_bit(array, port).is_some_and(|(byte, bit)| self.page[byte] & bit != 0)
    }

    /// Sets (or clears) a bit of a port array; returns its previous value. Ports
    /// outside the array read as set when setting and clear when clearing, so no
    /// caller acts on them.
    fn change_bit(&mut self, array: usize, port: u32, set: bool) -> bool {
        let Some((byte, bit)) = port_bit(array, port) else {
            return set;
        };
        let previous = self.page[byte] & bit != 0;
        if set {
            self.page[byte] |= bit;
        } else {
            self.page[byte] &= !bit;
        }
        previous
    }
}

/// The byte and bit mask of `port` in the u64 array at `array` (little-endian words,
/// so bit n of the array is bit n % 8 of byte n / 8).
fn port_bit(array: usize, port: u32) -> Option<(usize, u8)> {
    if port >= EVTCHN_2L_NR_CHANNELS {
        return None;
    }
    Some((array + (port / 8) as usize, 1 << (port % 8)))
}

/// The offset of `field` in `vcpu`'s legacy `vcpu_info`, if it has one.
fn vcpu_offset(vcpu: u32, field: usize) -> Option<usize> {
    (vcpu < XEN_LEGACY_MAX_VCPUS).then(|| vcpu as usize * VCPU_INFO_SIZE + field)
}

impl EventWords for SharedInfoBits {
    fn test_and_set_pending(&mut self, port: u32) -> bool {
        self.change_bit(SHARED_INFO_EVTCHN_PENDING_OFFSET, port, true)
    }

    fn clear_pending(&mut self, port: u32) {
        self.change_bit(SHARED_INFO_EVTCHN_PENDING_OFFSET, port, false);
    }

    fn is_pending(&self, port: u32) -> bool {
        self.test_bit(SHARED_INFO_EVTCHN_PENDING_OFFSET, port)
    }

    fn is_masked(&self, port: u32) -> bool {
        self.test_bit(SHARED_INFO_EVTCHN_MASK_OFFSET, port)
    }

    fn test_and_clear_mask(&mut self, port: u32) -> bool {
        self.change_bit(SHARED_INFO_EVTCHN_MASK_OFFSET, port, false)
    }

    fn test_and_set_selector(&mut self, vcpu: u32, word: u32) -> bool {
        let Some(offset) = vcpu_offset(vcpu, VCPU_INFO_EVTCHN_PENDING_SEL_OFFSET) else {
            return true;
        };
        if word >= BITS_PER_EVTCHN_WORD {
            return true;
        }
        let selector = self.read_u64(offset);
        let bit = 1u64 << word;
        self.page[offset..offset + 8].copy_from_slice(&(selector | bit).to_le_bytes());
        selector & bit != 0
    }

    fn test_and_set_upcall_pending(&mut self, vcpu: u32) -> bool {
        let Some(offset) = vcpu_offset(vcpu, VCPU_INFO_EVTCHN_UPCALL_PENDING_OFFSET) else {
            return true;
        };
        let previous = self.page[offset] & 1 != 0;
        self.page[offset] |= 1;
        previous
    }
}

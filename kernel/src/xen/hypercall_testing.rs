//! A fake domain for exercising [`dispatch`](super::dispatch) off the hypervisor: the
//! host tests (hypercall_tests.rs) and the fuzz body ([`super::fuzz_one`]) share it.
//!
//! Guest memory is one byte vector mapped at the guest-linear address [`BASE`]; any
//! access that does not lie wholly inside it is a [`GuestFault`] without effect, and
//! every successful write is logged so a caller can check where dispatch wrote.
//! Compiled only for hosted builds (`cargo test`, cargo-fuzz), never into the image.

use alloc::{collections::VecDeque, vec, vec::Vec};

use super::{E820Entry, GuestFault, HypercallEnvironment, MemoryPages, VcpuPowerState, VcpuStartContext};
use basalt_xen_abi::errno::EINVAL;

/// Where guest memory starts (a Linux direct-map address, so 32-bit handles cannot
/// reach it).
pub const BASE: u64 = 0xffff_8880_0010_0000;
/// Bytes of guest memory [`FakeDomain::new`] maps.
pub const SIZE: usize = 64 * 1024;

/// A three-vCPU domain (id 5) whose calling vCPU is [`FakeDomain::vcpu`]. Every field
/// is public so a test can set the scene and inspect the effects.
pub struct FakeDomain {
    /// Guest memory, mapped at [`BASE`].
    pub memory: Vec<u8>,
    pub domid: u16,
    /// The calling vCPU.
    pub vcpu: u32,
    pub states: Vec<VcpuPowerState>,
    /// Everything the guest wrote to its console.
    pub console_out: Vec<u8>,
    /// Pending operator input.
    pub console_in: VecDeque<u8>,
    pub map: Vec<E820Entry>,
    pub pages: MemoryPages,
    /// Every accepted VCPUOP_initialise, in order.
    pub initialised: Vec<(u32, VcpuStartContext)>,
    /// VCPUOP_initialise is refused with EINVAL (the backend rejects the context).
    pub refuse_initialise: bool,
    /// The last `set_timer` call: `Some(deadline)`; `None` if there was none.
    pub timer: Option<Option<u64>>,
    pub now: u64,
    pub shutdown_code: Option<u8>,
    /// Every successful write, as (address, length).
    pub writes: Vec<(u64, usize)>,
}

impl FakeDomain {
    /// vCPU 0 up and calling, vCPU 1 uninitialised, vCPU 2 down; a 1 GiB E820 map;
    /// [`SIZE`] bytes of zeroed guest memory.
    pub fn new() -> FakeDomain {
        FakeDomain {
            memory: vec![0; SIZE],
            domid: 5,
            vcpu: 0,
            states: vec![VcpuPowerState::Up, VcpuPowerState::Uninitialised, VcpuPowerState::Down],
            console_out: Vec::new(),
            console_in: VecDeque::new(),
            map: vec![
                E820Entry { addr: 0, size: 0xa_0000, kind: 1 },
                E820Entry { addr: 0xf_c000, size: 0x4000, kind: 2 },
                E820Entry { addr: 0x10_0000, size: 0x3ff0_0000, kind: 1 },
            ],
            pages: MemoryPages { current: 0x3ffa0, maximum: 0x40000, max_gpfn: 0x3ffff },
            initialised: Vec::new(),
            refuse_initialise: false,
            timer: None,
            now: 1_000_000,
            shutdown_code: None,
            writes: Vec::new(),
        }
    }

    /// The indices of `memory` that `[gva, gva + length)` covers, if it is all mapped.
    pub fn range(&self, gva: u64, length: usize) -> Option<core::ops::Range<usize>> {
        let start = usize::try_from(gva.checked_sub(BASE)?).ok()?;
        let end = start.checked_add(length)?;
        (end <= self.memory.len()).then_some(start..end)
    }

    /// The guest address of byte `offset` of guest memory.
    pub fn at(&self, offset: u64) -> u64 {
        BASE + offset
    }

    /// `length` bytes of guest memory from `offset`.
    pub fn bytes(&self, offset: u64, length: usize) -> &[u8] {
        &self.memory[offset as usize..offset as usize + length]
    }

    /// Stores `data` in guest memory at `offset`.
    pub fn put(&mut self, offset: u64, data: &[u8]) {
        self.memory[offset as usize..offset as usize + data.len()].copy_from_slice(data);
    }
}

impl Default for FakeDomain {
    fn default() -> Self {
        Self::new()
    }
}

impl HypercallEnvironment for FakeDomain {
    fn domain_id(&self) -> u16 {
        self.domid
    }
    fn vcpu_id(&self) -> u32 {
        self.vcpu
    }
    fn vcpu_count(&self) -> u32 {
        self.states.len() as u32
    }
    fn copy_from_guest(&mut self, gva: u64, buf: &mut [u8]) -> Result<(), GuestFault> {
        let range = self.range(gva, buf.len()).ok_or(GuestFault)?;
        buf.copy_from_slice(&self.memory[range]);
        Ok(())
    }
    fn copy_to_guest(&mut self, gva: u64, data: &[u8]) -> Result<(), GuestFault> {
        let range = self.range(gva, data.len()).ok_or(GuestFault)?;
        self.memory[range].copy_from_slice(data);
        self.writes.push((gva, data.len()));
        Ok(())
    }
    fn console_write(&mut self, bytes: &[u8]) {
        self.console_out.extend_from_slice(bytes);
    }
    fn console_read(&mut self, buf: &mut [u8]) -> usize {
        let count = buf.len().min(self.console_in.len());
        for (slot, byte) in buf.iter_mut().zip(self.console_in.drain(..count)) {
            *slot = byte;
        }
        count
    }
    fn guest_handle(&self) -> [u8; 16] {
        *b"0123456789abcdef"
    }
    fn memory_pages(&self) -> MemoryPages {
        self.pages
    }
    fn memory_map(&self) -> &[E820Entry] {
        &self.map
    }
    fn vcpu_state(&self, vcpu: u32) -> Option<VcpuPowerState> {
        self.states.get(vcpu as usize).copied()
    }
    fn vcpu_initialise(&mut self, vcpu: u32, context: &VcpuStartContext) -> Result<(), i64> {
        if self.refuse_initialise {
            return Err(EINVAL);
        }
        let state = self.states.get_mut(vcpu as usize).ok_or(EINVAL)?;
        *state = VcpuPowerState::Down;
        self.initialised.push((vcpu, *context));
        Ok(())
    }
    fn vcpu_up(&mut self, vcpu: u32) -> Result<(), i64> {
        *self.states.get_mut(vcpu as usize).ok_or(EINVAL)? = VcpuPowerState::Up;
        Ok(())
    }
    fn vcpu_down(&mut self, vcpu: u32) -> Result<(), i64> {
        *self.states.get_mut(vcpu as usize).ok_or(EINVAL)? = VcpuPowerState::Down;
        Ok(())
    }
    fn set_shutdown_code(&mut self, reason: u8) {
        self.shutdown_code.get_or_insert(reason);
    }
    fn set_timer(&mut self, deadline_ns: Option<u64>) {
        self.timer = Some(deadline_ns);
    }
    fn now_ns(&self) -> u64 {
        self.now
    }
}

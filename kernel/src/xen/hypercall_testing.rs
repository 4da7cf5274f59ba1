//! A fake domain for exercising [`dispatch`](super::dispatch) off the hypervisor: the
//! host tests (hypercall_tests.rs) and the fuzz body ([`super::fuzz_one`]) share it.
//!
//! Guest memory is one byte vector mapped at the guest-linear address [`BASE`]; any
//! access that does not lie wholly inside it is a [`GuestFault`] without effect, and
//! every successful write is logged so a caller can check where dispatch wrote.
//! Compiled only for hosted builds (`cargo test`, cargo-fuzz), never into the image.

use alloc::{collections::VecDeque, vec, vec::Vec};

use super::{
    E820Entry, EventChannelOp, EventChannelReply, GrantTableOp, GrantTableReply, GuestFault, HypercallEnvironment,
    MemoryPages, VcpuPowerState, VcpuStartContext,
};
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
    /// Every event-channel operation the handlers passed on, and the answer given.
    pub event_ops: Vec<EventChannelOp>,
    pub event_reply: Result<EventChannelReply, i64>,
    /// Every grant-table operation passed on; the table has `grant_frames` of 64.
    pub grant_ops: Vec<GrantTableOp>,
    pub grant_frames: u32,
    /// HVM parameters as the guest and toolstack set them.
    pub params: [u64; 64],
    /// (vcpu, vector) of HVMOP_set_evtchn_upcall_vector calls.
    pub upcall_vectors: Vec<(u32, u8)>,
    /// shared_info and vcpu_info placements.
    pub shared_info: Option<u64>,
    pub vcpu_infos: Vec<(u32, u64)>,
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
            event_ops: Vec::new(),
            event_reply: Ok(EventChannelReply::Port(7)),
            grant_ops: Vec::new(),
            grant_frames: 1,
            params: [0; 64],
            upcall_vectors: Vec::new(),
            shared_info: None,
            vcpu_infos: Vec::new(),
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
    fn map_shared_info(&mut self, gfn: u64) -> Result<(), i64> {
        self.shared_info = Some(gfn);
        Ok(())
    }
    fn register_vcpu_info(&mut self, vcpu: u32, gpa: u64) -> Result<(), i64> {
        self.vcpu_infos.push((vcpu, gpa));
        Ok(())
    }
    fn event_channel(&mut self, op: EventChannelOp) -> Result<EventChannelReply, i64> {
        self.event_ops.push(op);
        self.event_reply
    }
    fn grant_table(&mut self, op: GrantTableOp) -> Result<GrantTableReply, i64> {
        self.grant_ops.push(op);
        match op {
            GrantTableOp::QuerySize => Ok(GrantTableReply::Size { frames: self.grant_frames, max_frames: 64 }),
            GrantTableOp::SetVersion(1) | GrantTableOp::GetVersion => Ok(GrantTableReply::Version(1)),
            GrantTableOp::SetVersion(_) => Err(basalt_xen_abi::errno::EINVAL),
            GrantTableOp::SetupTable { frames } => {
                self.grant_frames = self.grant_frames.max(frames);
                Ok(GrantTableReply::Frames((0..u64::from(frames)).map(|frame| 0x1000 + frame).collect()))
            }
        }
    }
    fn hvm_param(&mut self, index: u32) -> Result<u64, i64> {
        Ok(self.params[index as usize % 64])
    }
    fn set_hvm_param(&mut self, index: u32, value: u64) -> Result<(), i64> {
        if index != 0 {
            return Err(basalt_xen_abi::errno::EPERM);
        }
        self.params[0] = value;
        Ok(())
    }
    fn set_upcall_vector(&mut self, vcpu: u32, vector: u8) -> Result<(), i64> {
        self.upcall_vectors.push((vcpu, vector));
        Ok(())
    }
}

pub use fuzz::{fuzz_one, FUZZ_HEADER};

/// The `hypercall_dispatch` fuzz target's body (kept here, beside the fake it drives).
mod fuzz {
    use super::super::*;

    /// Fuzz input layout: a fixed header (zero-padded when the input is shorter), then the
    /// initial contents of guest memory.
    pub const FUZZ_HEADER: usize = 72;

    /// Every errno xen/include/public/errno.h defines except ERESTART, which never reaches a
    /// guest: the values a hypercall may return negated.
    const XEN_ERRNOS: &[i64] = &[
        EPERM,
        ENOENT,
        ESRCH,
        EINTR,
        EIO,
        ENXIO,
        E2BIG,
        ENOEXEC,
        EBADF,
        ECHILD,
        EAGAIN,
        ENOMEM,
        EACCES,
        EFAULT,
        EBUSY,
        EEXIST,
        EXDEV,
        ENODEV,
        ENOTDIR,
        EISDIR,
        EINVAL,
        ENFILE,
        EMFILE,
        ENOSPC,
        EROFS,
        EMLINK,
        EDOM,
        ERANGE,
        EDEADLK,
        ENAMETOOLONG,
        ENOLCK,
        ENOSYS,
        ENOTEMPTY,
        ENODATA,
        ETIME,
        EBADMSG,
        EOVERFLOW,
        EILSEQ,
        ENOTSOCK,
        EMSGSIZE,
        EOPNOTSUPP,
        EADDRINUSE,
        EADDRNOTAVAIL,
        ENOBUFS,
        EISCONN,
        ENOTCONN,
        ETIMEDOUT,
        ECONNREFUSED,
    ];

    /// The fuzz target's body (kernel/fuzz/fuzz_targets/hypercall_dispatch.rs), shared with
    /// a host test: one hypercall, chosen by the input, against a [`testing::FakeDomain`].
    /// Panics (by `assert!`) only when an invariant is broken — for fuzzing and tests.
    ///
    /// Input, after a `FUZZ_HEADER`-byte (72) header, is the start of guest memory. Header:
    /// * `[0]` the number: bit 7 clear picks a row of [`HYPERCALLS`]; set, `bits 5:0` are
    ///   the number, plus 2^32 if bit 6 is set (an implemented number in the low half).
    /// * `[1]` bit 0 32-bit caller; bits 2:1 the calling vCPU (0–2); bit 5 set makes
    ///   bits 4:3 the CPL; bit 6 the backend refuses start contexts; bit 7 no memory map.
    /// * `[2]` pending console input, in units of 3 bytes. `[3]` 2 bits per vCPU: its state.
    /// * `[4..12]` the system time. `[12..66]` six arguments, each a tag byte and a u64:
    ///   tag % 8 is 0–1 small (value % 32), 2–3 inside guest memory, 4 straddling its end,
    ///   5 the low 32 bits, 6 the raw value, 7 just below guest memory.
    /// * `[66..72]` three u16 offsets into guest memory: the u64 stored at each becomes a
    ///   pointer into guest memory (`BASE + value % SIZE`), so structures can hold
    ///   pointers that resolve.
    ///
    /// Checks: no panic; the result is ≥ 0 or a negated errno.h value (`XEN_ERRNOS`); CPL > 0 is
    /// -EPERM and an unknown number -ENOSYS; every write lies inside guest memory; console
    /// output stays within [`CONSOLE_WRITE_MAX`].
    #[doc(hidden)]
    pub fn fuzz_one(data: &[u8]) {
        use testing::{FakeDomain, BASE, SIZE};

        let mut header = [0u8; FUZZ_HEADER];
        let header_length = data.len().min(FUZZ_HEADER);
        header[..header_length].copy_from_slice(&data[..header_length]);
        let image = data.get(FUZZ_HEADER..).unwrap_or(&[]);
        let word = |offset: usize| u64_at(&header, offset);

        let number = match header[0] {
            selector if selector & 0x80 == 0 => HYPERCALLS[usize::from(selector) % HYPERCALLS.len()].number,
            selector => u64::from(selector & 0x3f) | if selector & 0x40 != 0 { 1 << 32 } else { 0 },
        };
        let flags = header[1];
        let width = if flags & 1 != 0 { GuestWidth::Bits32 } else { GuestWidth::Bits64 };
        let cpl = if flags & 0x20 != 0 { (flags >> 3) & 3 } else { 0 };
        let mut args = [0u64; 6];
        for (index, arg) in args.iter_mut().enumerate() {
            let offset = 12 + index * 9;
            let value = word(offset + 1);
            *arg = match header[offset] % 8 {
                0 | 1 => value % 32,
                2 | 3 => BASE + value % SIZE as u64,
                4 => BASE + SIZE as u64 - value % 256,
                5 => value & 0xffff_ffff,
                6 => value,
                _ => BASE - value % 256,
            };
        }

        let mut domain = FakeDomain::new();
        domain.vcpu = u32::from((flags >> 1) & 3) % 3;
        domain.refuse_initialise = flags & 0x40 != 0;
        if flags & 0x80 != 0 {
            domain.map.clear();
        }
        domain.console_in.extend((0..usize::from(header[2]) * 3).map(|index| index as u8));
        for (vcpu, state) in domain.states.iter_mut().enumerate() {
            *state = match (header[3] >> (vcpu * 2)) & 3 {
                0 | 3 => VcpuPowerState::Up,
                1 => VcpuPowerState::Down,
                _ => VcpuPowerState::Uninitialised,
            };
        }
        domain.now = word(4);
        let image_length = image.len().min(SIZE);
        domain.memory[..image_length].copy_from_slice(&image[..image_length]);
        for relocation in 0..3 {
            let offset = usize::from(u16_at(&header, 66 + relocation * 2)) % (SIZE - 7);
            let value = u64_at(&domain.memory, offset);
            domain.memory[offset..offset + 8].copy_from_slice(&(BASE + value % SIZE as u64).to_le_bytes());
        }

        let call = HypercallRequest { number, args, width, cpl };
        let outcome = dispatch(&mut domain, &call);
        if let HypercallOutcome::Return(value) | HypercallOutcome::Yield(value) = outcome {
            assert!(value >= 0 || XEN_ERRNOS.contains(&-value), "{value} is not a Xen errno, from {call:?}");
            // What the guest sees in RAX is the same value at its width.
            let register = return_register_value(value, width);
            assert!(width == GuestWidth::Bits64 || register >> 32 == 0);
        }
        if cpl != 0 {
            assert_eq!(outcome, HypercallOutcome::Return(-EPERM), "{call:?}");
        } else if hypercall_name(number).is_none() {
            assert_eq!(outcome, HypercallOutcome::Return(-ENOSYS), "{call:?}");
        }
        assert_eq!(domain.memory.len(), SIZE);
        for &(address, length) in &domain.writes {
            let inside =
                address >= BASE && address - BASE <= SIZE as u64 && length as u64 <= SIZE as u64 - (address - BASE);
            assert!(inside, "write of {length} bytes at {address:#x} from {call:?}");
        }
        assert!(domain.console_out.len() <= CONSOLE_WRITE_MAX as usize);
    }
}

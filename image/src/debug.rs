//! The debugger inside the appliance: [`LiveTarget`] (basalt-debugger's `Target` over
//! one running domain, read through kernel/'s `domain::debug`), the shell's
//! `mdb DOMAIN` session on it, and `dump-core DOMAIN DISK`, which writes an ELF core
//! of the domain through dom0's block layer.
//!
//! Consistency: each mdb line runs with the domain paused and every vCPU out of its
//! guest slice (`domain::debug::pause_for_inspection`), and the domain runs again
//! afterwards unless it was already paused or stopped. A core is written the same way,
//! under one pause. A domain that goes away mid-session makes commands fail with its
//! id; nothing here panics on it.
//!
//! The "owner" column of `::evtchns` comes from dom0: its xenstore and console
//! service ports (dom0.rs) and the blkif devices' frontend ports (vbd.rs).

use crate::appliance::Appliance;
use alloc::boxed::Box;
use alloc::format;
use alloc::rc::Rc;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use basalt_debugger::core_file::{core_size, write_core, CoreSink};
use basalt_debugger::engine::{Flow, Session};
use basalt_debugger::target::{
    ChannelBinding, DomainSummary, EventChannel, GrantEntry, Registers, Target, TargetError, TargetInfo, TargetKind,
    VcpuRunState, XenstoreNode,
};
use basalt_dom0::backends::blkif::block_disk::{BlockBackendDisk, DEFAULT_TIMEOUT_NS};
use basalt_dom0::backends::blkif::BackendDisk;
use basalt_kernel::domain::debug::{self, DebugError, Inspection, VcpuActivity};
use basalt_kernel::domain::LifeState;
use basalt_kernel::xen::event_channel::Binding;
use basalt_shell::debugger::{DebugControl, DebugSession, DumpCoreRequest, SessionFlow};
use core::cell::RefCell;
use core::fmt;

/// Longest wait for a vCPU to leave its guest slice after the pause.
const PAUSE_TIMEOUT_NS: u64 = 100_000_000;
/// Xenstore nodes a snapshot takes at most (a guest's tree is tens to hundreds).
const MAX_XENSTORE_NODES: usize = 4096;
/// Deepest xenstore path walked.
const MAX_XENSTORE_DEPTH: usize = 16;
/// Bytes written to the disk in one request.
const WRITE_CHUNK: usize = 128 * 1024;

fn life_word(life: LifeState) -> &'static str {
    match life {
        LifeState::Active => "running",
        LifeState::Paused => "paused",
        LifeState::Shutdown => "shutdown",
        LifeState::Crashed => "crashed",
        LifeState::Dying => "dying",
    }
}

fn target_error(error: DebugError) -> TargetError {
    match error {
        DebugError::NoSuchVcpu(vcpu) => TargetError::NoSuchVcpu(vcpu),
        other => TargetError::Damaged(other.to_string()),
    }
}

/// One live domain as the debugger's target.
pub struct LiveTarget {
    domain: u16,
    /// Creation time of the domain opened: a later domain with the same id is not it.
    created_ns: u64,
    kernel: Option<(String, &'static [u8])>,
    /// The pause the current command runs under (what each vCPU was doing before it).
    inspection: Rc<RefCell<Option<Inspection>>>,
    /// The target is being written to a core (one pause for the whole file), not
    /// inspected line by line: `::status` of the core says so.
    for_core: bool,
}

impl LiveTarget {
    /// A target on domain `domain`, which must exist now.
    pub fn open(domain: u16) -> Result<LiveTarget, String> {
        let facts = debug::facts(domain).map_err(|error| error.to_string())?;
        Ok(LiveTarget {
            domain,
            created_ns: facts.created_ns,
            kernel: crate::domains::kernel_module(domain),
            inspection: Rc::new(RefCell::new(None)),
            for_core: false,
        })
    }

    /// The domain's facts, if it is still the domain that was opened.
    fn facts(&self) -> Result<debug::DomainFacts, TargetError> {
        match debug::facts(self.domain) {
            Ok(facts) if facts.created_ns == self.created_ns => Ok(facts),
            _ => Err(TargetError::Damaged(format!("domain {} is gone", self.domain))),
        }
    }

    /// The kernel module's name, if it is an ELF file (a bzImage has no symbols).
    fn symbol_file_name(&self) -> Option<&str> {
        self.kernel.as_ref().filter(|(_, bytes)| bytes.starts_with(b"\x7fELF")).map(|(name, _)| name.as_str())
    }

    fn state_word(&self, facts: &debug::DomainFacts) -> String {
        match self.inspection.borrow().as_ref() {
            Some(inspection) if !inspection.was_stopped && self.for_core => {
                format!("{} (paused while the core was written)", life_word(inspection.life_before))
            }
            Some(inspection) if !inspection.was_stopped => {
                format!("{} (paused by the debugger)", life_word(inspection.life_before))
            }
            _ => life_word(facts.life).to_string(),
        }
    }

    /// Names for the ports dom0 serves: the xenstore and console rings, blkif devices.
    fn port_owner(&self, port: u32, binding: &Binding) -> Option<String> {
        if let Binding::Interdomain { remote_domain: 0, remote_port } = binding {
            if let Some(service) = crate::dom0::port_service(*remote_port) {
                return Some(service.to_string());
            }
        }
        crate::vbd::list(self.domain)
            .into_iter()
            .find(|device| device.event_channel == Some(port))
            .map(|device| format!("blkif {}", device.vdev))
    }
}

impl Target for LiveTarget {
    fn info(&self) -> TargetInfo {
        let (name, vcpus, memory_bytes, state) = match self.facts() {
            Ok(facts) => (facts.name.clone(), facts.vcpus, facts.memory_bytes, self.state_word(&facts)),
            Err(_) => (String::new(), 0, 0, "gone".to_string()),
        };
        TargetInfo {
            kind: TargetKind::Live,
            domain_id: self.domain,
            domain_name: name,
            vcpus,
            memory_bytes,
            state,
            vcpu_snapshot: if self.for_core {
                "domain paused while the core was written; registers as saved at each vCPU's last exit"
            } else {
                "domain paused while each command runs; registers as saved at each vCPU's last exit"
            }
            .to_string(),
            hypervisor: format!("Basalt {}", crate::boot::VERSION),
            host: None,
        }
    }

    fn registers(&self, vcpu: u32) -> Result<Registers, TargetError> {
        self.facts()?;
        let saved = debug::registers(self.domain, vcpu).map_err(target_error)?;
        let activity = self
            .inspection
            .borrow()
            .as_ref()
            .and_then(|inspection| inspection.activity.get(vcpu as usize).copied())
            .unwrap_or(VcpuActivity::Running);
        let state = match activity {
            _ if !saved.up => VcpuRunState::Down,
            VcpuActivity::Down => VcpuRunState::Down,
            VcpuActivity::Blocked => VcpuRunState::Blocked,
            VcpuActivity::Running => VcpuRunState::Running,
        };
        Ok(Registers {
            rax: saved.rax,
            rbx: saved.rbx,
            rcx: saved.rcx,
            rdx: saved.rdx,
            rsi: saved.rsi,
            rdi: saved.rdi,
            rbp: saved.rbp,
            rsp: saved.rsp,
            r8: saved.r8,
            r9: saved.r9,
            r10: saved.r10,
            r11: saved.r11,
            r12: saved.r12,
            r13: saved.r13,
            r14: saved.r14,
            r15: saved.r15,
            rip: saved.rip,
            rflags: saved.rflags,
            cr0: saved.cr0,
            cr2: saved.cr2,
            cr3: saved.cr3,
            cr4: saved.cr4,
            efer: saved.efer,
            cs: saved.cs,
            state,
            ..Registers::default()
        })
    }

    fn read_physical(&self, address: u64, buffer: &mut [u8]) -> Result<(), TargetError> {
        self.facts()?;
        debug::read_physical(self.domain, address, buffer).map_err(|error| match error {
            Ok(first) => {
                TargetError::Unmapped { space: basalt_debugger::target::AddressSpace::Physical, address: first }
            }
            Err(error) => target_error(error),
        })
    }

    fn memory_ranges(&self) -> Vec<(u64, u64)> {
        if self.facts().is_err() {
            return Vec::new();
        }
        debug::memory_ranges(self.domain).unwrap_or_default()
    }

    fn physical_to_machine(&self, address: u64) -> Option<u64> {
        self.facts().ok()?;
        debug::physical_to_machine(self.domain, address)
    }

    fn read_machine(&self, address: u64, buffer: &mut [u8]) -> Result<(), TargetError> {
        self.facts()?;
        let unmapped =
            |at| TargetError::Unmapped { space: basalt_debugger::target::AddressSpace::Machine, address: at };
        // Machine pages are contiguous only within a piece: translate page by page.
        let mut done = 0usize;
        while done < buffer.len() {
            let machine = address.checked_add(done as u64).ok_or_else(|| unmapped(address))?;
            let gpa = debug::machine_to_physical(self.domain, machine).ok_or_else(|| unmapped(machine))?;
            let in_page = (4096 - (machine % 4096)) as usize;
            let count = in_page.min(buffer.len() - done);
            let Some(slice) = buffer.get_mut(done..done + count) else { break };
            debug::read_physical(self.domain, gpa, slice).map_err(|_| unmapped(machine))?;
            done += count;
        }
        Ok(())
    }

    fn event_channels(&self) -> Result<Vec<EventChannel>, TargetError> {
        self.facts()?;
        let channels = debug::event_channels(self.domain).map_err(target_error)?;
        Ok(channels
            .into_iter()
            .map(|channel| EventChannel {
                port: channel.port,
                binding: match channel.binding {
                    Binding::Unbound { remote_domain } => ChannelBinding::Unbound { remote_domain },
                    Binding::Interdomain { remote_domain, remote_port } => {
                        ChannelBinding::Interdomain { remote_domain, remote_port }
                    }
                    Binding::Virq { virq } => ChannelBinding::Virq(virq),
                    Binding::Ipi => ChannelBinding::Ipi,
                    Binding::Free => ChannelBinding::Unknown,
                },
                vcpu: channel.notify_vcpu,
                pending: channel.pending,
                masked: channel.masked,
                owner: self.port_owner(channel.port, &channel.binding),
            })
            .collect())
    }

    fn grants(&self) -> Result<Vec<GrantEntry>, TargetError> {
        self.facts()?;
        Ok(debug::grants(self.domain)
            .map_err(target_error)?
            .into_iter()
            .map(|grant| GrantEntry {
                reference: grant.reference,
                flags: grant.flags,
                domain: grant.domain,
                frame: u64::from(grant.frame),
            })
            .collect())
    }

    fn xenstore(&self) -> Result<Vec<XenstoreNode>, TargetError> {
        self.facts()?;
        Ok(xenstore_snapshot(self.domain))
    }

    fn shared_info(&self) -> Result<Option<Vec<u8>>, TargetError> {
        self.facts()?;
        debug::shared_info(self.domain).map_err(target_error)
    }

    fn kernel_symbol_file(&self) -> Option<&[u8]> {
        self.symbol_file_name()?;
        self.kernel.as_ref().map(|(_, bytes)| *bytes)
    }

    fn domains(&self) -> Result<Vec<DomainSummary>, TargetError> {
        let mut rows = alloc::vec![DomainSummary {
            id: 0,
            name: "Domain-0".to_string(),
            state: "running".to_string(),
            vcpus: basalt_kernel::cpu::percpu::online_count().max(1),
            memory_bytes: 0,
        }];
        rows.extend(debug::all_facts().into_iter().map(|facts| DomainSummary {
            id: facts.id,
            state: life_word(facts.life).to_string(),
            name: facts.name,
            vcpus: facts.vcpus,
            memory_bytes: facts.memory_bytes,
        }));
        Ok(rows)
    }
}

/// The domain's xenstore nodes: its `/local/domain/N` tree and, under dom0's
/// `backend/<type>/N`, the back ends that serve it. Bounded in nodes and depth.
fn xenstore_snapshot(domain: u16) -> Vec<XenstoreNode> {
    crate::dom0::with_store(|store| {
        let mut nodes = Vec::new();
        let mut roots = alloc::vec![format!("/local/domain/{domain}")];
        if let Ok(kinds) = store.directory("/local/domain/0/backend") {
            for kind in kinds {
                roots.push(format!("/local/domain/0/backend/{kind}/{domain}"));
            }
        }
        for root in roots {
            // Depth-first, with an explicit stack so a deep tree cannot exhaust ours.
            let mut stack = alloc::vec![(root, 0usize)];
            while let Some((path, depth)) = stack.pop() {
                if nodes.len() >= MAX_XENSTORE_NODES {
                    return nodes;
                }
                let Ok(value) = store.read(&path) else { continue };
                if depth < MAX_XENSTORE_DEPTH {
                    if let Ok(mut children) = store.directory(&path) {
                        children.sort();
                        for child in children.into_iter().rev() {
                            stack.push((format!("{path}/{child}"), depth + 1));
                        }
                    }
                }
                nodes.push(XenstoreNode { path, value });
            }
        }
        nodes
    })
}

/// Holds a domain still for one command (or one core) and lets it go when dropped.
struct Paused {
    inspection: Rc<RefCell<Option<Inspection>>>,
}

impl Paused {
    fn new(domain: u16, slot: &Rc<RefCell<Option<Inspection>>>) -> Result<Paused, String> {
        let inspection = debug::pause_for_inspection(domain, PAUSE_TIMEOUT_NS).map_err(|error| error.to_string())?;
        *slot.borrow_mut() = Some(inspection);
        Ok(Paused { inspection: slot.clone() })
    }

    /// Keeps the domain paused after this (dump-core --crash).
    fn keep(self) {
        self.inspection.borrow_mut().take();
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        if let Some(inspection) = self.inspection.borrow_mut().take() {
            if let Err(error) = debug::end_inspection(&inspection) {
                basalt_kernel::warn!("debugger: domain {}: {error}", inspection.domain);
            }
        }
    }
}

/// `mdb DOMAIN`: one engine session on a live domain.
struct LiveSession {
    domain: u16,
    session: Session<'static>,
    inspection: Rc<RefCell<Option<Inspection>>>,
}

impl DebugSession for LiveSession {
    fn execute(&mut self, line: &str, out: &mut dyn fmt::Write) -> SessionFlow {
        if line.trim() == "$q" {
            return SessionFlow::Quit;
        }
        let paused = match Paused::new(self.domain, &self.inspection) {
            Ok(paused) => paused,
            Err(error) => {
                let _ = writeln!(out, "error: {error}");
                return SessionFlow::Continue;
            }
        };
        let flow = self.session.execute(line, out);
        drop(paused);
        match flow {
            Flow::Quit => SessionFlow::Quit,
            Flow::Continue => SessionFlow::Continue,
        }
    }
}

/// Writes a core through a block device: byte offsets onto whole logical blocks,
/// appended bytes gathered into [`WRITE_CHUNK`]-sized writes, and any write that
/// starts or ends inside a block merged with what the disk holds there.
///
/// The storage lock is taken for each chunk only, and dom0's services run between
/// chunks (at most every [`SERVICE_INTERVAL_NS`]): a dump of a large domain takes
/// seconds, and the other domains' consoles, xenstore and disks must not wait for it
/// (dom0's services otherwise run only while the shell waits for a key).
struct DiskSink<'a> {
    disk_name: &'a str,
    block: u64,
    capacity: u64,
    /// Disk offset of `pending[0]` (block aligned).
    pending_offset: u64,
    pending: Vec<u8>,
    last_service_ns: u64,
}

/// How often a long dump lets dom0's services run.
const SERVICE_INTERVAL_NS: u64 = 20_000_000;

impl<'a> DiskSink<'a> {
    fn new(disk_name: &'a str, block: u64, capacity: u64) -> DiskSink<'a> {
        DiskSink {
            disk_name,
            block: block.max(512),
            capacity,
            pending_offset: 0,
            pending: Vec::new(),
            last_service_ns: basalt_kernel::cpu::time::uptime_ns(),
        }
    }

    /// Runs `f` on the disk, holding the storage lock for that call only.
    fn with_disk<R>(&self, f: impl FnOnce(&mut BlockBackendDisk<'_>) -> Result<R, String>) -> Result<R, String> {
        let now = basalt_kernel::cpu::time::uptime_ns;
        crate::storage::with_disk(self.disk_name, |device| {
            let mut disk = BlockBackendDisk::new(device, &now, DEFAULT_TIMEOUT_NS);
            f(&mut disk)
        })
        .and_then(|result| result)
    }

    fn write_blocks(&mut self, offset: u64, data: &[u8]) -> Result<(), String> {
        self.with_disk(|disk| disk.write(offset / 512, data).map_err(|_| format!("write error at byte {offset}")))?;
        let now = basalt_kernel::cpu::time::uptime_ns();
        if now.saturating_sub(self.last_service_ns) >= SERVICE_INTERVAL_NS {
            crate::dom0::service();
            self.last_service_ns = now;
        }
        Ok(())
    }

    fn read_block(&mut self, offset: u64) -> Result<Vec<u8>, String> {
        let mut block = alloc::vec![0u8; self.block as usize];
        self.with_disk(|disk| disk.read(offset / 512, &mut block).map_err(|_| format!("read error at byte {offset}")))?;
        Ok(block)
    }

    /// Writes out whole blocks of `pending` (all of it with `everything`, the last
    /// partial block merged with the disk's contents).
    fn drain(&mut self, everything: bool) -> Result<(), String> {
        let whole = self.pending.len() as u64 / self.block * self.block;
        let mut written = 0u64;
        let pending = core::mem::take(&mut self.pending);
        while written < whole {
            let count = (whole - written).min(WRITE_CHUNK as u64);
            let start = written as usize;
            let Some(data) = pending.get(start..start + count as usize) else { break };
            let offset = self.pending_offset + written;
            if let Err(error) = self.write_blocks(offset, data) {
                self.pending = pending;
                return Err(error);
            }
            written += count;
        }
        self.pending = pending;
        self.pending.drain(..written as usize);
        self.pending_offset += written;
        if everything && !self.pending.is_empty() {
            let mut block = self.read_block(self.pending_offset)?;
            let tail = self.pending.len();
            block.get_mut(..tail).ok_or("internal: tail longer than a block")?.copy_from_slice(&self.pending);
            let offset = self.pending_offset;
            self.write_blocks(offset, &block)?;
            self.pending.clear();
        }
        Ok(())
    }

    fn write_at(&mut self, offset: u64, bytes: &[u8]) -> Result<(), String> {
        let end = offset.checked_add(bytes.len() as u64).ok_or("offset overflows")?;
        if end > self.capacity {
            return Err(format!("the core does not fit: byte {end} is past the disk's end ({})", self.capacity));
        }
        if self.pending.is_empty() || offset != self.pending_offset + self.pending.len() as u64 {
            self.drain(true)?;
            let start = offset / self.block * self.block;
            self.pending_offset = start;
            if start != offset {
                let block = self.read_block(start)?;
                self.pending.extend_from_slice(block.get(..(offset - start) as usize).unwrap_or(&[]));
            }
        }
        self.pending.extend_from_slice(bytes);
        if self.pending.len() >= WRITE_CHUNK {
            self.drain(false)?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), String> {
        self.drain(true)?;
        self.with_disk(|disk| disk.flush().map_err(|_| "flush failed".to_string()))
    }
}

impl CoreSink for DiskSink<'_> {
    fn write_at(&mut self, offset: u64, bytes: &[u8]) -> Result<(), String> {
        DiskSink::write_at(self, offset, bytes)
    }
}

/// Prints `dump-core: N MiB of T MiB` about every tenth of the way.
struct Progress<'a> {
    out: &'a mut dyn fmt::Write,
    next_tenth: u64,
}

impl Progress<'_> {
    fn report(&mut self, done: u64, total: u64) {
        if total == 0 {
            return;
        }
        let tenths = done.saturating_mul(10) / total;
        if tenths >= self.next_tenth && done < total {
            let _ = writeln!(self.out, "dump-core: {} MiB of {} MiB", done >> 20, total.div_ceil(1 << 20));
            self.next_tenth = tenths + 1;
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

impl DebugControl for Appliance {
    fn open_debugger(&mut self, domain: &str) -> Result<Box<dyn DebugSession>, String> {
        let id = crate::domains::resolve_guest(domain, "debug")?;
        let target = LiveTarget::open(id)?;
        let inspection = target.inspection.clone();
        let facts = debug::facts(id).map_err(|error| error.to_string())?;
        let kernel_file = target.symbol_file_name().map(String::from);
        let kernel_name = target.kernel.as_ref().map(|(name, _)| name.clone());
        let session = Session::new(Box::new(target));
        // Symbols are loaded now, with the domain held still (kallsyms are read out of
        // guest memory), so the banner says what the dcmds will have.
        let symbols = {
            let _paused = Paused::new(id, &inspection)?;
            let table = session.debuggee().symbols();
            match (&kernel_file, &kernel_name) {
                _ if table.is_empty() => match &kernel_name {
                    Some(name) => format!("no symbols (none in {name}, no kallsyms found)"),
                    None => "no symbols".to_string(),
                },
                (Some(file), _) if table.source.starts_with("ELF") => format!("{} symbols from {file}", table.len()),
                _ => format!("{} symbols ({})", table.len(), table.source),
            }
        };
        // The trait gives no output here: the banner goes straight to the line the
        // shell is on, before its first `> ` prompt.
        basalt_kernel::console::serial::write_bytes(
            format!(
                "Loading live domain {id} ({}): {} vCPU{}, {} MiB, {symbols}\r\n",
                facts.name,
                facts.vcpus,
                if facts.vcpus == 1 { "" } else { "s" },
                facts.memory_bytes >> 20
            )
            .as_bytes(),
        );
        Ok(Box::new(LiveSession { domain: id, session, inspection }))
    }

    fn dump_core(&mut self, request: &DumpCoreRequest, out: &mut dyn fmt::Write) -> Result<(), String> {
        let id = crate::domains::resolve_guest(&request.domain, "dump the core of")?;
        let disk_name = request.disk.as_str();
        let info = crate::storage::with_storage(|storage| storage.disks.info(disk_name))
            .flatten()
            .ok_or_else(|| format!("no disk named {disk_name} (see `disks`)"))?;
        if info.read_only {
            return Err(format!("{disk_name} is read-only"));
        }
        if let Some(user) = crate::vbd::in_use(disk_name) {
            return Err(user);
        }
        let target = LiveTarget { for_core: true, ..LiveTarget::open(id)? };
        let slot = target.inspection.clone();
        let paused = Paused::new(id, &slot)?;
        let size = core_size(&target).map_err(|error| error.to_string())?;
        if size > info.capacity_bytes() {
            return Err(format!(
                "{disk_name} is too small: the core needs {size} bytes ({} MiB), the disk has {}",
                size.div_ceil(1 << 20),
                info.capacity_bytes()
            ));
        }
        let mut sink = DiskSink::new(disk_name, u64::from(info.logical_block_size), info.capacity_bytes());
        let mut progress = Progress { out: &mut *out, next_tenth: 1 };
        let written = write_core(&target, &mut sink, &mut |done, total| progress.report(done, total))
            .map_err(|error| error.to_string())
            .and_then(|summary| sink.finish().map(|()| summary))
            .map_err(|error| format!("{disk_name}: {error}"))?;
        let _ =
            writeln!(out, "dump-core: wrote {} bytes to {disk_name}, sha256 {}", written.bytes, hex(&written.sha256));
        if request.crash {
            paused.keep();
            debug::mark_crashed(id, "crashed by the operator after dump-core --crash")
                .map_err(|error| error.to_string())?;
            let _ = writeln!(out, "dump-core: domain {id} left paused and marked crashed");
        } else {
            drop(paused);
        }
        Ok(())
    }
}

//! Test doubles and fuzz bodies: a [`FakeSystem`], [`FakeDomains`] (an
//! in-memory [`DomainControl`]; `FakeSystem` carries one and forwards to it, so
//! it is a whole appliance), [`FakeXenstore`] (an in-memory
//! [`XenstoreControl`], also carried by `FakeSystem`), [`FakeStorage`] (an
//! in-memory [`StorageControl`]: PCI functions, disks, virtual block devices;
//! also carried by `FakeSystem`), [`FakeDebugger`] (an in-memory
//! [`DebugControl`] whose sessions echo and record their lines; also carried
//! by `FakeSystem`), a [`ScriptedLine`] (bytes
//! in, captured bytes out, optionally answering terminal queries like a real
//! terminal), a deterministic [`Xorshift`] generator, and the bodies of the
//! fuzz targets in shell/fuzz/ ([`fuzz_shell_input`], [`fuzz_tokenize`]), so
//! `cargo test` checks the same properties the fuzzer does.
//!
//! Compiled for unit tests and with the `testing` feature; never part of the
//! hypervisor image.

use alloc::boxed::Box;
use alloc::collections::{BTreeMap, VecDeque};
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use alloc::format;
use alloc::string::ToString;
use core::cell::RefCell;
use core::fmt;

use crate::appliance::appliance_commands;
use crate::builtin::builtin_commands;
use crate::command::{Command, Registry};
use crate::debugger::{debugger_commands, DebugControl, DebugSession, DumpCoreRequest, SessionFlow};
use crate::domains::{
    domain_commands, CpuSet, CreatedDomain, DomainControl, DomainState, DomainSummary, SchedCreditEntry, VcpuState,
    VcpuSummary,
};
use crate::parse::tokenize;
use crate::shell::{SerialLine, Shell};
use crate::storage::{storage_commands, AccessMode, DiskRow, PartitionRow, PciDeviceRow, StorageControl, VbdRow};
use crate::system::{CpuStatus, LogLevel, LogLine, MemoryInfo, MemoryRegion, PlatformInfo, System, VersionInfo};
use crate::xenstore::{xenstore_commands, XenstoreControl};

/// The line `version` prints for [`FakeSystem`].
pub const FAKE_VERSION_LINE: &str = "Basalt 0.1.0 (commit abc1234, test)";

/// A [`System`] with fixed, recognizable facts. Reboot and poweroff fail
/// (they must, to return) and are counted.
#[derive(Debug, Clone)]
pub struct FakeSystem {
    /// Returned by [`System::platform`].
    pub platform: PlatformInfo,
    /// Returned by [`System::memory`].
    pub memory: MemoryInfo,
    /// Returned by [`System::cpus`].
    pub cpus: Vec<CpuStatus>,
    /// Returned by [`System::uptime_ns`].
    pub uptime_ns: u64,
    /// The log: (timestamp ns, level, text).
    pub log: Vec<(u64, LogLevel, String)>,
    /// How often reboot was requested.
    pub reboot_requests: u32,
    /// How often poweroff was requested.
    pub poweroff_requests: u32,
    /// The domains; [`DomainControl`] on `FakeSystem` acts on these.
    pub domains: FakeDomains,
    /// The xenstore; [`XenstoreControl`] on `FakeSystem` acts on this.
    pub xenstore: FakeXenstore,
    /// Disks and block backends; [`StorageControl`] on `FakeSystem` acts on these.
    pub storage: FakeStorage,
    /// Debugger sessions and dumps; [`DebugControl`] on `FakeSystem` records here.
    pub debugger: FakeDebugger,
}

impl Default for FakeSystem {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeSystem {
    /// Two CPUs on AMD with SVM/NPT, 2 GiB, a short log.
    pub fn new() -> Self {
        Self {
            platform: PlatformInfo {
                cpu_vendor: String::from("AuthenticAMD"),
                cpu_model: String::from("AMD EPYC 7302"),
                family: 23,
                model: 49,
                stepping: 0,
                cpus_found: 2,
                cpus_online: 1,
                tsc_khz: 2_994_374,
                features: vec![("SVM", true), ("NPT", true), ("VMX", false), ("EPT", false), ("x2APIC", true)],
                guests: String::from("AMD SVM with nested paging"),
                firmware: String::from("BIOS"),
                cmdline: String::from("console=ttyS0 loglevel=debug"),
            },
            memory: MemoryInfo {
                total_bytes: 2048 << 20,
                free_bytes: 1900 << 20,
                heap_total_bytes: 16 << 20,
                heap_used_bytes: 1 << 20,
                regions: vec![
                    MemoryRegion { start: 0, end: 0x9fc00, kind: "usable" },
                    MemoryRegion { start: 0xf0000, end: 0x100000, kind: "reserved" },
                    MemoryRegion { start: 0x100000, end: 0x8000_0000, kind: "usable" },
                ],
            },
            cpus: vec![
                CpuStatus { index: 0, apic_id: 0, online: true, bootstrap: true, timer_ticks: 1234 },
                CpuStatus { index: 1, apic_id: 2, online: false, bootstrap: false, timer_ticks: 0 },
            ],
            uptime_ns: 83_456_000_000,
            log: vec![
                (1_000_000, LogLevel::Info, String::from("basalt booting")),
                (12_345_678_000, LogLevel::Warn, String::from("cpu 1 did not start")),
                (12_400_000_000, LogLevel::Debug, String::from("npt ready")),
                (13_000_000_000, LogLevel::Error, String::from("evil \x1b[6n text")),
                (14_000_000_000, LogLevel::Trace, String::from("tick")),
            ],
            reboot_requests: 0,
            poweroff_requests: 0,
            domains: FakeDomains::new(),
            xenstore: FakeXenstore::new(),
            storage: FakeStorage::new(),
            debugger: FakeDebugger::default(),
        }
    }
}

impl System for FakeSystem {
    fn version(&self) -> VersionInfo {
        VersionInfo { product: "Basalt", version: "0.1.0", commit: "abc1234", build_profile: "test" }
    }
    fn platform(&self) -> PlatformInfo {
        self.platform.clone()
    }
    fn memory(&self) -> MemoryInfo {
        self.memory.clone()
    }
    fn cpus(&self) -> Vec<CpuStatus> {
        self.cpus.clone()
    }
    fn uptime_ns(&self) -> u64 {
        self.uptime_ns
    }
    fn dmesg(&self, sink: &mut dyn FnMut(LogLine<'_>)) {
        for (seq, (timestamp_ns, level, text)) in self.log.iter().enumerate() {
            sink(LogLine { seq: seq as u64, timestamp_ns: *timestamp_ns, level: *level, text });
        }
    }
    fn reboot(&mut self) -> Result<(), String> {
        self.reboot_requests += 1;
        Err(String::from("fake machine cannot reboot"))
    }
    fn poweroff(&mut self) -> Result<(), String> {
        self.poweroff_requests += 1;
        Err(String::from("fake machine cannot power off"))
    }
}

/// One vCPU of a [`FakeDomain`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeVcpu {
    /// Physical CPU it runs or last ran on.
    pub cpu: Option<u32>,
    /// What it is doing.
    pub state: VcpuState,
    /// CPU time consumed, nanoseconds.
    pub cpu_time_ns: u64,
    /// Canonical [`CpuSet`] text of its affinity.
    pub affinity: String,
}

/// One domain of [`FakeDomains`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeDomain {
    /// Domain id.
    pub id: u32,
    /// Domain name.
    pub name: String,
    /// Memory, MiB.
    pub memory_mib: u64,
    /// State flags.
    pub state: DomainState,
    /// CPU time of all vCPUs, nanoseconds.
    pub cpu_time_ns: u64,
    /// Its vCPUs, by number.
    pub vcpus: Vec<FakeVcpu>,
    /// Credit weight.
    pub weight: u32,
    /// Credit cap, percent (0 = none).
    pub cap: u32,
}

/// Name, memory (MiB) and vCPU count a [`FakeDomains`] config describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeConfig {
    /// Config file name as typed after `create`.
    pub file: String,
    /// `name =` of the config.
    pub name: String,
    /// `memory =` of the config.
    pub memory_mib: u64,
    /// `vcpus =` of the config.
    pub vcpus: u32,
}

/// An in-memory [`DomainControl`]: `Domain-0` (id 0, running) and `web`
/// (id 3, blocked, one vCPU pinned to `0-1`, one offline) on a machine of four
/// physical CPUs; one config, `demo`. Refusals mirror a real toolstack's
/// (`no domain 'x'`, `Domain-0 cannot be paused`, ...), and every request is
/// recorded so tests can check the commands acted.
#[derive(Debug, Clone)]
pub struct FakeDomains {
    /// The domains, in id order.
    pub domains: Vec<FakeDomain>,
    /// Physical CPUs `0..physical_cpus` exist.
    pub physical_cpus: u32,
    /// Id the next `create` uses.
    pub next_id: u32,
    /// Configs `create` can read.
    pub configs: Vec<FakeConfig>,
    /// Domains asked to shut down, in order: (id, timeout in seconds as passed).
    pub shutdown_requests: Vec<(u32, Option<u32>)>,
    /// Domains asked to reboot, in order: (id, timeout in seconds as passed).
    pub reboot_requests: Vec<(u32, Option<u32>)>,
    /// Ids of domains whose console was attached, in order.
    pub console_attachments: Vec<u32>,
}

impl Default for FakeDomains {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeDomains {
    /// `Domain-0` and `web` as described on the type.
    pub fn new() -> Self {
        let vcpu = |cpu, state, cpu_time_ns, affinity: &str| FakeVcpu {
            cpu,
            state,
            cpu_time_ns,
            affinity: String::from(affinity),
        };
        Self {
            domains: vec![
                FakeDomain {
                    id: 0,
                    name: String::from("Domain-0"),
                    memory_mib: 1024,
                    state: DomainState { running: true, ..DomainState::default() },
                    cpu_time_ns: 8_349_000_000,
                    vcpus: vec![
                        vcpu(Some(0), VcpuState::Running, 5_200_000_000, "all"),
                        vcpu(Some(1), VcpuState::Blocked, 3_149_000_000, "all"),
                    ],
                    weight: 256,
                    cap: 0,
                },
                FakeDomain {
                    id: 3,
                    name: String::from("web"),
                    memory_mib: 512,
                    state: DomainState { blocked: true, ..DomainState::default() },
                    cpu_time_ns: 1_250_000_000,
                    vcpus: vec![
                        vcpu(Some(1), VcpuState::Blocked, 1_250_000_000, "0-1"),
                        vcpu(None, VcpuState::Offline, 0, "all"),
                    ],
                    weight: 512,
                    cap: 50,
                },
            ],
            physical_cpus: 4,
            next_id: 4,
            configs: vec![FakeConfig {
                file: String::from("demo"),
                name: String::from("demo"),
                memory_mib: 256,
                vcpus: 1,
            }],
            shutdown_requests: Vec::new(),
            reboot_requests: Vec::new(),
            console_attachments: Vec::new(),
        }
    }

    /// The domain the operator's word names: an id first, then a name.
    pub fn find(&self, word: &str) -> Option<&FakeDomain> {
        self.index_of(word).map(|index| &self.domains[index])
    }

    fn index_of(&self, word: &str) -> Option<usize> {
        let as_id = if !word.is_empty() && word.bytes().all(|byte| byte.is_ascii_digit()) {
            word.parse::<u32>().ok()
        } else {
            None
        };
        as_id
            .and_then(|id| self.domains.iter().position(|domain| domain.id == id))
            .or_else(|| self.domains.iter().position(|domain| domain.name == word))
    }

    fn resolve(&self, word: &str) -> Result<usize, String> {
        self.index_of(word).ok_or_else(|| format!("no domain '{word}'"))
    }

    /// Resolves `word` to a domain other than `Domain-0`, which cannot be `verb`.
    fn resolve_guest(&self, word: &str, verb: &str) -> Result<usize, String> {
        let index = self.resolve(word)?;
        if self.domains[index].id == 0 {
            return Err(format!("Domain-0 cannot be {verb}"));
        }
        Ok(index)
    }

    fn selected(&self, word: Option<&str>) -> Result<Vec<&FakeDomain>, String> {
        match word {
            None => Ok(self.domains.iter().collect()),
            Some(word) => Ok(vec![&self.domains[self.resolve(word)?]]),
        }
    }
}

impl DomainControl for FakeDomains {
    fn create(&mut self, config: &str, overrides: &[&str]) -> Result<CreatedDomain, String> {
        let config = self
            .configs
            .iter()
            .find(|known| known.file == config)
            .ok_or_else(|| format!("cannot read config '{config}': no such file"))?;
        let (mut name, mut memory_mib, mut vcpus) = (config.name.clone(), config.memory_mib, config.vcpus);
        for word in overrides {
            let (key, value) = word.split_once('=').ok_or_else(|| format!("bad override '{word}'"))?;
            let bad_value = || format!("bad value for {key}: '{value}'");
            match key {
                "name" => name = String::from(value),
                "memory" => memory_mib = value.parse().map_err(|_| bad_value())?,
                "vcpus" => vcpus = value.parse().ok().filter(|&count| count > 0).ok_or_else(bad_value)?,
                _ => return Err(format!("unsupported setting '{key}'")),
            }
        }
        if self.domains.iter().any(|domain| domain.name == name) {
            return Err(format!("domain '{name}' already exists"));
        }
        let id = self.next_id;
        self.next_id += 1;
        let vcpu = FakeVcpu { cpu: None, state: VcpuState::Blocked, cpu_time_ns: 0, affinity: String::from("all") };
        self.domains.push(FakeDomain {
            id,
            name: name.clone(),
            memory_mib,
            state: DomainState { blocked: true, ..DomainState::default() },
            cpu_time_ns: 0,
            vcpus: vec![vcpu; vcpus as usize],
            weight: 256,
            cap: 0,
        });
        Ok(CreatedDomain { id, name })
    }

    fn domains(&self, domain: Option<&str>) -> Result<Vec<DomainSummary>, String> {
        Ok(self
            .selected(domain)?
            .into_iter()
            .map(|domain| DomainSummary {
                id: domain.id,
                name: domain.name.clone(),
                memory_mib: domain.memory_mib,
                vcpus: domain.vcpus.iter().filter(|vcpu| vcpu.state != VcpuState::Offline).count() as u32,
                state: domain.state,
                cpu_time_ns: domain.cpu_time_ns,
            })
            .collect())
    }

    fn destroy(&mut self, domain: &str) -> Result<(), String> {
        let index = self.resolve_guest(domain, "destroyed")?;
        self.domains.remove(index);
        Ok(())
    }

    fn pause(&mut self, domain: &str) -> Result<(), String> {
        let index = self.resolve_guest(domain, "paused")?;
        let domain = &mut self.domains[index];
        domain.state = DomainState { paused: true, ..domain.state };
        domain.state.running = false;
        domain.state.blocked = false;
        for vcpu in domain.vcpus.iter_mut().filter(|vcpu| vcpu.state != VcpuState::Offline) {
            vcpu.state = VcpuState::Paused;
        }
        Ok(())
    }

    fn unpause(&mut self, domain: &str) -> Result<(), String> {
        let index = self.resolve(domain)?;
        let domain = &mut self.domains[index];
        if !domain.state.paused {
            return Err(format!("domain '{}' is not paused", domain.name));
        }
        domain.state.paused = false;
        domain.state.blocked = true;
        for vcpu in domain.vcpus.iter_mut().filter(|vcpu| vcpu.state == VcpuState::Paused) {
            vcpu.state = VcpuState::Blocked;
        }
        Ok(())
    }

    fn shutdown(&mut self, domain: &str, timeout_seconds: Option<u32>) -> Result<(), String> {
        let index = self.resolve_guest(domain, "shut down from here")?;
        self.domains[index].state.shutdown = true;
        self.shutdown_requests.push((self.domains[index].id, timeout_seconds));
        Ok(())
    }

    fn reboot(&mut self, domain: &str, timeout_seconds: Option<u32>) -> Result<(), String> {
        let index = self.resolve_guest(domain, "rebooted from here")?;
        self.reboot_requests.push((self.domains[index].id, timeout_seconds));
        Ok(())
    }

    fn vcpus(&self, domain: Option<&str>) -> Result<Vec<VcpuSummary>, String> {
        let mut summaries = Vec::new();
        for domain in self.selected(domain)? {
            for (number, vcpu) in domain.vcpus.iter().enumerate() {
                summaries.push(VcpuSummary {
                    domain_name: domain.name.clone(),
                    domain_id: domain.id,
                    vcpu: number as u32,
                    cpu: vcpu.cpu,
                    state: vcpu.state,
                    cpu_time_ns: vcpu.cpu_time_ns,
                    affinity: vcpu.affinity.clone(),
                });
            }
        }
        Ok(summaries)
    }

    fn pin_vcpu(&mut self, domain: &str, vcpu: Option<u32>, cpus: &CpuSet) -> Result<(), String> {
        let index = self.resolve(domain)?;
        if let Some(highest) = cpus.highest().filter(|&highest| highest >= self.physical_cpus) {
            return Err(format!("CPU {highest} does not exist (CPUs 0-{})", self.physical_cpus - 1));
        }
        let domain = &mut self.domains[index];
        let affinity = cpus.to_string();
        match vcpu {
            None => domain.vcpus.iter_mut().for_each(|vcpu| vcpu.affinity = affinity.clone()),
            Some(number) => match domain.vcpus.get_mut(number as usize) {
                Some(vcpu) => vcpu.affinity = affinity,
                None => return Err(format!("domain '{}' has no vCPU {number}", domain.name)),
            },
        }
        Ok(())
    }

    fn sched_credit(&self, domain: Option<&str>) -> Result<Vec<SchedCreditEntry>, String> {
        Ok(self
            .selected(domain)?
            .into_iter()
            .map(|domain| SchedCreditEntry {
                name: domain.name.clone(),
                id: domain.id,
                weight: domain.weight,
                cap: domain.cap,
            })
            .collect())
    }

    fn set_sched_credit(&mut self, domain: &str, weight: Option<u32>, cap: Option<u32>) -> Result<(), String> {
        let index = self.resolve(domain)?;
        let domain = &mut self.domains[index];
        domain.weight = weight.unwrap_or(domain.weight);
        domain.cap = cap.unwrap_or(domain.cap);
        Ok(())
    }

    fn attach_console(&mut self, domain: &str) -> Result<(), String> {
        let index = self.resolve_guest(domain, "attached to (its console is this shell)")?;
        self.console_attachments.push(self.domains[index].id);
        Ok(())
    }
}

/// `FakeSystem` is a whole fake appliance: domain requests go to its
/// [`FakeSystem::domains`].
impl DomainControl for FakeSystem {
    fn create(&mut self, config: &str, overrides: &[&str]) -> Result<CreatedDomain, String> {
        self.domains.create(config, overrides)
    }
    fn domains(&self, domain: Option<&str>) -> Result<Vec<DomainSummary>, String> {
        self.domains.domains(domain)
    }
    fn destroy(&mut self, domain: &str) -> Result<(), String> {
        self.domains.destroy(domain)
    }
    fn pause(&mut self, domain: &str) -> Result<(), String> {
        self.domains.pause(domain)
    }
    fn unpause(&mut self, domain: &str) -> Result<(), String> {
        self.domains.unpause(domain)
    }
    fn shutdown(&mut self, domain: &str, timeout_seconds: Option<u32>) -> Result<(), String> {
        self.domains.shutdown(domain, timeout_seconds)
    }
    fn reboot(&mut self, domain: &str, timeout_seconds: Option<u32>) -> Result<(), String> {
        self.domains.reboot(domain, timeout_seconds)
    }
    fn vcpus(&self, domain: Option<&str>) -> Result<Vec<VcpuSummary>, String> {
        self.domains.vcpus(domain)
    }
    fn pin_vcpu(&mut self, domain: &str, vcpu: Option<u32>, cpus: &CpuSet) -> Result<(), String> {
        self.domains.pin_vcpu(domain, vcpu, cpus)
    }
    fn sched_credit(&self, domain: Option<&str>) -> Result<Vec<SchedCreditEntry>, String> {
        self.domains.sched_credit(domain)
    }
    fn set_sched_credit(&mut self, domain: &str, weight: Option<u32>, cap: Option<u32>) -> Result<(), String> {
        self.domains.set_sched_credit(domain, weight, cap)
    }
    fn attach_console(&mut self, domain: &str) -> Result<(), String> {
        self.domains.attach_console(domain)
    }
}

/// An in-memory [`XenstoreControl`] with dom0's privileges: a small tree
/// (`/local/domain/0`, `/local/domain/3` with a binary value, `/tool`), paths
/// checked as xenstored checks them (relative ones are below
/// `/local/domain/0`), children listed in name order, errors worded as the
/// built-in dom0's (`no such node (ENOENT)`).
#[derive(Debug, Clone)]
pub struct FakeXenstore {
    /// Every node by absolute path, with its value.
    pub nodes: BTreeMap<String, Vec<u8>>,
}

impl Default for FakeXenstore {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeXenstore {
    /// The tree described on the type.
    pub fn new() -> Self {
        let mut store = Self { nodes: BTreeMap::new() };
        store.nodes.insert(String::from("/"), Vec::new());
        for (path, value) in [
            ("/local/domain/0/name", &b"Domain-0"[..]),
            ("/local/domain/3/name", b"web"),
            ("/local/domain/3/data/blob", b"a\tb\x01\xff\\"),
            ("/local/domain/3/memory/target", b"524288"),
            ("/tool", b""),
        ] {
            let _ = store.xs_write(path, value);
        }
        store
    }

    fn absolute(path: &str) -> Result<String, String> {
        let absolute = if path.starts_with('/') { String::from(path) } else { format!("/local/domain/0/{path}") };
        let valid = (absolute == "/" || !absolute.ends_with('/'))
            && !absolute.contains("//")
            && absolute.len() <= 3072
            && absolute.bytes().all(|byte| byte.is_ascii_alphanumeric() || b"-/_@".contains(&byte));
        if valid {
            Ok(absolute)
        } else {
            Err(String::from("invalid argument or path (EINVAL)"))
        }
    }
}

fn not_found() -> String {
    String::from("no such node (ENOENT)")
}

impl XenstoreControl for FakeXenstore {
    fn xs_read(&self, path: &str) -> Result<Vec<u8>, String> {
        self.nodes.get(&Self::absolute(path)?).cloned().ok_or_else(not_found)
    }
    fn xs_write(&mut self, path: &str, value: &[u8]) -> Result<(), String> {
        let path = Self::absolute(path)?;
        let mut parent = path.as_str();
        while let Some(slash) = parent.rfind('/') {
            parent = if slash == 0 { "/" } else { &parent[..slash] };
            self.nodes.entry(String::from(parent)).or_default();
            if parent == "/" {
                break;
            }
        }
        self.nodes.insert(path, Vec::from(value));
        Ok(())
    }
    fn xs_directory(&self, path: &str) -> Result<Vec<String>, String> {
        let path = Self::absolute(path)?;
        if !self.nodes.contains_key(&path) {
            return Err(not_found());
        }
        let prefix = if path == "/" { path.clone() } else { format!("{path}/") };
        Ok(self
            .nodes
            .keys()
            .filter_map(|key| key.strip_prefix(prefix.as_str()))
            .filter(|rest| !rest.is_empty() && !rest.contains('/'))
            .map(String::from)
            .collect())
    }
    fn xs_rm(&mut self, path: &str) -> Result<(), String> {
        let path = Self::absolute(path)?;
        if path == "/" {
            return Err(String::from("invalid argument or path (EINVAL)"));
        }
        if !self.nodes.contains_key(&path) {
            return Err(not_found());
        }
        let prefix = format!("{path}/");
        self.nodes.retain(|key, _| *key != path && !key.starts_with(prefix.as_str()));
        Ok(())
    }
}

/// `FakeSystem`'s xenstore requests go to its [`FakeSystem::xenstore`].
impl XenstoreControl for FakeSystem {
    fn xs_read(&self, path: &str) -> Result<Vec<u8>, String> {
        self.xenstore.xs_read(path)
    }
    fn xs_write(&mut self, path: &str, value: &[u8]) -> Result<(), String> {
        self.xenstore.xs_write(path, value)
    }
    fn xs_directory(&self, path: &str) -> Result<Vec<String>, String> {
        self.xenstore.xs_directory(path)
    }
    fn xs_rm(&mut self, path: &str) -> Result<(), String> {
        self.xenstore.xs_rm(path)
    }
}

/// Size of one mebibyte, for the storage fixture.
const MEBIBYTE: u64 = 1 << 20;
/// Size of one gibibyte, for the storage fixture.
const GIBIBYTE: u64 = 1 << 30;
/// The devid of `xvda` (major 202, minor 0); `xvdb` is 16 more, and so on.
pub const XVDA_DEVID: u32 = 202 << 8;

/// An in-memory [`StorageControl`] on a QEMU q35-like machine: five PCI
/// functions (one without a driver, one with an unknown vendor); three disks —
/// `sda` (AHCI, 20 GiB, GPT: `sda1` EFI system, `sda2` held by `web:xvda rw`),
/// `nvme0n1` (NVMe, 4096-byte sectors, no partitions) and `vda` (virtio-blk,
/// read-only, no model); and `web` (id 3) with `xvda` (`phy:sda2`, connected)
/// and `xvdc` (`ram:64M`, frontend not yet connected).
///
/// `block_attach` understands `phy:NAME,VDEV,ACCESS` and `ram:SIZEM,VDEV,ACCESS`
/// (VDEV `xvd` + one letter, ACCESS `r` or `w`) and refuses as a real dom0
/// would: an unknown or busy target, a read-only disk for writing, a taken
/// vdev, Domain-0. `block_detach` refuses a connected frontend unless forced.
/// Holders follow attaches and detaches.
#[derive(Debug, Clone)]
pub struct FakeStorage {
    /// Returned by [`StorageControl::pci_devices`].
    pub pci_devices: Vec<PciDeviceRow>,
    /// Returned by [`StorageControl::disks`].
    pub disks: Vec<DiskRow>,
    /// Every virtual block device as (domain id, device), in attach order.
    pub vbds: Vec<(u32, VbdRow)>,
    /// The domains (id, name) the fake resolves on its own; a [`FakeSystem`]
    /// resolves through its [`FakeDomains`] instead.
    pub domains: Vec<(u32, String)>,
}

impl Default for FakeStorage {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeStorage {
    /// The machine described on the type.
    pub fn new() -> Self {
        let pci =
            |address: &str, vendor_id, device_id, vendor_name: Option<&str>, class_name: &str, driver: Option<&str>| {
                PciDeviceRow {
                    address: String::from(address),
                    vendor_id,
                    device_id,
                    vendor_name: vendor_name.map(String::from),
                    class_name: String::from(class_name),
                    driver: driver.map(String::from),
                }
            };
        let partition = |name: &str, start_lba, size_bytes, kind: &str, holders: &[&str]| PartitionRow {
            name: String::from(name),
            start_lba,
            size_bytes,
            kind: String::from(kind),
            holders: holders.iter().copied().map(String::from).collect(),
        };
        let sda_size = 20 * GIBIBYTE;
        let sda1_size = 512 * MEBIBYTE;
        let sda2_start = 2048 + sda1_size / 512;
        Self {
            pci_devices: vec![
                pci("0000:00:00.0", 0x8086, 0x29c0, Some("Intel Corporation"), "Host bridge", None),
                pci("0000:00:01.0", 0x1234, 0x1111, None, "VGA compatible controller", None),
                pci(
                    "0000:00:03.0",
                    0x1af4,
                    0x1001,
                    Some("Red Hat, Inc."),
                    "SCSI storage controller",
                    Some("virtio-blk"),
                ),
                pci(
                    "0000:00:04.0",
                    0x1b36,
                    0x0010,
                    Some("Red Hat, Inc."),
                    "Non-Volatile memory controller",
                    Some("nvme"),
                ),
                pci("0000:00:1f.2", 0x8086, 0x2922, Some("Intel Corporation"), "SATA controller", Some("ahci")),
            ],
            disks: vec![
                DiskRow {
                    name: String::from("sda"),
                    model: String::from("QEMU HARDDISK"),
                    size_bytes: sda_size,
                    logical_block_size: 512,
                    read_only: false,
                    driver: String::from("ahci"),
                    pci_address: Some(String::from("0000:00:1f.2")),
                    holders: Vec::new(),
                    partitions: vec![
                        partition("sda1", 2048, sda1_size, "EFI system", &[]),
                        partition(
                            "sda2",
                            sda2_start,
                            sda_size - sda2_start * 512 - 34 * 512,
                            "Linux filesystem",
                            &["web:xvda rw"],
                        ),
                    ],
                },
                DiskRow {
                    name: String::from("nvme0n1"),
                    model: String::from("QEMU NVMe Ctrl"),
                    size_bytes: GIBIBYTE,
                    logical_block_size: 4096,
                    read_only: false,
                    driver: String::from("nvme"),
                    pci_address: Some(String::from("0000:00:04.0")),
                    holders: Vec::new(),
                    partitions: Vec::new(),
                },
                DiskRow {
                    name: String::from("vda"),
                    model: String::new(),
                    size_bytes: 64 * MEBIBYTE,
                    logical_block_size: 512,
                    read_only: true,
                    driver: String::from("virtio-blk"),
                    pci_address: Some(String::from("0000:00:03.0")),
                    holders: Vec::new(),
                    partitions: Vec::new(),
                },
            ],
            vbds: vec![
                (
                    3,
                    VbdRow {
                        vdev: String::from("xvda"),
                        devid: XVDA_DEVID,
                        source: String::from("phy:sda2"),
                        mode: AccessMode::ReadWrite,
                        backend_state: String::from("4 (connected)"),
                        frontend_state: String::from("4 (connected)"),
                        ring_ref: Some(8),
                        event_channel: Some(14),
                        requests: 1532,
                        errors: 2,
                    },
                ),
                (3, Self::new_vbd("xvdc", XVDA_DEVID + 2 * 16, String::from("ram:64M"), AccessMode::ReadWrite)),
            ],
            domains: vec![(0, String::from("Domain-0")), (3, String::from("web"))],
        }
    }

    /// A device just attached: backend waiting, frontend not yet started.
    fn new_vbd(vdev: &str, devid: u32, source: String, mode: AccessMode) -> VbdRow {
        VbdRow {
            vdev: String::from(vdev),
            devid,
            source,
            mode,
            backend_state: String::from("2 (initwait)"),
            frontend_state: String::from("1 (initialising)"),
            ring_ref: None,
            event_channel: None,
            requests: 0,
            errors: 0,
        }
    }

    fn resolve(&self, word: &str) -> Result<(u32, String), String> {
        let as_id: Option<u32> =
            if !word.is_empty() && word.bytes().all(|byte| byte.is_ascii_digit()) { word.parse().ok() } else { None };
        as_id
            .and_then(|id| self.domains.iter().find(|(known, _)| *known == id))
            .or_else(|| self.domains.iter().find(|(_, name)| name == word))
            .cloned()
            .ok_or_else(|| format!("no domain '{word}'"))
    }

    /// The read-only flag and holders of the disk or partition called `name`.
    fn target_mut(&mut self, name: &str) -> Option<(bool, &mut Vec<String>)> {
        for disk in &mut self.disks {
            if disk.name == name {
                return Some((disk.read_only, &mut disk.holders));
            }
            let read_only = disk.read_only;
            if let Some(partition) = disk.partitions.iter_mut().find(|partition| partition.name == name) {
                return Some((read_only, &mut partition.holders));
            }
        }
        None
    }

    /// [`StorageControl::block_attach`] for a resolved domain.
    pub fn attach(&mut self, domain_id: u32, domain_name: &str, spec: &str) -> Result<String, String> {
        let [target, vdev, access] = spec.split(',').collect::<Vec<_>>()[..] else {
            return Err(format!("bad disk spec '{spec}' (expected TARGET,VDEV,ACCESS)"));
        };
        if domain_id == 0 {
            return Err(String::from("Domain-0 cannot be given virtual disks"));
        }
        let mode = match access {
            "r" | "ro" => AccessMode::ReadOnly,
            "w" | "rw" => AccessMode::ReadWrite,
            _ => return Err(format!("bad access '{access}' (r or w)")),
        };
        let devid = match vdev.strip_prefix("xvd").map(str::as_bytes) {
            Some(&[letter @ b'a'..=b'z']) => XVDA_DEVID + u32::from(letter - b'a') * 16,
            _ => return Err(format!("bad vdev '{vdev}' (xvda to xvdz)")),
        };
        if self.vbds.iter().any(|(id, vbd)| *id == domain_id && vbd.vdev == vdev) {
            return Err(format!("domain {domain_id} ({domain_name}) already has {vdev}"));
        }
        let mode_word = if mode == AccessMode::ReadWrite { "rw" } else { "ro" };
        let (source, what) = if let Some(name) = target.strip_prefix("phy:") {
            let Some((read_only, holders)) = self.target_mut(name) else {
                return Err(format!("no disk or partition '{name}'"));
            };
            if read_only && mode == AccessMode::ReadWrite {
                return Err(format!("{name} is read-only"));
            }
            let busy = !holders.is_empty()
                && (mode == AccessMode::ReadWrite || holders.iter().any(|holder| holder.ends_with(" rw")));
            if busy {
                return Err(format!("{name} is in use ({})", holders.join(", ")));
            }
            holders.push(format!("{domain_name}:{vdev} {mode_word}"));
            (String::from(target), String::from(name))
        } else if let Some(size) = target.strip_prefix("ram:") {
            let megabytes = size.strip_suffix('M').filter(|digits| {
                !digits.is_empty() && digits.len() <= 6 && digits.bytes().all(|byte| byte.is_ascii_digit())
            });
            if megabytes.is_none() {
                return Err(format!("bad RAM disk size '{size}' (e.g. 64M)"));
            }
            (String::from(target), String::from(target))
        } else {
            return Err(format!("unsupported target '{target}' (phy:NAME or ram:SIZE)"));
        };
        self.vbds.push((domain_id, Self::new_vbd(vdev, devid, source, mode)));
        self.vbds.sort_by_key(|(id, vbd)| (*id, vbd.devid));
        Ok(format!("attached {what} to domain {domain_id} ({domain_name}) as {vdev} ({mode_word})"))
    }

    /// [`StorageControl::block_detach`] for a resolved domain.
    pub fn detach(&mut self, domain_id: u32, domain_name: &str, vdev: &str, force: bool) -> Result<String, String> {
        let index = self
            .vbds
            .iter()
            .position(|(id, vbd)| *id == domain_id && (vbd.vdev == vdev || vbd.devid.to_string() == vdev))
            .ok_or_else(|| format!("domain {domain_id} ({domain_name}) has no virtual disk '{vdev}'"))?;
        let vbd = &self.vbds[index].1;
        if !force && vbd.frontend_state.starts_with("4 ") {
            return Err(format!(
                "{}: the guest did not let go (frontend {}); use -f to force",
                vbd.vdev, vbd.frontend_state
            ));
        }
        let (_, vbd) = self.vbds.remove(index);
        if let Some(name) = vbd.source.strip_prefix("phy:") {
            let holder_prefix = format!("{domain_name}:{} ", vbd.vdev);
            if let Some((_, holders)) = self.target_mut(name) {
                holders.retain(|holder| !holder.starts_with(holder_prefix.as_str()));
            }
        }
        Ok(format!("detached {} from domain {domain_id} ({domain_name})", vbd.vdev))
    }

    /// [`StorageControl::block_list`] for a resolved domain.
    pub fn list(&self, domain_id: u32) -> Vec<VbdRow> {
        self.vbds.iter().filter(|(id, _)| *id == domain_id).map(|(_, vbd)| vbd.clone()).collect()
    }
}

impl StorageControl for FakeStorage {
    fn pci_devices(&self) -> Vec<PciDeviceRow> {
        self.pci_devices.clone()
    }
    fn disks(&self) -> Vec<DiskRow> {
        self.disks.clone()
    }
    fn block_attach(&mut self, domain: &str, spec: &str) -> Result<String, String> {
        let (id, name) = self.resolve(domain)?;
        self.attach(id, &name, spec)
    }
    fn block_detach(&mut self, domain: &str, vdev: &str, force: bool) -> Result<String, String> {
        let (id, name) = self.resolve(domain)?;
        self.detach(id, &name, vdev, force)
    }
    fn block_list(&self, domain: &str) -> Result<Vec<VbdRow>, String> {
        let (id, _) = self.resolve(domain)?;
        Ok(self.list(id))
    }
    fn disk_bench(&mut self, disk: &str, mebibytes: u32) -> Result<String, String> {
        self.bench(disk, mebibytes)
    }
}

/// `FakeSystem`'s storage requests go to its [`FakeSystem::storage`], with
/// domains resolved through its [`FakeSystem::domains`] (so a domain made
/// with `create` can be given disks).
impl StorageControl for FakeSystem {
    fn pci_devices(&self) -> Vec<PciDeviceRow> {
        self.storage.pci_devices()
    }
    fn disks(&self) -> Vec<DiskRow> {
        self.storage.disks()
    }
    fn block_attach(&mut self, domain: &str, spec: &str) -> Result<String, String> {
        let (id, name) = self.resolve_for_storage(domain)?;
        self.storage.attach(id, &name, spec)
    }
    fn block_detach(&mut self, domain: &str, vdev: &str, force: bool) -> Result<String, String> {
        let (id, name) = self.resolve_for_storage(domain)?;
        self.storage.detach(id, &name, vdev, force)
    }
    fn block_list(&self, domain: &str) -> Result<Vec<VbdRow>, String> {
        let (id, _) = self.resolve_for_storage(domain)?;
        Ok(self.storage.list(id))
    }
    fn disk_bench(&mut self, disk: &str, mebibytes: u32) -> Result<String, String> {
        self.storage.bench(disk, mebibytes)
    }
}

impl FakeStorage {
    /// `disk-bench` on the fake: refused for an unknown disk or one with holders,
    /// otherwise fixed figures.
    fn bench(&self, disk: &str, mebibytes: u32) -> Result<String, String> {
        let row = self.disks.iter().find(|row| row.name == disk).ok_or_else(|| format!("no disk named {disk}"))?;
        if let Some(holder) = row.holders.first() {
            return Err(format!("{disk} is in use ({holder})"));
        }
        Ok(format!(
            "disk-bench {disk}: {mebibytes} MiB sequential write 10.0 MB/s, sequential read 20.0 MB/s, \
             4 KiB random read 300 IOPS"
        ))
    }
}

impl FakeSystem {
    fn resolve_for_storage(&self, word: &str) -> Result<(u32, String), String> {
        self.domains
            .find(word)
            .map(|domain| (domain.id, domain.name.clone()))
            .ok_or_else(|| format!("no domain '{word}'"))
    }
}

/// What [`DebugControl`] on [`FakeSystem`] did: the sessions it opened and what
/// they were sent, and the cores it "wrote". Sessions share `session_lines` with
/// the fake (a session outlives the call that opened it), so a test sees the
/// lines after the fact.
#[derive(Debug, Clone, Default)]
pub struct FakeDebugger {
    /// Names of the domains a session was opened on, in order.
    pub opened: Vec<String>,
    /// Every line a session received except `$q`, as `"<domain>: <line>"`.
    pub session_lines: Rc<RefCell<Vec<String>>>,
    /// Every dump-core request that was carried out, in order.
    pub dumps: Vec<DumpCoreRequest>,
}

/// A session of [`FakeDebugger`]: answers each line with `[<domain>] <line>`,
/// and quits on `$q`.
struct FakeSession {
    domain: String,
    lines: Rc<RefCell<Vec<String>>>,
}

impl DebugSession for FakeSession {
    fn execute(&mut self, line: &str, out: &mut dyn fmt::Write) -> SessionFlow {
        if line.trim() == "$q" {
            return SessionFlow::Quit;
        }
        self.lines.borrow_mut().push(format!("{}: {line}", self.domain));
        let _ = writeln!(out, "[{}] {line}", self.domain);
        SessionFlow::Continue
    }
}

/// Debugging on the fake appliance: domains resolve through
/// [`FakeSystem::domains`] (`no domain 'x'` otherwise), dump-core's disk must
/// be a disk or partition of [`FakeSystem::storage`].
impl DebugControl for FakeSystem {
    fn open_debugger(&mut self, domain: &str) -> Result<Box<dyn DebugSession>, String> {
        let found = self.domains.find(domain).ok_or_else(|| format!("no domain '{domain}'"))?;
        let name = found.name.clone();
        self.debugger.opened.push(name.clone());
        Ok(Box::new(FakeSession { domain: name, lines: Rc::clone(&self.debugger.session_lines) }))
    }

    fn dump_core(&mut self, request: &DumpCoreRequest, out: &mut dyn fmt::Write) -> Result<(), String> {
        let domain = self.domains.find(&request.domain).ok_or_else(|| format!("no domain '{}'", request.domain))?;
        let disk_known = self.storage.disks.iter().any(|disk| {
            disk.name == request.disk || disk.partitions.iter().any(|partition| partition.name == request.disk)
        });
        if !disk_known {
            return Err(format!("no disk or partition named {}", request.disk));
        }
        let _ = writeln!(out, "dump-core: writing domain {} ({}) to {}", domain.id, domain.name, request.disk);
        let after = if request.crash { "left crashed" } else { "resumed" };
        let _ = writeln!(out, "dump-core: {} MiB written; domain {after}", domain.memory_mib);
        self.debugger.dumps.push(request.clone());
        Ok(())
    }
}

/// A [`SerialLine`] that plays a script and records what is written.
///
/// Script entries are bytes, or `None` for "nothing arrives before this
/// read's timeout". Once the script is exhausted the line is closed. If built
/// with [`ScriptedLine::answering`], it behaves like a terminal of that size:
/// every `ESC[6n` written is answered (size after `ESC[999;999H`, else a
/// position just after the prompt) ahead of the remaining script.
#[derive(Debug, Default)]
pub struct ScriptedLine {
    script: VecDeque<Option<u8>>,
    /// Everything written to the line.
    pub output: Vec<u8>,
    terminal_size: Option<(u32, u32)>,
    scanned_output_length: usize,
}

impl ScriptedLine {
    /// A line delivering `input`, a dumb terminal that answers nothing.
    pub fn new(input: &[u8]) -> Self {
        Self { script: input.iter().map(|&byte| Some(byte)).collect(), ..Self::default() }
    }

    /// A line with explicit timeouts (`None` entries).
    pub fn with_pauses(script: &[Option<u8>]) -> Self {
        Self { script: script.iter().copied().collect(), ..Self::default() }
    }

    /// A line that answers terminal queries like a `rows`×`columns` terminal.
    pub fn answering(input: &[u8], rows: u32, columns: u32) -> Self {
        Self { terminal_size: Some((rows, columns)), ..Self::new(input) }
    }

    /// The output as text (lossy for non-UTF-8 bytes).
    pub fn output_text(&self) -> String {
        String::from_utf8_lossy(&self.output).into_owned()
    }

    fn answer_new_queries(&mut self) {
        let Some((rows, columns)) = self.terminal_size else {
            return;
        };
        let new_output = &self.output[self.scanned_output_length..];
        let mut answers = Vec::new();
        let mut previous_query_end = 0;
        let mut index = 0;
        while let Some(found) = find(&new_output[index..], b"\x1b[6n") {
            let query_start = index + found;
            let before = &new_output[previous_query_end..query_start];
            let answer = if find(before, b"\x1b[999;999H").is_some() {
                alloc::format!("\x1b[{rows};{columns}R")
            } else {
                alloc::format!("\x1b[{rows};9R")
            };
            answers.extend_from_slice(answer.as_bytes());
            index = query_start + 4;
            previous_query_end = index;
        }
        self.scanned_output_length += index;
        for &byte in answers.iter().rev() {
            self.script.push_front(Some(byte));
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
}

impl SerialLine for ScriptedLine {
    fn read_byte(&mut self, _timeout_ms: u32) -> Option<u8> {
        self.answer_new_queries();
        self.script.pop_front().flatten()
    }
    fn write_bytes(&mut self, bytes: &[u8]) {
        self.output.extend_from_slice(bytes);
    }
    fn is_closed(&mut self) -> bool {
        self.answer_new_queries();
        self.script.is_empty()
    }
}

/// xorshift64: a tiny deterministic generator for test inputs.
#[derive(Debug, Clone)]
pub struct Xorshift(u64);

impl Xorshift {
    /// A generator from a seed (0 is replaced, xorshift must not start at 0).
    pub fn new(seed: u64) -> Self {
        Self(if seed == 0 { 0x9e37_79b9_7f4a_7c15 } else { seed })
    }
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    /// A value in `0..bound` (0 if `bound` is 0).
    pub fn below(&mut self, bound: usize) -> usize {
        if bound == 0 {
            0
        } else {
            (self.next_u64() % bound as u64) as usize
        }
    }
}

/// Input that leaves any editor state behind and runs `version`: a Ctrl-C
/// (which may be eaten by an unfinished UTF-8 sequence), a second Ctrl-C, and
/// the command.
pub const RECOVERY_INPUT: &[u8] = b"\x03\x03version\r";

/// A shell over [`FakeSystem`] with `tables`; panics (a test bug) if they clash.
fn shell_with(tables: &[&'static [Command<FakeSystem>]]) -> Shell<FakeSystem> {
    match Registry::new(tables) {
        Ok(registry) => Shell::new(registry),
        Err(error) => panic!("the command tables do not combine: {error}"),
    }
}

/// A shell over [`FakeSystem`] with only the built-in commands.
pub fn fake_shell() -> Shell<FakeSystem> {
    shell_with(&[builtin_commands::<FakeSystem>()])
}

/// A shell over [`FakeSystem`] with the built-in, the domain and the
/// appliance commands (`reboot [[-t SECONDS] DOMAIN]`), as image/ composes them.
pub fn fake_appliance_shell() -> Shell<FakeSystem> {
    shell_with(&[builtin_commands::<FakeSystem>(), domain_commands::<FakeSystem>(), appliance_commands::<FakeSystem>()])
}

/// A shell over [`FakeSystem`] with the built-in, domain, appliance and
/// xenstore tables, as image/ composes them once it implements [`XenstoreControl`].
pub fn fake_xenstore_shell() -> Shell<FakeSystem> {
    shell_with(&[
        builtin_commands::<FakeSystem>(),
        domain_commands::<FakeSystem>(),
        appliance_commands::<FakeSystem>(),
        xenstore_commands::<FakeSystem>(),
    ])
}

/// A shell over [`FakeSystem`] with every table, the storage commands
/// included, as image/ composes them once it implements [`StorageControl`].
pub fn fake_storage_shell() -> Shell<FakeSystem> {
    shell_with(&[
        builtin_commands::<FakeSystem>(),
        domain_commands::<FakeSystem>(),
        appliance_commands::<FakeSystem>(),
        xenstore_commands::<FakeSystem>(),
        storage_commands::<FakeSystem>(),
    ])
}

/// A shell over [`FakeSystem`] with every table, the debugger's included, as
/// image/ composes them once it implements [`DebugControl`].
pub fn fake_debugger_shell() -> Shell<FakeSystem> {
    shell_with(&[
        builtin_commands::<FakeSystem>(),
        domain_commands::<FakeSystem>(),
        appliance_commands::<FakeSystem>(),
        xenstore_commands::<FakeSystem>(),
        storage_commands::<FakeSystem>(),
        debugger_commands::<FakeSystem>(),
    ])
}

/// Fuzz body for `shell_input`: arbitrary bytes through the answerback shim,
/// noline and the command dispatcher, then [`RECOVERY_INPUT`]. Panics (the
/// fuzzer's signal) if anything panics or if `version` does not run at the end.
///
/// The first byte chooses the pacing: if non-zero, the line times out once
/// before every `first`-th byte, exercising the "terminal did not answer" path.
pub fn fuzz_shell_input(data: &[u8]) {
    let (pacing, garbage) = match data.split_first() {
        Some((&pacing, rest)) => (usize::from(pacing), rest),
        None => (0, data),
    };
    let mut script: Vec<Option<u8>> = Vec::with_capacity(garbage.len() * 2 + 16);
    for (index, &byte) in garbage.iter().enumerate() {
        if pacing != 0 && index % pacing == 0 {
            script.push(None);
        }
        script.push(Some(byte));
    }
    script.extend(RECOVERY_INPUT.iter().map(|&byte| Some(byte)));

    let shell = fake_appliance_shell();
    let mut system = FakeSystem::new();
    let mut line = ScriptedLine::with_pauses(&script);
    shell.run_until_closed(&mut system, &mut line);

    let output = line.output_text();
    let version_at = output.rfind(FAKE_VERSION_LINE).unwrap_or_else(|| panic!("no version output after {garbage:?}"));
    let after_version = &output[version_at..];
    assert_eq!(
        after_version.matches(crate::PROMPT).count(),
        1,
        "version was not the last command executed for input {garbage:?}"
    );
}

/// Fuzz body for `tokenize`: any text either splits into at most
/// [`crate::MAX_WORDS`] words or gives an error; never panics.
pub fn fuzz_tokenize(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(words) = tokenize(&text) {
        assert!(words.len() <= crate::MAX_WORDS);
        let total: usize = words.iter().map(String::len).sum();
        assert!(total <= text.len());
    }
    // And the whole dispatch path on the same text.
    let shell = fake_appliance_shell();
    let mut system = FakeSystem::new();
    let mut output = String::new();
    shell.execute_line(&mut system, &text, &mut output);
}

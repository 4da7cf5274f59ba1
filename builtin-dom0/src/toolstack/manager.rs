//! The domain manager: `create <config> key=value ...` from a config module to a
//! running domain, the table of domains it made, and what to do when one shuts down.
//!
//! Why a trait: the manager states the little it needs from the hypervisor
//! ([`DomainHost`]) and from the boot modules ([`ModuleSource`]), so image/ implements
//! them with kernel/ and the host tests with fakes (DESIGN.md, decision 8). The two
//! are separate because the module bytes stay borrowed (the kernel and ramdisk are
//! copied into the domain straight from the module) while the host is changed.
//!
//! Call order, for one `create` (the contract [`DomainHost`] implementations rely on):
//! [`DomainHost::create_domain`] (memory for every backing range, zeroed; vCPUs; the
//! domain paused) → [`DomainHost::write_guest`] for each chunk → [`DomainHost::start_vcpu0`]
//! → [`DomainHost::unpause`]. If any step after `create_domain` fails, the manager calls
//! [`DomainHost::destroy`] before returning the error, so nothing stays allocated.
//!
//! Memory: a bzImage kernel is unpacked onto the hypervisor heap (tens of MiB) and the
//! boot image borrows its segments from that ELF; both live only inside `start`, until
//! the chunks are written, and are freed before it returns, whether it succeeded or not.
//!
//! Invariants: names of the domains in the table are unique; the table holds exactly
//! the domains this manager created and has not been told are gone ([`DomainManager::forget`]).

use alloc::collections::BTreeMap;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use basalt_xen_abi::sched::{
    SHUTDOWN_crash, SHUTDOWN_poweroff, SHUTDOWN_reboot, SHUTDOWN_soft_reset, SHUTDOWN_suspend, SHUTDOWN_watchdog,
};

use super::builder::{build_pvh_image, unpack_kernel, BackingRange, BuildError};
use super::config::{self, ConfigError, CpuSet, DomainConfig, Lifecycle, LifecycleAction, Limits, Warning};
use super::pvh_platform::MemmapEntry;

/// A domain id (`domid_t`).
pub type DomainId = u16;

/// The boot modules (multiboot2), by name. Configs are modules named `<config>.cfg`.
pub trait ModuleSource {
    /// The bytes of the module called `name`.
    fn module(&self, name: &str) -> Option<&[u8]>;
    /// Every module's name, for messages.
    fn module_names(&self) -> Vec<String>;
}

/// What the manager needs from the hypervisor.
pub trait DomainHost {
    /// The machine's limits: physical CPUs, vCPUs per domain (4 × physical CPUs),
    /// memory per domain.
    fn limits(&self) -> Limits;
    /// Creates a paused domain: backs every range in `request.backing` with zeroed
    /// memory, creates `request.max_vcpus` vCPUs with their affinity, records the
    /// memory map for `XENMEM_memory_map`, the scheduling parameters and the lifecycle
    /// actions. Returns the new domain's id.
    fn create_domain(&mut self, request: &CreateRequest) -> Result<DomainId, HostError>;
    /// Copies `bytes` into the paused domain's memory at guest-physical `gpa` (inside
    /// one backing range).
    fn write_guest(&mut self, domid: DomainId, gpa: u64, bytes: &[u8]) -> Result<(), HostError>;
    /// Sets vCPU 0 up for the PVH entry (32-bit protected mode, paging off, %eip =
    /// `entry`, %ebx = `ebx`; Xen `docs/misc/pvh.pandoc`) and marks it runnable.
    fn start_vcpu0(&mut self, domid: DomainId, entry: u32, ebx: u32) -> Result<(), HostError>;
    /// Lets the domain run.
    fn unpause(&mut self, domid: DomainId) -> Result<(), HostError>;
    /// Frees the domain and everything it holds.
    fn destroy(&mut self, domid: DomainId) -> Result<(), HostError>;
}

/// Everything the hypervisor needs to create a domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateRequest {
    pub name: String,
    /// RAM at creation, bytes.
    pub memory_bytes: u64,
    /// Ceiling the domain may balloon up to, bytes.
    pub max_memory_bytes: u64,
    /// Guest-physical ranges to back with zeroed memory (RAM, ACPI, special pages).
    pub backing: Vec<BackingRange>,
    /// vCPUs online at boot (vCPU 0 starts; the guest brings up the others).
    pub vcpus: u32,
    /// vCPUs to create.
    pub max_vcpus: u32,
    /// Credit scheduler weight (1..=65535) and cap (percent of a CPU, 0 = none).
    pub weight: u16,
    pub cap: u16,
    /// Physical CPUs vCPU i may run on: `max_vcpus` entries.
    pub affinity: Vec<CpuSet>,
    /// The guest's memory map (`XENMEM_memory_map`).
    pub memory_map: Vec<MemmapEntry>,
    pub lifecycle: Lifecycle,
    /// Virtual disks (`disk = [...]`), attached by the host before the domain runs.
    pub disks: Vec<crate::toolstack::config::DiskSpec>,
}

/// Why the hypervisor refused an operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostError {
    /// Not enough free memory for `needed` bytes.
    OutOfMemory {
        needed: u64,
    },
    /// Every domain id is in use.
    NoFreeDomainId,
    /// A write outside the domain's backed memory.
    BadGuestRange {
        gpa: u64,
        length: u64,
    },
    NoSuchDomain(DomainId),
    /// Anything else, in words.
    Failed(&'static str),
    /// A virtual disk could not be attached: the whole reason, e.g. `disk sda: sda is
    /// in use read-write by domain 3 (linux)`.
    Disk(String),
}

impl fmt::Display for HostError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostError::OutOfMemory { needed } => write!(formatter, "not enough free memory for {} MiB", needed >> 20),
            HostError::NoFreeDomainId => formatter.write_str("no free domain id"),
            HostError::BadGuestRange { gpa, length } => {
                write!(formatter, "guest range {gpa:#x}+{length:#x} is not backed")
            }
            HostError::NoSuchDomain(domid) => write!(formatter, "no domain {domid}"),
            HostError::Failed(what) => formatter.write_str(what),
            HostError::Disk(why) => formatter.write_str(why),
        }
    }
}

/// The host operation that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostStep {
    CreateDomain,
    WriteGuest { gpa: u64 },
    StartVcpu0,
    Unpause,
    Destroy,
}

impl fmt::Display for HostStep {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostStep::CreateDomain => formatter.write_str("creating the domain"),
            HostStep::WriteGuest { gpa } => write!(formatter, "writing guest memory at {gpa:#x}"),
            HostStep::StartVcpu0 => formatter.write_str("starting vCPU 0"),
            HostStep::Unpause => formatter.write_str("unpausing"),
            HostStep::Destroy => formatter.write_str("destroying the old domain"),
        }
    }
}

/// Why `create` (or `restart`) failed. Nothing stays allocated unless `cleanup` says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateError {
    /// No module `<name>.cfg`; `available` lists the configs that exist.
    NoConfig {
        name: String,
        available: Vec<String>,
    },
    /// The config module is not UTF-8.
    ConfigNotText {
        config: String,
        valid_up_to: usize,
    },
    Config {
        config: String,
        error: ConfigError,
    },
    DuplicateName {
        name: String,
        domid: DomainId,
    },
    /// The config names a kernel or ramdisk module that was not loaded.
    MissingModule {
        config: String,
        role: &'static str,
        module: String,
    },
    Build {
        config: String,
        error: BuildError,
    },
    /// The hypervisor failed at `step`; `cleanup` is set if destroying the half-built
    /// domain `domid` failed too (then it may still hold memory).
    Host {
        step: HostStep,
        error: HostError,
        domid: Option<DomainId>,
        cleanup: Option<HostError>,
    },
    /// `restart` of a domain the manager does not know.
    UnknownDomain(DomainId),
}

impl fmt::Display for CreateError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CreateError::NoConfig { name, available } if available.is_empty() => {
                write!(formatter, "no config '{}' (no configs loaded)", config::Printable(name))
            }
            CreateError::NoConfig { name, available } => {
                write!(formatter, "no config '{}' (configs: {})", config::Printable(name), available.join(", "))
            }
            CreateError::ConfigNotText { config, valid_up_to } => {
                write!(formatter, "{config}: not UTF-8 text (bad byte at offset {valid_up_to})")
            }
            CreateError::Config { config, error } => write!(formatter, "{config}: {error}"),
            CreateError::DuplicateName { name, domid } => {
                write!(formatter, "a domain named '{name}' already exists (domain {domid})")
            }
            CreateError::MissingModule { config, role, module } => {
                write!(formatter, "{config}: {role} module '{}' is not loaded", config::Printable(module))
            }
            CreateError::Build { config, error } => write!(formatter, "{config}: {error}"),
            CreateError::Host { step, error, domid, cleanup } => {
                write!(formatter, "{step}: {error}")?;
                match (domid, cleanup) {
                    (Some(domid), Some(cleanup)) => {
                        write!(formatter, "; destroying the half-built domain {domid} failed too: {cleanup}")
                    }
                    _ => Ok(()),
                }
            }
            CreateError::UnknownDomain(domid) => write!(formatter, "domain {domid} was not created by this toolstack"),
        }
    }
}

/// A domain `create` started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedDomain {
    pub domid: DomainId,
    pub name: String,
    /// Settings that were ignored (unknown keys and the like), for the user.
    pub warnings: Vec<Warning>,
}

/// Why a domain stopped (`SCHEDOP_shutdown` reasons, sched.h).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownReason {
    Poweroff,
    Reboot,
    Suspend,
    Crash,
    Watchdog,
    SoftReset,
}

impl ShutdownReason {
    /// From a `SHUTDOWN_*` code; `None` for codes Xen does not define.
    #[allow(non_upper_case_globals)] // the constants keep sched.h's spelling
    pub fn from_code(code: u32) -> Option<ShutdownReason> {
        Some(match code {
            SHUTDOWN_poweroff => ShutdownReason::Poweroff,
            SHUTDOWN_reboot => ShutdownReason::Reboot,
            SHUTDOWN_suspend => ShutdownReason::Suspend,
            SHUTDOWN_crash => ShutdownReason::Crash,
            SHUTDOWN_watchdog => ShutdownReason::Watchdog,
            SHUTDOWN_soft_reset => ShutdownReason::SoftReset,
            _ => return None,
        })
    }
}

/// One domain the manager created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedDomain {
    pub name: String,
    /// The config it was made from (without `.cfg`).
    pub config_name: String,
    /// The config with the overrides applied: what `restart` re-creates.
    pub config: DomainConfig,
}

/// The toolstack's table of domains.
#[derive(Debug, Default)]
pub struct DomainManager {
    domains: BTreeMap<DomainId, ManagedDomain>,
}

impl DomainManager {
    pub fn new() -> DomainManager {
        DomainManager::default()
    }

    /// Domains created and not yet forgotten, by id.
    pub fn domains(&self) -> impl Iterator<Item = (DomainId, &ManagedDomain)> {
        self.domains.iter().map(|(&domid, domain)| (domid, domain))
    }

    pub fn domain(&self, domid: DomainId) -> Option<&ManagedDomain> {
        self.domains.get(&domid)
    }

    /// The id of the live domain called `name`.
    pub fn find(&self, name: &str) -> Option<DomainId> {
        self.domains.iter().find(|(_, domain)| domain.name == name).map(|(&domid, _)| domid)
    }

    /// Drops a domain that is gone (destroyed by other means); returns what was known.
    pub fn forget(&mut self, domid: DomainId) -> Option<ManagedDomain> {
        let forgotten = self.domains.remove(&domid);
        // An emptied map keeps its root node; a fresh one holds no heap.
        if self.domains.is_empty() {
            self.domains = BTreeMap::new();
        }
        forgotten
    }

    /// `create <config_name> key=value ...`: reads `<config_name>.cfg`, applies the
    /// overrides, builds and starts the domain.
    pub fn create<M, H>(
        &mut self,
        modules: &M,
        host: &mut H,
        config_name: &str,
        overrides: &[&str],
    ) -> Result<CreatedDomain, CreateError>
    where
        M: ModuleSource + ?Sized,
        H: DomainHost + ?Sized,
    {
        let config_name = config_name.strip_suffix(".cfg").unwrap_or(config_name);
        let module_name = alloc::format!("{config_name}.cfg");
        let Some(bytes) = modules.module(&module_name) else {
            let mut available: Vec<String> = modules
                .module_names()
                .iter()
                .filter_map(|name| name.strip_suffix(".cfg"))
                .map(|name| config::Printable(name).to_string())
                .collect();
            available.sort();
            return Err(CreateError::NoConfig { name: config_name.to_string(), available });
        };
        let text = core::str::from_utf8(bytes).map_err(|error| CreateError::ConfigNotText {
            config: module_name.clone(),
            valid_up_to: error.valid_up_to(),
        })?;
        let parsed = config::parse_with_overrides(text, overrides, &host.limits())
            .map_err(|error| CreateError::Config { config: module_name.clone(), error })?;
        let domid = self.start(modules, host, config_name, parsed.config)?;
        let name = self.domains.get(&domid).map(|domain| domain.name.clone()).unwrap_or_default();
        Ok(CreatedDomain { domid, name, warnings: parsed.warnings })
    }

    /// For `on_reboot = "restart"` (and the like): destroys domain `domid` and creates
    /// it again from the config it was created with. The new domain has a new id.
    pub fn restart<M, H>(&mut self, modules: &M, host: &mut H, domid: DomainId) -> Result<CreatedDomain, CreateError>
    where
        M: ModuleSource + ?Sized,
        H: DomainHost + ?Sized,
    {
        let old = self.domains.get(&domid).cloned().ok_or(CreateError::UnknownDomain(domid))?;
        host.destroy(domid).map_err(|error| CreateError::Host {
            step: HostStep::Destroy,
            error,
            domid: Some(domid),
            cleanup: None,
        })?;
        self.forget(domid);
        let new = self.start(modules, host, &old.config_name, old.config)?;
        Ok(CreatedDomain { domid: new, name: old.name, warnings: Vec::new() })
    }

    /// Destroys a domain this manager created and forgets it.
    pub fn destroy<H: DomainHost + ?Sized>(&mut self, host: &mut H, domid: DomainId) -> Result<(), HostError> {
        host.destroy(domid)?;
        self.forget(domid);
        Ok(())
    }

    /// What the domain's config says to do when it stops for `reason`; `None` if the
    /// domain is not one of ours. A suspended domain is preserved (it resumes in place);
    /// a soft reset, which Basalt does not do, destroys it.
    pub fn action_for(&self, domid: DomainId, reason: ShutdownReason) -> Option<LifecycleAction> {
        let lifecycle = &self.domains.get(&domid)?.config.lifecycle;
        Some(match reason {
            ShutdownReason::Poweroff => lifecycle.on_poweroff,
            ShutdownReason::Reboot => lifecycle.on_reboot,
            ShutdownReason::Crash => lifecycle.on_crash,
            ShutdownReason::Watchdog => lifecycle.on_watchdog,
            ShutdownReason::Suspend => LifecycleAction::Preserve,
            ShutdownReason::SoftReset => LifecycleAction::Destroy,
        })
    }

    /// Builds and starts a domain from a checked config and records it.
    fn start<M, H>(
        &mut self,
        modules: &M,
        host: &mut H,
        config_name: &str,
        config: DomainConfig,
    ) -> Result<DomainId, CreateError>
    where
        M: ModuleSource + ?Sized,
        H: DomainHost + ?Sized,
    {
        let module_name = alloc::format!("{config_name}.cfg");
        if let Some(domid) = self.find(&config.name) {
            return Err(CreateError::DuplicateName { name: config.name, domid });
        }
        let missing = |role, module: &str| CreateError::MissingModule {
            config: module_name.clone(),
            role,
            module: module.to_string(),
        };
        let kernel = modules.module(&config.kernel).ok_or_else(|| missing("kernel", &config.kernel))?;
        let ramdisk = match &config.ramdisk {
            Some(name) => Some(modules.module(name).ok_or_else(|| missing("ramdisk", name))?),
            None => None,
        };
        let build_error = |error| CreateError::Build { config: module_name.clone(), error };
        // The unpacked ELF (for a bzImage) outlives the image that borrows from it; both
        // are dropped once the chunks are written (or on any error return).
        let kernel_elf = unpack_kernel(&config, kernel).map_err(build_error)?;
        let image = build_pvh_image(&config, &kernel_elf, ramdisk).map_err(build_error)?;

        let physical_cpus = host.limits().physical_cpus;
        let request = CreateRequest {
            name: config.name.clone(),
            memory_bytes: image.memory_bytes,
            max_memory_bytes: config.max_memory_bytes(),
            backing: image.backing.clone(),
            vcpus: config.vcpus,
            max_vcpus: config.max_vcpus(),
            weight: config.weight,
            cap: config.cap,
            affinity: (0..config.max_vcpus()).map(|vcpu| config.cpus.for_vcpu(vcpu, physical_cpus)).collect(),
            memory_map: image.memory_map.clone(),
            lifecycle: config.lifecycle,
            disks: config.disks.clone(),
        };
        let domid = host.create_domain(&request).map_err(|error| CreateError::Host {
            step: HostStep::CreateDomain,
            error,
            domid: None,
            cleanup: None,
        })?;

        let populate = |host: &mut H| -> Result<(), (HostStep, HostError)> {
            for chunk in &image.chunks {
                host.write_guest(domid, chunk.gpa, &chunk.bytes)
                    .map_err(|error| (HostStep::WriteGuest { gpa: chunk.gpa }, error))?;
            }
            host.start_vcpu0(domid, image.entry, image.start_info_gpa)
                .map_err(|error| (HostStep::StartVcpu0, error))?;
            host.unpause(domid).map_err(|error| (HostStep::Unpause, error))
        };
        if let Err((step, error)) = populate(host) {
            let cleanup = host.destroy(domid).err();
            return Err(CreateError::Host { step, error, domid: Some(domid), cleanup });
        }
        // Written: the unpacked kernel (tens of MiB) goes back to the heap now.
        drop(image);
        drop(kernel_elf);
        let name = config.name.clone();
        self.domains.insert(domid, ManagedDomain { name, config_name: config_name.to_string(), config });
        Ok(domid)
    }
}

#[cfg(test)]
mod tests;

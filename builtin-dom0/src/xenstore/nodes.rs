//! The nodes the toolstack creates for a domU, with libxl's permissions, their removal,
//! and the shutdown request.
//!
//! Facts (pvh-abi.md §6.3, Xen's `docs/misc/xenstore-paths.pandoc`,
//! `tools/libs/light/libxl_create.c` `libxl__domain_make`, `libxl_dom.c`
//! `libxl__build_post`): the domain's home `/local/domain/N` and `/vm/<uuid>` are owned
//! by dom0 and readable by the domain (libxl's `roperm` = `[n0, rN]`); nodes written
//! below inherit that. The nodes the guest may write (`control/shutdown`,
//! `control/sysrq`, `control/feature-*`, `data`, `drivers`, `feature`, `attr`,
//! `error`) are owned by the domain with no access for others (libxl's `rwperm` =
//! `[nN]`; dom0 still reaches them, being privileged). So a domU can read its own home
//! but no other domain's, and can write only where libxl lets it.
//!
//! Not created: libxl's private `/libxl/N` tree and `device/suspend/event-channel`
//! (no suspend support), `platform/*` (no platform data); `console/tty` is the console
//! daemon's to write (the built-in console has no pty).

use alloc::format;
use alloc::string::String;

use super::path::home_path;
use super::tree::{Access, Permission};
use super::wire::XsError;
use super::Xenstore;

/// Where the primary console's ring lives, for the `console/*` bookkeeping nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsoleNodes {
    /// Guest frame number of the console ring page (`console/ring-ref`).
    pub ring_ref: u64,
    /// The guest's console event channel (`console/port`).
    pub port: u32,
}

/// What [`populate_domain`] writes about a domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainNodes {
    /// The domain's id (not 0).
    pub domid: u16,
    /// Its name (`name`, `/vm/<uuid>/name`).
    pub name: String,
    /// Its UUID (`/vm/<uuid>`).
    pub uuid: [u8; 16],
    /// Memory at boot, KiB (`memory/static-max` and `memory/target`).
    pub memory_kib: u64,
    /// Number of vCPUs (`cpu/<n>/availability` = `online` for each).
    pub vcpus: u32,
    /// The primary console's ring, if known.
    pub console: Option<ConsoleNodes>,
}

/// What `control/shutdown` asks the guest to do (values Linux acts on, pvh-abi.md §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownRequest {
    /// `poweroff`.
    Poweroff,
    /// `reboot`.
    Reboot,
    /// `halt`.
    Halt,
    /// `suspend`.
    Suspend,
}

impl ShutdownRequest {
    /// The value written to `control/shutdown`.
    pub const fn as_str(self) -> &'static str {
        match self {
            ShutdownRequest::Poweroff => "poweroff",
            ShutdownRequest::Reboot => "reboot",
            ShutdownRequest::Halt => "halt",
            ShutdownRequest::Suspend => "suspend",
        }
    }
}

/// libxl's `LIBXL_XENCONSOLE_LIMIT` (`console/limit`), bytes.
pub const CONSOLE_LIMIT: u32 = 1_048_576;

/// Lower-case `8-4-4-4-12` form of a UUID.
pub fn uuid_string(uuid: &[u8; 16]) -> String {
    let hex = |range: core::ops::Range<usize>| -> String {
        uuid.get(range).unwrap_or(&[]).iter().map(|byte| format!("{byte:02x}")).collect()
    };
    format!("{}-{}-{}-{}-{}", hex(0..4), hex(4..6), hex(6..8), hex(8..10), hex(10..16))
}

/// Creates a domU's nodes (see the module documentation), replacing any left over.
pub fn populate_domain(store: &mut Xenstore, domain: &DomainNodes) -> Result<(), XsError> {
    let domid = domain.domid;
    if domid == 0 {
        return Err(XsError::Invalid);
    }
    let home = home_path(domid);
    let vm = format!("/vm/{}", uuid_string(&domain.uuid));
    let read_only = [Permission::new(0, Access::None), Permission::new(domid, Access::Read)];
    let guest_writable = [Permission::new(domid, Access::None)];
    let make_node = |store: &mut Xenstore, path: &str, perms: &[Permission]| -> Result<(), XsError> {
        store.write(path, b"")?;
        store.set_perms(path, perms)
    };

    store.rm(&home)?;
    make_node(store, &home, &read_only)?;
    store.rm(&vm)?;
    make_node(store, &vm, &read_only)?;
    store.write(&format!("{home}/vm"), vm.as_bytes())?;
    store.write(&format!("{home}/name"), domain.name.as_bytes())?;
    store.write(&format!("{home}/domid"), format!("{domid}").as_bytes())?;
    for directory in ["cpu", "memory", "device", "control"] {
        make_node(store, &format!("{home}/{directory}"), &read_only)?;
    }
    for node in [
        "control/shutdown",
        "control/feature-poweroff",
        "control/feature-reboot",
        "control/feature-suspend",
        "control/sysrq",
        "data",
        "drivers",
        "feature",
        "attr",
        "error",
    ] {
        make_node(store, &format!("{home}/{node}"), &guest_writable)?;
    }
    store.write(&format!("{vm}/uuid"), uuid_string(&domain.uuid).as_bytes())?;
    store.write(&format!("{vm}/name"), domain.name.as_bytes())?;
    store.write(&format!("{home}/control/platform-feature-multiprocessor-suspend"), b"1")?;
    store.write(&format!("{home}/control/platform-feature-xs_reset_watches"), b"1")?;
    let memory = format!("{}", domain.memory_kib);
    store.write(&format!("{home}/memory/static-max"), memory.as_bytes())?;
    store.write(&format!("{home}/memory/target"), memory.as_bytes())?;
    for vcpu in 0..domain.vcpus {
        store.write(&format!("{home}/cpu/{vcpu}/availability"), b"online")?;
    }
    store.write(&format!("{home}/console/limit"), format!("{CONSOLE_LIMIT}").as_bytes())?;
    store.write(&format!("{home}/console/type"), b"xenconsoled")?;
    if let Some(console) = domain.console {
        store.write(&format!("{home}/console/ring-ref"), format!("{}", console.ring_ref).as_bytes())?;
        store.write(&format!("{home}/console/port"), format!("{}", console.port).as_bytes())?;
    }
    store.mkdir("/local/domain/0/backend")?;
    Ok(())
}

/// Removes a domain's nodes: its home, its `/vm/<uuid>` (as named by its `vm` node)
/// and its entries under every `/local/domain/0/backend/<type>/`.
pub fn remove_domain(store: &mut Xenstore, domid: u16) -> Result<(), XsError> {
    if domid == 0 {
        return Err(XsError::Invalid);
    }
    let home = home_path(domid);
    let vm = store.read(&format!("{home}/vm")).ok().and_then(|value| String::from_utf8(value).ok());
    if let Some(vm) = vm.filter(|vm| vm.starts_with("/vm/") && vm.len() > 4) {
        store.rm(&vm)?;
    }
    store.rm(&home)?;
    if let Ok(types) = store.directory("/local/domain/0/backend") {
        for device_type in types {
            store.rm(&format!("/local/domain/0/backend/{device_type}/{domid}"))?;
        }
    }
    Ok(())
}

/// Asks the guest to shut down, reboot, ... by writing `control/shutdown`.
pub fn request_shutdown(store: &mut Xenstore, domid: u16, request: ShutdownRequest) -> Result<(), XsError> {
    store.write(&format!("{}/control/shutdown", home_path(domid)), request.as_str().as_bytes())
}

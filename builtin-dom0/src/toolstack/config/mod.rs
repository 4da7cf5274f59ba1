//! Domain configurations in xl.cfg(5) syntax: text (a GRUB module named `<name>.cfg`)
//! plus `create`'s `key=value` overrides → a checked [`DomainConfig`].
//!
//! Why here: the config is user input, so every limit the rest of the toolstack relies
//! on is checked once, in this module, with the line it came from. Invariants of an
//! accepted [`DomainConfig`]: the name is 1..=64 of `[A-Za-z0-9_.-]` and not all
//! digits; `1 <= vcpus <= maxvcpus <= limits.max_vcpus`; `1 <= memory_mib <= maxmem_mib
//! <= limits.max_memory_mib`; the command line fits Linux's 2048 bytes with no NUL;
//! every affinity set is non-empty and inside the machine; at most [`MAX_DISKS`] disks,
//! each a valid [`DiskSpec`], no two with the same virtual device.
//!
//! Semantics follow xl (`tools/xl/xl_parse.c`): a later setting of a key replaces an
//! earlier one, overrides apply after the file, unknown keys are ignored (reported as
//! warnings), `cmdline` wins over `root`/`extra` (which are ignored with a warning),
//! otherwise the command line is `root=<root> <extra>`. One deliberate difference:
//! without `type`, xl assumes a PV guest; Basalt runs only PVH guests, so PVH is the
//! default and `type = "hvm"`/`"pv"` (or `builder = "hvm"`) are refused.

mod cpus;
mod disks;
mod syntax;
#[cfg(test)]
mod tests;

use alloc::collections::BTreeMap;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

pub use cpus::{parse_cpu_list, CpuAffinity, CpuListError, CpuSet, MAX_PHYSICAL_CPUS};
pub use disks::{
    parse_disk_spec, DiskSource, DiskSpec, DiskSpecError, MAX_DISKS, MAX_DISK_NAME_LENGTH, MAX_DISK_SPEC_BYTES,
    MAX_RAM_DISK_BYTES,
};
pub use syntax::{Atom, Setting, Value};

use super::pvh_platform::{MAX_COMMAND_LINE, MAX_VCPUS};

/// Largest config file accepted.
pub const MAX_CONFIG_BYTES: usize = 64 * 1024;
/// Longest line of a config file (and longest override).
pub const MAX_LINE_BYTES: usize = 4096;
/// Most overrides on one `create`.
pub const MAX_OVERRIDES: usize = 64;
/// Longest domain name.
pub const MAX_NAME_LENGTH: usize = 64;
/// Memory when `memory` is not set, in MiB.
pub const DEFAULT_MEMORY_MIB: u64 = 128;
/// Credit scheduler weight when `cpu_weight` is not set.
pub const DEFAULT_WEIGHT: u16 = 256;

/// What the machine allows; the caller (the domain manager) knows the hardware.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Physical CPUs (for `cpus=`).
    pub physical_cpus: u32,
    /// Most vCPUs per domain (Basalt: 4 × physical CPUs; at most [`MAX_VCPUS`]).
    pub max_vcpus: u32,
    /// Most memory per domain, in MiB.
    pub max_memory_mib: u64,
}

impl Limits {
    /// Basalt's rule: up to 4 vCPUs per physical CPU.
    pub fn for_machine(physical_cpus: u32, max_memory_mib: u64) -> Limits {
        Limits { physical_cpus, max_vcpus: physical_cpus.saturating_mul(4).min(MAX_VCPUS), max_memory_mib }
    }
}

/// The only guest type Basalt runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DomainKind {
    Pvh,
}

/// What to do when a domain shuts down for a given reason (`on_poweroff` & co).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LifecycleAction {
    /// Free the domain.
    Destroy,
    /// Destroy it and create it again from the same config.
    Restart,
    /// Leave it shut down (for inspection with the debugger) until destroyed.
    Preserve,
}

impl LifecycleAction {
    /// The xl spelling.
    pub fn name(self) -> &'static str {
        match self {
            LifecycleAction::Destroy => "destroy",
            LifecycleAction::Restart => "restart",
            LifecycleAction::Preserve => "preserve",
        }
    }
}

/// Actions xl knows that Basalt does not do (yet).
const UNSUPPORTED_ACTIONS: &[&str] = &["rename-restart", "coredump-destroy", "coredump-restart", "soft-reset"];

/// The four lifecycle settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifecycle {
    pub on_poweroff: LifecycleAction,
    pub on_reboot: LifecycleAction,
    pub on_crash: LifecycleAction,
    pub on_watchdog: LifecycleAction,
}

/// A checked domain configuration (see the module doc for its invariants).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainConfig {
    pub name: String,
    pub kind: DomainKind,
    /// Name of the module holding the kernel (PVH ELF or bzImage).
    pub kernel: String,
    /// Name of the module holding the initial ramdisk.
    pub ramdisk: Option<String>,
    /// RAM at creation, in MiB.
    pub memory_mib: u64,
    /// Ceiling for ballooning up, in MiB (`maxmem`); `None` = `memory_mib`.
    pub maxmem_mib: Option<u64>,
    /// vCPUs online at boot.
    pub vcpus: u32,
    /// vCPUs allocated (`maxvcpus`); `None` = `vcpus`.
    pub maxvcpus: Option<u32>,
    /// Kernel command line.
    pub cmdline: String,
    pub lifecycle: Lifecycle,
    pub cpus: CpuAffinity,
    /// Credit scheduler weight, 1..=65535.
    pub weight: u16,
    /// Credit scheduler cap in percent of one CPU; 0 = none.
    pub cap: u16,
    /// Virtual disks (`disk`), in the order given.
    pub disks: Vec<DiskSpec>,
}

impl DomainConfig {
    pub fn memory_bytes(&self) -> u64 {
        self.memory_mib << 20
    }
    pub fn max_memory_bytes(&self) -> u64 {
        self.maxmem_mib.unwrap_or(self.memory_mib) << 20
    }
    pub fn max_vcpus(&self) -> u32 {
        self.maxvcpus.unwrap_or(self.vcpus)
    }
}

/// A parsed config and what was ignored on the way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub config: DomainConfig,
    pub warnings: Vec<Warning>,
}

/// Where a setting or an error came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A line of the file (1-based).
    Line(usize),
    /// A `key=value` override (its text, cut at 60 characters).
    Override(String),
    /// The config as a whole (a missing key).
    Whole,
}

impl fmt::Display for Location {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Line(line) => write!(formatter, "line {line}"),
            Location::Override(text) => write!(formatter, "override \"{}\"", Printable(text)),
            Location::Whole => formatter.write_str("config"),
        }
    }
}

/// Something ignored, worth telling the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub location: Location,
    pub kind: WarningKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WarningKind {
    /// A key this toolstack does not use.
    UnknownKey(String),
    /// `root`/`extra` next to `cmdline`.
    IgnoredInFavourOfCmdline(&'static str),
    /// More `cpus` entries than vCPUs.
    ExtraCpuEntries { entries: usize, vcpus: u32 },
}

impl fmt::Display for Warning {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}: ", self.location)?;
        match &self.kind {
            WarningKind::UnknownKey(key) => write!(formatter, "unknown key '{}' ignored", Printable(key)),
            WarningKind::IgnoredInFavourOfCmdline(key) => write!(formatter, "{key} ignored in favour of cmdline"),
            WarningKind::ExtraCpuEntries { entries, vcpus } => {
                write!(formatter, "cpus has {entries} entries for {vcpus} vCPUs; the rest are ignored")
            }
        }
    }
}

/// Why a config was refused: where, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub location: Location,
    pub kind: ConfigErrorKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigErrorKind {
    /// The file is larger than [`MAX_CONFIG_BYTES`].
    FileTooLarge {
        bytes: usize,
    },
    /// A line (or override) longer than [`MAX_LINE_BYTES`].
    LineTooLong,
    /// More than [`MAX_OVERRIDES`] overrides.
    TooManyOverrides(usize),
    /// A grammar error described in words.
    Syntax(&'static str),
    UnexpectedCharacter {
        found: char,
        expected: &'static str,
    },
    UnclosedString,
    UnclosedList {
        opened: usize,
    },
    BadEscape(char),
    /// `+=` where either side is not a list.
    AppendToNonList(String),
    MissingKey(&'static str),
    /// A list where a single value belongs, or the reverse.
    ExpectedSingleValue(&'static str),
    NotANumber {
        key: &'static str,
        text: String,
    },
    OutOfRange {
        key: &'static str,
        value: u64,
        min: u64,
        max: u64,
    },
    BadName {
        name: String,
        reason: &'static str,
    },
    UnsupportedType(String),
    UnknownType(String),
    UnsupportedAction {
        key: &'static str,
        action: String,
    },
    UnknownAction {
        key: &'static str,
        action: String,
    },
    BadCpus(CpuListError),
    /// A `disk` entry that is not a valid disk specification.
    BadDisk {
        spec: String,
        error: DiskSpecError,
    },
    /// Two `disk` entries with the same virtual device.
    DuplicateVdev(String),
    /// More than [`MAX_DISKS`] disks.
    TooManyDisks(usize),
    CommandLineTooLong {
        bytes: usize,
    },
    NulInString(&'static str),
}

impl fmt::Display for ConfigErrorKind {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ConfigErrorKind as K;
        match self {
            K::FileTooLarge { bytes } => write!(formatter, "{bytes} bytes long (at most {MAX_CONFIG_BYTES})"),
            K::LineTooLong => write!(formatter, "longer than {MAX_LINE_BYTES} bytes"),
            K::TooManyOverrides(count) => write!(formatter, "{count} overrides (at most {MAX_OVERRIDES})"),
            K::Syntax(message) => formatter.write_str(message),
            K::UnexpectedCharacter { found, expected } => {
                write!(formatter, "expected {expected}, found `{}`", PrintableChar(*found))
            }
            K::UnclosedString => formatter.write_str("string not closed before the end of the line"),
            K::UnclosedList { opened } => write!(formatter, "list opened on line {opened} is not closed with ']'"),
            K::BadEscape(character) => write!(formatter, "bad escape '\\{}' in string", PrintableChar(*character)),
            K::AppendToNonList(key) => write!(formatter, "'+=' on {} works only with lists", Printable(key)),
            K::MissingKey(key) => write!(formatter, "no '{key}' setting"),
            K::ExpectedSingleValue(key) => write!(formatter, "{key} takes a single value, not a list"),
            K::NotANumber { key, text } => write!(formatter, "{key}: \"{}\" is not a whole number", Printable(text)),
            K::OutOfRange { key: key @ ("memory" | "maxmem"), value, min, max } if *value > *max => {
                write!(formatter, "not enough memory: {key} = {value} MiB, but only {max} MiB are free (minimum {min})")
            }
            K::OutOfRange { key, value, min, max } => {
                write!(formatter, "{key} = {value} is out of range ({min} to {max})")
            }
            K::BadName { name, reason } => write!(formatter, "name \"{}\" {reason}", Printable(name)),
            K::UnsupportedType(kind) => {
                write!(formatter, "type \"{}\" is not supported: only pvh guests", Printable(kind))
            }
            K::UnknownType(kind) => write!(formatter, "type \"{}\" is unknown: only pvh guests", Printable(kind)),
            K::UnsupportedAction { key, action } => {
                write!(formatter, "{key} \"{}\" is not supported (destroy, restart, preserve)", Printable(action))
            }
            K::UnknownAction { key, action } => {
                write!(formatter, "{key} \"{}\" is not an action (destroy, restart, preserve)", Printable(action))
            }
            K::BadCpus(error) => write!(formatter, "cpus: {error}"),
            K::BadDisk { spec, error } => write!(formatter, "disk '{}': {error}", Printable(spec)),
            K::DuplicateVdev(vdev) => write!(formatter, "disk: vdev {} is used twice", Printable(vdev)),
            K::TooManyDisks(count) => write!(formatter, "{count} disks (at most {MAX_DISKS})"),
            K::CommandLineTooLong { bytes } => {
                write!(formatter, "command line is {bytes} bytes (at most {})", MAX_COMMAND_LINE - 1)
            }
            K::NulInString(key) => write!(formatter, "{key} contains a NUL character"),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.location {
            Location::Whole => write!(formatter, "{}", self.kind),
            _ => write!(formatter, "{}: {}", self.location, self.kind),
        }
    }
}

/// Shows user text on one line: control characters escaped, quotes and non-ASCII
/// letters as they are.
pub(crate) struct Printable<'a>(pub(crate) &'a str);

impl fmt::Display for Printable<'_> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        for character in self.0.chars() {
            if character.is_control() {
                write!(formatter, "{}", character.escape_debug())?;
            } else {
                write!(formatter, "{character}")?;
            }
        }
        Ok(())
    }
}

/// One character shown as [`Printable`] does.
struct PrintableChar(char);

impl fmt::Display for PrintableChar {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buffer = [0u8; 4];
        Printable(self.0.encode_utf8(&mut buffer)).fmt(formatter)
    }
}

/// Parses a config file alone.
pub fn parse(text: &str, limits: &Limits) -> Result<Parsed, ConfigError> {
    parse_with_overrides(text, &[], limits)
}

/// Parses a config file, then applies `create`'s `key=value` overrides in order.
pub fn parse_with_overrides(text: &str, overrides: &[&str], limits: &Limits) -> Result<Parsed, ConfigError> {
    if text.len() > MAX_CONFIG_BYTES {
        return Err(ConfigError {
            location: Location::Whole,
            kind: ConfigErrorKind::FileTooLarge { bytes: text.len() },
        });
    }
    if let Some(index) = text.split('\n').position(|line| line.len() > MAX_LINE_BYTES) {
        return Err(ConfigError { location: Location::Line(index + 1), kind: ConfigErrorKind::LineTooLong });
    }
    if overrides.len() > MAX_OVERRIDES {
        return Err(ConfigError {
            location: Location::Whole,
            kind: ConfigErrorKind::TooManyOverrides(overrides.len()),
        });
    }
    let mut settings = syntax::parse_file(text)?;
    for text in overrides {
        if text.len() > MAX_LINE_BYTES {
            let location = Location::Override(text.chars().take(60).collect());
            return Err(ConfigError { location, kind: ConfigErrorKind::LineTooLong });
        }
        settings.push(syntax::parse_override(text)?);
    }
    let table = Table::new(settings)?;
    table.interpret(limits)
}

/// Settings by key, the last one winning (`+=` appending).
struct Table {
    settings: BTreeMap<String, (Value, Location)>,
}

/// The keys this toolstack reads; others are warned about and ignored.
const KNOWN_KEYS: &[&str] = &[
    "name",
    "type",
    "builder",
    "kernel",
    "ramdisk",
    "memory",
    "maxmem",
    "vcpus",
    "maxvcpus",
    "cmdline",
    "root",
    "extra",
    "on_poweroff",
    "on_reboot",
    "on_crash",
    "on_watchdog",
    "cpus",
    "cpu_weight",
    "cap",
    "disk",
];

impl Table {
    fn new(settings: Vec<Setting>) -> Result<Table, ConfigError> {
        let mut table: BTreeMap<String, (Value, Location)> = BTreeMap::new();
        for setting in settings {
            if setting.append {
                if let Some((existing, _)) = table.get_mut(&setting.key) {
                    match (existing, setting.value) {
                        (Value::List(items), Value::List(more)) => items.extend(more),
                        _ => {
                            return Err(ConfigError {
                                location: setting.location,
                                kind: ConfigErrorKind::AppendToNonList(setting.key),
                            })
                        }
                    }
                    continue;
                }
            }
            table.insert(setting.key, (setting.value, setting.location));
        }
        Ok(Table { settings: table })
    }

    fn location(&self, key: &str) -> Location {
        self.settings.get(key).map_or(Location::Whole, |(_, location)| location.clone())
    }

    fn error(&self, key: &str, kind: ConfigErrorKind) -> ConfigError {
        ConfigError { location: self.location(key), kind }
    }

    /// A single value (string or number text), if set.
    fn atom(&self, key: &'static str) -> Result<Option<&Atom>, ConfigError> {
        match self.settings.get(key) {
            None => Ok(None),
            Some((Value::Atom(atom), _)) => Ok(Some(atom)),
            Some((Value::List(_), _)) => Err(self.error(key, ConfigErrorKind::ExpectedSingleValue(key))),
        }
    }

    fn string(&self, key: &'static str) -> Result<Option<String>, ConfigError> {
        match self.atom(key)? {
            Some(atom) if atom.text.contains('\0') => Err(self.error(key, ConfigErrorKind::NulInString(key))),
            Some(atom) => Ok(Some(atom.text.clone())),
            None => Ok(None),
        }
    }

    /// A whole number in `min..=max` (decimal or 0x hex; quoted or not, as xl).
    fn number(&self, key: &'static str, min: u64, max: u64) -> Result<Option<u64>, ConfigError> {
        let Some(atom) = self.atom(key)? else { return Ok(None) };
        let text = atom.text.trim();
        let parsed = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
            Some(hex) => u64::from_str_radix(hex, 16).ok(),
            None if text.bytes().all(|byte| byte.is_ascii_digit()) => text.parse::<u64>().ok(),
            None => None,
        };
        let not_a_number = || self.error(key, ConfigErrorKind::NotANumber { key, text: atom.text.clone() });
        // A run of digits too long for u64 is out of range, not "not a number".
        let value = match parsed {
            Some(value) => value,
            None if !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit()) => u64::MAX,
            None => return Err(not_a_number()),
        };
        if value < min || value > max {
            return Err(self.error(key, ConfigErrorKind::OutOfRange { key, value, min, max }));
        }
        Ok(Some(value))
    }

    fn action(&self, key: &'static str, default: LifecycleAction) -> Result<LifecycleAction, ConfigError> {
        let Some(action) = self.string(key)? else { return Ok(default) };
        match action.as_str() {
            "destroy" => Ok(LifecycleAction::Destroy),
            "restart" => Ok(LifecycleAction::Restart),
            "preserve" => Ok(LifecycleAction::Preserve),
            other if UNSUPPORTED_ACTIONS.contains(&other) => {
                Err(self.error(key, ConfigErrorKind::UnsupportedAction { key, action }))
            }
            _ => Err(self.error(key, ConfigErrorKind::UnknownAction { key, action })),
        }
    }

    fn kind(&self) -> Result<DomainKind, ConfigError> {
        if let Some(kind) = self.string("type")? {
            return match kind.as_str() {
                "pvh" => Ok(DomainKind::Pvh),
                "hvm" | "pv" => Err(self.error("type", ConfigErrorKind::UnsupportedType(kind))),
                _ => Err(self.error("type", ConfigErrorKind::UnknownType(kind))),
            };
        }
        // The older spelling: `builder = "hvm"` (HVM) or "generic" (PV).
        match self.string("builder")?.as_deref() {
            None => Ok(DomainKind::Pvh),
            Some("hvm") => Err(self.error("builder", ConfigErrorKind::UnsupportedType("hvm".into()))),
            Some("generic") => Err(self.error("builder", ConfigErrorKind::UnsupportedType("pv".into()))),
            Some(other) => Err(self.error("builder", ConfigErrorKind::UnknownType(other.into()))),
        }
    }

    fn name(&self) -> Result<String, ConfigError> {
        let name = self
            .string("name")?
            .ok_or(ConfigError { location: Location::Whole, kind: ConfigErrorKind::MissingKey("name") })?;
        let reason = if name.is_empty() || name.len() > MAX_NAME_LENGTH {
            Some("must be 1 to 64 characters long")
        } else if !name.bytes().all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'.' | b'-')) {
            Some("may contain only letters, digits, '_', '.' and '-'")
        } else if name.bytes().all(|byte| byte.is_ascii_digit()) {
            Some("is all digits, which would read as a domain id")
        } else if name == "Domain-0" {
            Some("is domain 0's")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(self.error("name", ConfigErrorKind::BadName { name, reason })),
            None => Ok(name),
        }
    }

    fn command_line(&self, warnings: &mut Vec<Warning>) -> Result<String, ConfigError> {
        let (cmdline, root, extra) = (self.string("cmdline")?, self.string("root")?, self.string("extra")?);
        let line = match (cmdline, root, extra) {
            (Some(cmdline), root, extra) => {
                for (key, present) in [("root", root.is_some()), ("extra", extra.is_some())] {
                    if present {
                        warnings.push(Warning {
                            location: self.location(key),
                            kind: WarningKind::IgnoredInFavourOfCmdline(key),
                        });
                    }
                }
                cmdline
            }
            (None, Some(root), Some(extra)) => alloc::format!("root={root} {extra}"),
            (None, Some(root), None) => alloc::format!("root={root}"),
            (None, None, Some(extra)) => extra,
            (None, None, None) => String::new(),
        };
        if line.len() >= MAX_COMMAND_LINE {
            let key = if self.settings.contains_key("cmdline") { "cmdline" } else { "extra" };
            return Err(self.error(key, ConfigErrorKind::CommandLineTooLong { bytes: line.len() }));
        }
        Ok(line)
    }

    fn cpus(&self, limits: &Limits, vcpus: u32, warnings: &mut Vec<Warning>) -> Result<CpuAffinity, ConfigError> {
        let bad = |error| self.error("cpus", ConfigErrorKind::BadCpus(error));
        match self.settings.get("cpus") {
            None => Ok(CpuAffinity::Any),
            Some((Value::Atom(atom), _)) => {
                parse_cpu_list(&atom.text, limits.physical_cpus).map(CpuAffinity::All).map_err(bad)
            }
            Some((Value::List(atoms), _)) if atoms.is_empty() => Ok(CpuAffinity::Any),
            Some((Value::List(atoms), _)) => {
                if atoms.len() > vcpus as usize {
                    warnings.push(Warning {
                        location: self.location("cpus"),
                        kind: WarningKind::ExtraCpuEntries { entries: atoms.len(), vcpus },
                    });
                }
                // Every entry is checked, even those past the last vCPU.
                let mut sets = atoms
                    .iter()
                    .map(|atom| parse_cpu_list(&atom.text, limits.physical_cpus).map_err(bad))
                    .collect::<Result<Vec<_>, _>>()?;
                sets.truncate(vcpus as usize);
                Ok(CpuAffinity::PerVcpu(sets))
            }
        }
    }

    /// `disk`: a list of disk specifications (or one, as a single string).
    fn disks(&self) -> Result<Vec<DiskSpec>, ConfigError> {
        let atoms = match self.settings.get("disk") {
            None => return Ok(Vec::new()),
            Some((Value::Atom(atom), _)) => core::slice::from_ref(atom),
            Some((Value::List(atoms), _)) => atoms.as_slice(),
        };
        if atoms.len() > MAX_DISKS {
            return Err(self.error("disk", ConfigErrorKind::TooManyDisks(atoms.len())));
        }
        let mut disks: Vec<DiskSpec> = Vec::with_capacity(atoms.len());
        for atom in atoms {
            let disk = parse_disk_spec(&atom.text).map_err(|error| {
                let spec = atom.text.chars().take(60).collect();
                self.error("disk", ConfigErrorKind::BadDisk { spec, error })
            })?;
            if disks.iter().any(|earlier| earlier.vdev == disk.vdev) {
                return Err(self.error("disk", ConfigErrorKind::DuplicateVdev(disk.vdev)));
            }
            disks.push(disk);
        }
        Ok(disks)
    }

    fn interpret(&self, limits: &Limits) -> Result<Parsed, ConfigError> {
        let mut warnings = Vec::new();
        for (key, (_, location)) in &self.settings {
            if !KNOWN_KEYS.contains(&key.as_str()) {
                warnings.push(Warning { location: location.clone(), kind: WarningKind::UnknownKey(key.clone()) });
            }
        }
        let kind = self.kind()?;
        let name = self.name()?;
        let kernel = self
            .string("kernel")?
            .ok_or(ConfigError { location: Location::Whole, kind: ConfigErrorKind::MissingKey("kernel") })?;
        let ramdisk = self.string("ramdisk")?;
        let max_memory = limits.max_memory_mib.min(u64::MAX >> 20);
        let memory_mib = self.number("memory", 1, max_memory)?.unwrap_or(DEFAULT_MEMORY_MIB.min(max_memory));
        let maxmem_mib = self.number("maxmem", memory_mib, max_memory)?;
        let max_vcpus = u64::from(limits.max_vcpus.min(MAX_VCPUS));
        let vcpus = self.number("vcpus", 1, max_vcpus)?.unwrap_or(1) as u32;
        let maxvcpus = self.number("maxvcpus", u64::from(vcpus), max_vcpus)?.map(|count| count as u32);
        let cmdline = self.command_line(&mut warnings)?;
        let lifecycle = Lifecycle {
            on_poweroff: self.action("on_poweroff", LifecycleAction::Destroy)?,
            on_reboot: self.action("on_reboot", LifecycleAction::Restart)?,
            on_crash: self.action("on_crash", LifecycleAction::Destroy)?,
            on_watchdog: self.action("on_watchdog", LifecycleAction::Destroy)?,
        };
        let cpus = self.cpus(limits, maxvcpus.unwrap_or(vcpus), &mut warnings)?;
        let weight = self.number("cpu_weight", 1, 65535)?.unwrap_or(u64::from(DEFAULT_WEIGHT)) as u16;
        let cap = self.number("cap", 0, 65535)?.unwrap_or(0) as u16;
        let disks = self.disks()?;
        let config = DomainConfig {
            name,
            kind,
            kernel,
            ramdisk,
            memory_mib,
            maxmem_mib,
            vcpus,
            maxvcpus,
            cmdline,
            lifecycle,
            cpus,
            weight,
            cap,
            disks,
        };
        Ok(Parsed { config, warnings })
    }
}

/// The fuzz target's body (builtin-dom0/fuzz/fuzz_targets/xl_config.rs), shared with a
/// host test: arbitrary bytes as a config (and, after a NUL, as overrides) never
/// panic, errors are one line, and whatever is accepted keeps the module invariants.
/// Panics (by `assert!`) only when an invariant is broken — for fuzzing and tests.
#[doc(hidden)]
pub fn fuzz_one(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.split('\0');
    let file = parts.next().unwrap_or("");
    let overrides: Vec<&str> = parts.collect();
    let limits = Limits::for_machine(4, 4096);
    match parse_with_overrides(file, &overrides, &limits) {
        Ok(Parsed { config, warnings }) => {
            assert!(!config.name.is_empty() && config.name.len() <= MAX_NAME_LENGTH);
            assert!(config.vcpus >= 1 && config.max_vcpus() >= config.vcpus && config.max_vcpus() <= limits.max_vcpus);
            assert!(config.memory_mib >= 1 && config.maxmem_mib.unwrap_or(config.memory_mib) >= config.memory_mib);
            assert!(config.maxmem_mib.unwrap_or(config.memory_mib) <= limits.max_memory_mib);
            assert!(config.cmdline.len() < MAX_COMMAND_LINE && !config.cmdline.contains('\0'));
            assert!(config.weight >= 1);
            assert!(config.disks.len() <= MAX_DISKS);
            for (index, disk) in config.disks.iter().enumerate() {
                assert!(crate::backends::blkif::xenbus::virtual_device_number(&disk.vdev).is_ok());
                assert!(config.disks.iter().skip(index + 1).all(|other| other.vdev != disk.vdev));
                match &disk.source {
                    DiskSource::Phy(name) => assert!(!name.is_empty() && name.len() <= MAX_DISK_NAME_LENGTH),
                    DiskSource::Ram(bytes) => {
                        assert!(*bytes > 0 && *bytes <= MAX_RAM_DISK_BYTES && bytes.is_multiple_of(512))
                    }
                }
                assert_eq!(parse_disk_spec(&disk.to_string()).as_ref(), Ok(disk), "Display reads back");
            }
            for vcpu in 0..config.max_vcpus() {
                let set = config.cpus.for_vcpu(vcpu, limits.physical_cpus);
                assert!(!set.is_empty() && set.iter().all(|cpu| cpu < limits.physical_cpus));
            }
            for warning in warnings {
                assert!(!warning.to_string().contains('\n'));
            }
        }
        Err(error) => assert!(!error.to_string().contains('\n'), "multi-line error: {error}"),
    }
}

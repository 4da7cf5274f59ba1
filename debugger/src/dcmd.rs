//! What a dcmd and a walker are (mdb_modapi.h's dcmd and walker entries, as Rust
//! tables), the arguments a dcmd is called with, how it fails, and [`Debuggee`]: the
//! target plus what the engine learns about it once (symbols) and the vCPU the
//! commands look at.
//!
//! Why tables: `::help`, `::dcmds` and `::walkers` are generated from the same entries
//! that dispatch (crate::dcmds), so adding a dcmd touches one module's table.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::{Cell, OnceCell};
use core::fmt;

use crate::paging;
use crate::symbols::SymbolTable;
use crate::target::{Registers, Target, TargetError};

/// How a dcmd or walker fails. The engine prints `error: <message>` (and for
/// [`DcmdError::Usage`] the dcmd's usage line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DcmdError {
    /// Wrong arguments.
    Usage(String),
    /// The dcmd could not do its job.
    Failed(String),
    /// The target could not answer.
    Target(TargetError),
}

impl From<TargetError> for DcmdError {
    fn from(error: TargetError) -> Self {
        DcmdError::Target(error)
    }
}

impl From<fmt::Error> for DcmdError {
    fn from(_: fmt::Error) -> Self {
        DcmdError::Failed(String::from("output error"))
    }
}

impl fmt::Display for DcmdError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DcmdError::Usage(message) | DcmdError::Failed(message) => formatter.write_str(message),
            DcmdError::Target(error) => write!(formatter, "{error}"),
        }
    }
}

/// One call of a dcmd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DcmdCall<'a> {
    /// The address before `::` (explicit, or from a pipeline); `None` when the dcmd was
    /// called without one (mdb's DCMD_ADDRSPEC clear).
    pub address: Option<u64>,
    /// The repeat count after `,` (`addr,count::dcmd`), if given.
    pub count: Option<u64>,
    /// The arguments after the name, as words.
    pub args: &'a [String],
}

/// A dcmd's output besides its text: addresses for the next stage of a pipeline.
pub type DcmdResult = Result<Vec<u64>, DcmdError>;

/// One dcmd: an entry of a dcmd table.
pub struct Dcmd {
    /// The name after `::`, e.g. `"cpustack"`.
    pub name: &'static str,
    /// Synopsis, e.g. `"[-c cpu]"` (the name is added when printed).
    pub usage: &'static str,
    /// One line for `::dcmds`.
    pub summary: &'static str,
    /// The longer text `::help NAME` prints after the usage.
    pub help: &'static str,
    pub run: fn(&Debuggee<'_>, &DcmdCall<'_>, &mut dyn fmt::Write) -> DcmdResult,
}

/// One walker: produces the addresses `::walk NAME` passes on.
pub struct Walker {
    pub name: &'static str,
    pub summary: &'static str,
    /// Given the start address (if any), returns every address of the walk.
    pub walk: fn(&Debuggee<'_>, Option<u64>) -> DcmdResult,
}

/// Parsed `-x` / `-x VALUE` options of a dcmd's arguments (mdb_getopts), plus the
/// words that are not options.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    flags: Vec<(char, Option<String>)>,
    pub positional: Vec<String>,
}

impl Options {
    /// Parses `args` against `spec`: each letter is a flag, a letter followed by `:`
    /// takes a value (`-c 1` or `-c1`). Unknown options are usage errors.
    pub fn parse(args: &[String], spec: &str) -> Result<Options, DcmdError> {
        let mut options = Options::default();
        let mut words = args.iter();
        while let Some(word) = words.next() {
            let Some(letters) = word.strip_prefix('-').filter(|rest| !rest.is_empty()) else {
                options.positional.push(word.clone());
                continue;
            };
            for (position, letter) in letters.char_indices() {
                let Some(at) = spec.find(letter) else {
                    return Err(DcmdError::Usage(alloc::format!("unknown option -{letter}")));
                };
                let takes_value = spec[at + letter.len_utf8()..].starts_with(':');
                if !takes_value {
                    options.flags.push((letter, None));
                    continue;
                }
                let rest = &letters[position + letter.len_utf8()..];
                let value = if !rest.is_empty() {
                    String::from(rest)
                } else {
                    words.next().cloned().ok_or_else(|| DcmdError::Usage(alloc::format!("-{letter} needs a value")))?
                };
                options.flags.push((letter, Some(value)));
                break;
            }
        }
        Ok(options)
    }

    /// True if flag `letter` was given.
    pub fn has(&self, letter: char) -> bool {
        self.flags.iter().any(|(flag, _)| *flag == letter)
    }

    /// The value of the last `-letter VALUE`, if given.
    pub fn value(&self, letter: char) -> Option<&str> {
        self.flags.iter().rev().find(|(flag, _)| *flag == letter).and_then(|(_, value)| value.as_deref())
    }
}

/// Parses a number as mdb reads dcmd option values: hex by default (`10` is 16),
/// `0x` hex, `0t` decimal, `0o` octal, `0i` binary.
pub fn parse_number(text: &str) -> Result<u64, DcmdError> {
    let lower = text.trim();
    let (digits, radix) = if let Some(rest) = lower.strip_prefix("0x").or_else(|| lower.strip_prefix("0X")) {
        (rest, 16)
    } else if let Some(rest) = lower.strip_prefix("0t").or_else(|| lower.strip_prefix("0T")) {
        (rest, 10)
    } else if let Some(rest) = lower.strip_prefix("0o").or_else(|| lower.strip_prefix("0O")) {
        (rest, 8)
    } else if let Some(rest) = lower.strip_prefix("0i").or_else(|| lower.strip_prefix("0I")) {
        (rest, 2)
    } else {
        (lower, 16)
    };
    u64::from_str_radix(digits, radix).map_err(|_| DcmdError::Usage(alloc::format!("'{text}' is not a number")))
}

/// The vCPU a dcmd with a `-c cpu` option is about: `-c`'s value, else the address
/// before `::` (`1::cpuregs`, and each vCPU of `::walk cpu | ...`), else the current one.
pub fn selected_vcpu(debuggee: &Debuggee<'_>, call: &DcmdCall<'_>, options: &Options) -> Result<u32, DcmdError> {
    let vcpu = match (options.value('c'), call.address) {
        (Some(text), _) => parse_number(text)?,
        (None, Some(address)) => address,
        (None, None) => u64::from(debuggee.current_vcpu()),
    };
    u32::try_from(vcpu).map_err(|_| DcmdError::Failed(alloc::format!("no vCPU {vcpu}")))
}

/// The debugged domain as the dcmds see it: the target, the kernel's symbols (loaded
/// on first use), and the current vCPU (`::cpuregs` etc. default to it; virtual
/// addresses go through its page tables).
pub struct Debuggee<'a> {
    target: Box<dyn Target + 'a>,
    symbols: OnceCell<SymbolTable>,
    /// The Linux guest's vmcoreinfo (found on first use; None when there is none).
    vmcoreinfo: OnceCell<Option<crate::linux::VmcoreInfo>>,
    current_vcpu: Cell<u32>,
}

impl<'a> Debuggee<'a> {
    /// Wraps `target`; vCPU 0 is current.
    pub fn new(target: Box<dyn Target + 'a>) -> Debuggee<'a> {
        Debuggee { target, symbols: OnceCell::new(), vmcoreinfo: OnceCell::new(), current_vcpu: Cell::new(0) }
    }

    /// The target.
    pub fn target(&self) -> &dyn Target {
        &*self.target
    }

    /// The kernel's symbols, loaded on first use (an empty table if none are found).
    pub fn symbols(&self) -> &SymbolTable {
        self.symbols.get_or_init(|| crate::symbols::load_with_vmcoreinfo(&*self.target, self.vmcoreinfo()))
    }

    /// The Linux guest's vmcoreinfo, searched for once (None if the guest has none).
    pub fn vmcoreinfo(&self) -> Option<&crate::linux::VmcoreInfo> {
        self.vmcoreinfo.get_or_init(|| crate::linux::vmcoreinfo::find(&*self.target)).as_ref()
    }

    /// The vCPU virtual addresses are translated through.
    pub fn current_vcpu(&self) -> u32 {
        self.current_vcpu.get()
    }

    /// Makes `vcpu` current.
    pub fn set_current_vcpu(&self, vcpu: u32) -> Result<(), TargetError> {
        self.target.registers(vcpu)?;
        self.current_vcpu.set(vcpu);
        Ok(())
    }

    /// The current vCPU's registers.
    pub fn registers(&self) -> Result<Registers, TargetError> {
        self.target.registers(self.current_vcpu.get())
    }

    /// Reads guest-virtual memory through the current vCPU's page tables.
    pub fn read_virtual(&self, address: u64, buffer: &mut [u8]) -> Result<(), TargetError> {
        let registers = self.registers()?;
        paging::read_virtual(&*self.target, &registers, address, buffer)
    }

    /// Reads a little-endian u64 at a guest-virtual address.
    pub fn read_virtual_u64(&self, address: u64) -> Result<u64, TargetError> {
        let mut bytes = [0u8; 8];
        self.read_virtual(address, &mut bytes)?;
        Ok(u64::from_le_bytes(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn words(text: &str) -> Vec<String> {
        text.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn numbers_are_hex_unless_prefixed() {
        assert_eq!(parse_number("10"), Ok(16));
        assert_eq!(parse_number("0t10"), Ok(10));
        assert_eq!(parse_number("0x1f"), Ok(31));
        assert_eq!(parse_number("0i101"), Ok(5));
        assert!(parse_number("zz").is_err());
        assert!(parse_number("").is_err());
    }

    #[test]
    fn options_parse_flags_values_and_positionals() {
        let options = Options::parse(&words("-v -c 1 path -x3"), "vc:x:").unwrap();
        assert!(options.has('v'));
        assert_eq!(options.value('c'), Some("1"));
        assert_eq!(options.value('x'), Some("3"));
        assert_eq!(options.positional, vec![String::from("path")]);
        assert!(matches!(Options::parse(&words("-q"), "v"), Err(DcmdError::Usage(_))));
        assert!(matches!(Options::parse(&words("-c"), "c:"), Err(DcmdError::Usage(_))));
    }
}

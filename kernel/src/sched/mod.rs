//! Scheduling vCPUs onto physical CPUs.
//!
//! What it owns: the decision of which vCPU a physical CPU runs next and for how long,
//! weights and caps per domain, hard affinity per vCPU, and the run-time accounting
//! `list` and `vcpu-list` report. The policy is Xen's credit scheduler (credit1) in
//! spirit — see [`credit`] for the algorithm and its invariants.
//!
//! Layering: this is portable plain data (no locks, no timers, no hardware). The per-CPU
//! run loop owns the one lock around a [`CreditScheduler`], calls
//! [`CreditScheduler::pick_next`] when a CPU needs work and
//! [`CreditScheduler::put_back`] when a vCPU stops running, and arms the timers itself.
//!
//! [`CpuSet`] lives here because affinity, `vcpu-pin` and the shell all speak it: a set
//! of up to [`MAX_CPUS`] physical CPUs, parsed from and printed in xl's cpumap syntax
//! (`all`, `0-3`, `0,2-3`, `all,^1`).

pub mod credit;

pub use credit::{
    AfterRun, CreditScheduler, DomainParams, SchedError, VcpuKey, VcpuState, VcpuStatus, ACCOUNTING_PERIOD_NS,
    DEFAULT_WEIGHT, MIN_TIMESLICE_NS, TIMESLICE_NS,
};

use core::fmt;
use core::str::FromStr;

/// Most physical CPUs a [`CpuSet`] (and so the scheduler) can name.
pub const MAX_CPUS: u32 = 256;

const WORDS: usize = (MAX_CPUS / 64) as usize;

/// A set of physical CPU numbers `0..MAX_CPUS`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct CpuSet {
    words: [u64; WORDS],
}

impl CpuSet {
    /// No CPU.
    pub const fn empty() -> Self {
        Self { words: [0; WORDS] }
    }

    /// Every CPU number up to [`MAX_CPUS`] (xl's `all`).
    pub const fn all() -> Self {
        Self { words: [u64::MAX; WORDS] }
    }

    /// CPUs `0..count` (clamped to [`MAX_CPUS`]).
    pub fn first(count: u32) -> Self {
        let mut set = Self::empty();
        for cpu in 0..count.min(MAX_CPUS) {
            set.insert(cpu);
        }
        set
    }

    /// Just `cpu` (empty if it is out of range).
    pub fn single(cpu: u32) -> Self {
        let mut set = Self::empty();
        set.insert(cpu);
        set
    }

    /// Adds `cpu`; false if it is out of range.
    pub fn insert(&mut self, cpu: u32) -> bool {
        if cpu >= MAX_CPUS {
            return false;
        }
        self.words[(cpu / 64) as usize] |= 1 << (cpu % 64);
        true
    }

    /// Removes `cpu` (out-of-range numbers are never members).
    pub fn remove(&mut self, cpu: u32) {
        if cpu < MAX_CPUS {
            self.words[(cpu / 64) as usize] &= !(1 << (cpu % 64));
        }
    }

    pub fn contains(&self, cpu: u32) -> bool {
        cpu < MAX_CPUS && self.words[(cpu / 64) as usize] & (1 << (cpu % 64)) != 0
    }

    pub fn is_empty(&self) -> bool {
        self.words.iter().all(|word| *word == 0)
    }

    pub fn count(&self) -> u32 {
        self.words.iter().map(|word| word.count_ones()).sum()
    }

    /// The CPUs in both sets.
    pub fn intersection(&self, other: &CpuSet) -> CpuSet {
        let mut words = self.words;
        for (word, theirs) in words.iter_mut().zip(other.words) {
            *word &= theirs;
        }
        CpuSet { words }
    }

    /// The members in increasing order.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        (0..MAX_CPUS).filter(move |cpu| self.contains(*cpu))
    }

    /// Parses xl's cpumap syntax: comma-separated items, each `all`, `none`, `N`, `N-M`,
    /// or one of the last two prefixed with `^` to remove CPUs. A list that starts with
    /// a removal starts from `all` (`^0` is every CPU but 0).
    pub fn parse(text: &str) -> Result<CpuSet, CpuSetParseError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(CpuSetParseError::Empty);
        }
        let mut set = CpuSet::empty();
        for (position, item) in text.split(',').enumerate() {
            let item = item.trim();
            let (remove, range) = match item.strip_prefix('^') {
                Some(rest) => (true, rest.trim()),
                None => (false, item),
            };
            if remove && position == 0 {
                set = CpuSet::all();
            }
            let (first, last) = match range {
                "all" if !remove => (0, MAX_CPUS - 1),
                "none" if !remove => continue,
                _ => match range.split_once('-') {
                    Some((first, last)) => (parse_cpu(first)?, parse_cpu(last)?),
                    None => {
                        let cpu = parse_cpu(range)?;
                        (cpu, cpu)
                    }
                },
            };
            if first > last {
                return Err(CpuSetParseError::ReversedRange);
            }
            for cpu in first..=last {
                if remove {
                    set.remove(cpu);
                } else {
                    set.insert(cpu);
                }
            }
        }
        Ok(set)
    }
}

fn parse_cpu(text: &str) -> Result<u32, CpuSetParseError> {
    let text = text.trim();
    if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(CpuSetParseError::InvalidItem);
    }
    match text.parse::<u32>() {
        Ok(cpu) if cpu < MAX_CPUS => Ok(cpu),
        _ => Err(CpuSetParseError::OutOfRange),
    }
}

impl FromStr for CpuSet {
    type Err = CpuSetParseError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        CpuSet::parse(text)
    }
}

/// The compact form [`CpuSet::parse`] reads back: `all`, `none`, or ranges (`0,2-3`).
impl fmt::Display for CpuSet {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == CpuSet::all() {
            return formatter.write_str("all");
        }
        if self.is_empty() {
            return formatter.write_str("none");
        }
        let mut separator = "";
        let mut cpu = 0;
        while cpu < MAX_CPUS {
            if !self.contains(cpu) {
                cpu += 1;
                continue;
            }
            let first = cpu;
            while cpu + 1 < MAX_CPUS && self.contains(cpu + 1) {
                cpu += 1;
            }
            if first == cpu {
                write!(formatter, "{separator}{first}")?;
            } else {
                write!(formatter, "{separator}{first}-{cpu}")?;
            }
            separator = ",";
            cpu += 1;
        }
        Ok(())
    }
}

impl fmt::Debug for CpuSet {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "CpuSet({self})")
    }
}

/// Why a cpumap string was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuSetParseError {
    /// Nothing was given.
    Empty,
    /// An item is not `all`, `none`, a number or a range.
    InvalidItem,
    /// A CPU number is [`MAX_CPUS`] or more.
    OutOfRange,
    /// A range runs backwards (`3-1`).
    ReversedRange,
}

impl fmt::Display for CpuSetParseError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            CpuSetParseError::Empty => "empty cpu list",
            CpuSetParseError::InvalidItem => "expected all, none, N or N-M",
            CpuSetParseError::OutOfRange => "cpu number too large",
            CpuSetParseError::ReversedRange => "range runs backwards",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_print_xl_cpumaps() {
        let cases = [
            ("all", "all"),
            ("0-3", "0-3"),
            ("0,2-3", "0,2-3"),
            (" 3 , 2, 0 ", "0,2-3"),
            ("5", "5"),
            ("0-255", "all"),
            ("none", "none"),
            ("all,^1", "0,2-255"),
            ("^0-253", "254-255"),
            ("0-7,^2-3", "0-1,4-7"),
            ("1,1,1", "1"),
        ];
        for (text, printed) in cases {
            let set = CpuSet::parse(text).unwrap();
            assert_eq!(set.to_string(), printed, "{text}");
            assert_eq!(CpuSet::parse(printed), Ok(set), "{printed} reads back");
        }
        assert_eq!("0,2-3".parse::<CpuSet>().unwrap().iter().collect::<Vec<_>>(), [0, 2, 3]);
    }

    #[test]
    fn bad_cpumaps() {
        assert_eq!(CpuSet::parse(""), Err(CpuSetParseError::Empty));
        assert_eq!(CpuSet::parse("  "), Err(CpuSetParseError::Empty));
        assert_eq!(CpuSet::parse("256"), Err(CpuSetParseError::OutOfRange));
        assert_eq!(CpuSet::parse("0-99999999999999"), Err(CpuSetParseError::OutOfRange));
        assert_eq!(CpuSet::parse("3-1"), Err(CpuSetParseError::ReversedRange));
        for bad in ["x", "1,", ",1", "-1", "1-", "+1", "1--2", "^all", "nodes:0", "1 2", "^"] {
            assert_eq!(CpuSet::parse(bad), Err(CpuSetParseError::InvalidItem), "{bad}");
        }
    }

    #[test]
    fn set_operations() {
        let mut set = CpuSet::first(4);
        assert_eq!(set.count(), 4);
        assert!(!set.insert(256));
        assert!(!set.contains(256) && !set.contains(u32::MAX));
        set.remove(1);
        set.remove(999);
        assert_eq!(set.to_string(), "0,2-3");
        assert_eq!(set.intersection(&CpuSet::single(2)), CpuSet::single(2));
        assert!(CpuSet::single(300).is_empty());
        assert_eq!(CpuSet::all().count(), MAX_CPUS);
        assert_eq!(CpuSet::first(1000), CpuSet::all());
        assert_eq!(format!("{:?}", CpuSet::single(7)), "CpuSet(7)");
    }
}

//! Physical-CPU sets and the `cpus=` affinity syntax of xl.cfg(5).
//!
//! A CPU list is comma-separated items, each `N`, `N-M` or `all`, any of them
//! prefixed with `^` to remove rather than add; items apply left to right starting from
//! the empty set (xl's `cpurange_parse`), so "all but CPU 1" is `"all,^1"`. `cpus` is
//! either one such string (every vCPU gets the same set) or a list of them (entry i is
//! vCPU i's set; vCPUs beyond the list may run anywhere). NUMA node forms
//! (`node:`/`nodes:`) are refused: Basalt has no NUMA placement.

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

/// Most physical CPUs a set can name (bounds every bitmap here).
pub const MAX_PHYSICAL_CPUS: u32 = 4096;

/// A set of physical CPUs `0..physical_cpus`.
#[derive(Clone, PartialEq, Eq)]
pub struct CpuSet {
    words: Vec<u64>,
    physical_cpus: u32,
}

impl CpuSet {
    /// No CPU, over a machine of `physical_cpus` (clamped to [`MAX_PHYSICAL_CPUS`]).
    pub fn empty(physical_cpus: u32) -> CpuSet {
        let physical_cpus = physical_cpus.min(MAX_PHYSICAL_CPUS);
        CpuSet { words: vec![0; physical_cpus.div_ceil(64) as usize], physical_cpus }
    }

    /// Every CPU of the machine.
    pub fn all(physical_cpus: u32) -> CpuSet {
        let mut set = CpuSet::empty(physical_cpus);
        set.set_range(0, set.physical_cpus, true);
        set
    }

    /// Number of physical CPUs the set ranges over.
    pub fn physical_cpus(&self) -> u32 {
        self.physical_cpus
    }

    pub fn contains(&self, cpu: u32) -> bool {
        cpu < self.physical_cpus
            && self.words.get((cpu / 64) as usize).is_some_and(|word| word & (1 << (cpu % 64)) != 0)
    }

    pub fn is_empty(&self) -> bool {
        self.words.iter().all(|&word| word == 0)
    }

    /// Whether every CPU of the machine is in the set.
    pub fn is_all(&self) -> bool {
        self.count() == self.physical_cpus
    }

    pub fn count(&self) -> u32 {
        self.words.iter().map(|word| word.count_ones()).sum()
    }

    /// The CPUs in the set, ascending.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.physical_cpus).filter(|&cpu| self.contains(cpu))
    }

    /// Adds (or removes) CPUs `first..end`, clamped to the machine.
    fn set_range(&mut self, first: u32, end: u32, present: bool) {
        for cpu in first..end.min(self.physical_cpus) {
            if let Some(word) = self.words.get_mut((cpu / 64) as usize) {
                if present {
                    *word |= 1 << (cpu % 64);
                } else {
                    *word &= !(1 << (cpu % 64));
                }
            }
        }
    }
}

/// As xl prints it: `0-3,6`.
impl fmt::Display for CpuSet {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return formatter.write_str("none");
        }
        let mut first = true;
        let mut cpus = self.iter().peekable();
        while let Some(start) = cpus.next() {
            let mut end = start;
            while cpus.peek() == Some(&(end + 1)) {
                end += 1;
                cpus.next();
            }
            if !first {
                formatter.write_str(",")?;
            }
            first = false;
            if start == end {
                write!(formatter, "{start}")?;
            } else {
                write!(formatter, "{start}-{end}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for CpuSet {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "CpuSet({self})")
    }
}

/// Where a domain's vCPUs may run (`cpus=`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CpuAffinity {
    /// No `cpus` setting: anywhere.
    Any,
    /// One set for every vCPU.
    All(CpuSet),
    /// vCPU i's set is entry i; vCPUs past the end run anywhere.
    PerVcpu(Vec<CpuSet>),
}

impl CpuAffinity {
    /// The set vCPU `vcpu` may run on, on a machine of `physical_cpus`.
    pub fn for_vcpu(&self, vcpu: u32, physical_cpus: u32) -> CpuSet {
        match self {
            CpuAffinity::Any => CpuSet::all(physical_cpus),
            CpuAffinity::All(set) => set.clone(),
            CpuAffinity::PerVcpu(sets) => {
                sets.get(vcpu as usize).cloned().unwrap_or_else(|| CpuSet::all(physical_cpus))
            }
        }
    }
}

/// Why a CPU list was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CpuListError {
    /// An item is not `N`, `N-M` or `all`.
    BadItem(String),
    /// `N-M` with M < N.
    BackwardsRange(String),
    /// A CPU the machine does not have.
    NoSuchCpu { cpu: u64, physical_cpus: u32 },
    /// `node:`/`nodes:` forms.
    NumaNotSupported,
    /// The items leave no CPU.
    Empty,
}

impl fmt::Display for CpuListError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CpuListError::BadItem(item) => {
                write!(formatter, "\"{}\" is not N, N-M or all (^ to exclude)", super::Printable(item))
            }
            CpuListError::BackwardsRange(item) => {
                write!(formatter, "range \"{}\" runs backwards", super::Printable(item))
            }
            CpuListError::NoSuchCpu { cpu, physical_cpus } => {
                write!(
                    formatter,
                    "CPU {cpu} does not exist (this machine has CPUs 0-{})",
                    physical_cpus.saturating_sub(1)
                )
            }
            CpuListError::NumaNotSupported => formatter.write_str("NUMA node affinity is not supported"),
            CpuListError::Empty => formatter.write_str("selects no CPU (for all but some, write \"all,^N\")"),
        }
    }
}

fn cpu_number(text: &str, physical_cpus: u32) -> Result<u32, CpuListError> {
    if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(CpuListError::BadItem(text.into()));
    }
    let cpu = text.parse::<u64>().unwrap_or(u64::MAX);
    match u32::try_from(cpu) {
        Ok(cpu) if cpu < physical_cpus => Ok(cpu),
        _ => Err(CpuListError::NoSuchCpu { cpu, physical_cpus }),
    }
}

/// Parses one CPU list (`"0-3,^2"`) over a machine of `physical_cpus`.
pub fn parse_cpu_list(text: &str, physical_cpus: u32) -> Result<CpuSet, CpuListError> {
    let mut set = CpuSet::empty(physical_cpus);
    let physical_cpus = set.physical_cpus;
    for item in text.split(',') {
        let item = item.trim();
        let (present, body) = match item.strip_prefix('^') {
            Some(rest) => (false, rest.trim()),
            None => (true, item),
        };
        if body.starts_with("node") {
            return Err(CpuListError::NumaNotSupported);
        }
        let (first, end) = if body == "all" {
            (0, physical_cpus)
        } else if let Some((low, high)) = body.split_once('-') {
            let (low, high) = (cpu_number(low.trim(), physical_cpus)?, cpu_number(high.trim(), physical_cpus)?);
            if high < low {
                return Err(CpuListError::BackwardsRange(item.into()));
            }
            (low, high + 1)
        } else {
            let cpu = cpu_number(body, physical_cpus)?;
            (cpu, cpu + 1)
        };
        set.set_range(first, end, present);
    }
    if set.is_empty() {
        return Err(CpuListError::Empty);
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn xl_cpu_lists() {
        assert_eq!(parse_cpu_list("all", 8).unwrap().to_string(), "0-7");
        assert_eq!(parse_cpu_list("0-3", 8).unwrap().to_string(), "0-3");
        assert_eq!(parse_cpu_list("0,2-3", 8).unwrap().to_string(), "0,2-3");
        assert_eq!(parse_cpu_list("all,^1", 8).unwrap().to_string(), "0,2-7");
        assert_eq!(parse_cpu_list("0-5, ^2-3 ,7", 8).unwrap().to_string(), "0-1,4-5,7");
        assert!(parse_cpu_list("all", 8).unwrap().is_all());
        assert_eq!(parse_cpu_list("^1", 8).unwrap_err(), CpuListError::Empty);
        assert_eq!(parse_cpu_list("8", 8).unwrap_err(), CpuListError::NoSuchCpu { cpu: 8, physical_cpus: 8 });
        assert_eq!(parse_cpu_list("3-1", 8).unwrap_err(), CpuListError::BackwardsRange("3-1".into()));
        assert_eq!(parse_cpu_list("nodes:0", 8).unwrap_err(), CpuListError::NumaNotSupported);
        assert_eq!(parse_cpu_list("", 8).unwrap_err(), CpuListError::BadItem("".into()));
        assert_eq!(parse_cpu_list("x", 8).unwrap_err(), CpuListError::BadItem("x".into()));
        assert!(matches!(parse_cpu_list("99999999999999999999999", 8), Err(CpuListError::NoSuchCpu { .. })));
        // A huge machine is clamped, not allocated.
        assert_eq!(CpuSet::all(u32::MAX).count(), MAX_PHYSICAL_CPUS);
    }

    #[test]
    fn affinity_per_vcpu() {
        let affinity = CpuAffinity::PerVcpu(vec![parse_cpu_list("2", 4).unwrap()]);
        assert_eq!(affinity.for_vcpu(0, 4).to_string(), "2");
        assert_eq!(affinity.for_vcpu(1, 4).to_string(), "0-3");
        assert_eq!(CpuAffinity::Any.for_vcpu(5, 4).to_string(), "0-3");
    }
}

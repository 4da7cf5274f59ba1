//! Every dcmd and walker, in one table per area; the engine, `::help`, `::dcmds` and
//! `::walkers` read [`all_dcmds`] and [`all_walkers`]. To add a dcmd, add an entry to
//! its area's `DCMDS` (a new area adds one line to `DCMD_TABLES`).

use crate::dcmd::{Dcmd, Walker};

pub mod builtin;
pub mod memory;
pub mod stack;
pub mod xen;

#[cfg(test)]
mod core_tests;

const DCMD_TABLES: &[&[Dcmd]] = &[builtin::DCMDS, memory::DCMDS, stack::DCMDS, xen::DCMDS];
const WALKER_TABLES: &[&[Walker]] = &[builtin::WALKERS, memory::WALKERS, stack::WALKERS, xen::WALKERS];

/// Every dcmd, in table order (sort for display).
pub fn all_dcmds() -> impl Iterator<Item = &'static Dcmd> {
    DCMD_TABLES.iter().flat_map(|table| table.iter())
}

/// Every walker, in table order.
pub fn all_walkers() -> impl Iterator<Item = &'static Walker> {
    WALKER_TABLES.iter().flat_map(|table| table.iter())
}

/// The dcmd called `name`.
pub fn find_dcmd(name: &str) -> Option<&'static Dcmd> {
    all_dcmds().find(|dcmd| dcmd.name == name)
}

/// The walker called `name`.
pub fn find_walker(name: &str) -> Option<&'static Walker> {
    all_walkers().find(|walker| walker.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique() {
        let mut names: alloc::vec::Vec<&str> = all_dcmds().map(|dcmd| dcmd.name).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(before, names.len(), "a dcmd name is defined twice");
        let mut walkers: alloc::vec::Vec<&str> = all_walkers().map(|walker| walker.name).collect();
        walkers.sort_unstable();
        let before = walkers.len();
        walkers.dedup();
        assert_eq!(before, walkers.len(), "a walker name is defined twice");
    }
}

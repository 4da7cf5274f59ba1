//! The Basalt debugger: an mdb-style engine over one [`target::Target`] interface.
//!
//! Targets are a live domain inside the appliance (image/ implements the trait over
//! the hypervisor) and an ELF dump-core file ([`core_file`]); dcmds read bytes through
//! the target and never follow hypervisor pointers, so each runs on both and on host
//! fixtures (DESIGN.md, decision 9). The same engine runs in the shell (`mdb DOMAIN`)
//! and on the host (`basalt-mdb`, src/bin).
//!
//! Layout: [`target`] (the interface and a test fixture), [`paging`] (guest page-table
//! walks), [`symbols`] (ELF symtab, kallsyms), [`dcmd`] (the dcmd/walker table
//! entries and the state they run on).
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod core_file;
pub mod dcmd;
pub mod dcmds;
pub mod engine;
pub mod format;
pub mod lang;
pub mod linux;
pub mod paging;
pub mod stack;
pub mod symbols;
pub mod target;

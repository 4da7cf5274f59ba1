//! The Basalt debugger: an mdb-style engine over one `Target` interface.
//!
//! Targets will be the hypervisor itself, a live domain and an ELF dump-core file
//! (DESIGN.md, decision 9). dcmds read bytes through the target and never follow
//! hypervisor pointers, so each runs on all three and on host fixtures. The appliance
//! spine (issue 2) has no debugger yet; the crate exists so the layering is fixed.
#![no_std]
#![forbid(unsafe_code)]

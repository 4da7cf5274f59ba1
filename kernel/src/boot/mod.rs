//! Boot: the multiboot2 hand-off and the hypervisor command line.
pub mod cmdline;

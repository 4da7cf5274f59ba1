//! The hypervisor log and the consoles it is shown on.
pub mod fbtext;
pub mod logring;

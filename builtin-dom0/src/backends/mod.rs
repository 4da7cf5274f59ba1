//! The backends dom0 serves guests with. So far: the primary console.
pub mod blkif;
pub mod console;

//! The toolstack (domain manager): turning a domain's configuration and kernel into a
//! running domain. So far: reading a PVH kernel image ([`pvh_elf`]).
pub mod pvh_elf;

//! The toolstack (domain manager): turning a domain's configuration and kernel into a
//! running domain. So far: unpacking a bzImage ([`bzimage`]) and reading the PVH kernel
//! ELF inside ([`pvh_elf`]).
pub mod bzimage;
pub mod pvh_elf;

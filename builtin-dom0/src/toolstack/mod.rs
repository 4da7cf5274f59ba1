//! The toolstack (domain manager): turning a domain's configuration and kernel into a
//! running domain. So far: unpacking a bzImage ([`bzimage`]) and reading the PVH kernel
//! ELF inside ([`pvh_elf`]), and the platform it boots into ([`pvh_platform`]).
pub mod bzimage;
mod le;
pub mod pvh_elf;
pub mod pvh_platform;

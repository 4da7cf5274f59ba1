//! The toolstack (domain manager): turning a domain's configuration and kernel into a
//! running domain. Configs in xl.cfg syntax ([`config`]); unpacking a bzImage
//! ([`bzimage`]) and reading the PVH kernel ELF inside ([`pvh_elf`]); the platform it
//! boots into ([`pvh_platform`]); the boot image put together from those ([`builder`]);
//! and the domain manager that creates, tracks and restarts domains over a narrow host
//! interface ([`manager`]).
pub mod builder;
pub mod bzimage;
pub mod config;
mod le;
pub mod manager;
pub mod pvh_elf;
pub mod pvh_platform;

//! ACPI: finding and reading the firmware's tables (RSDP, RSDT/XSDT, MADT, FADT, DSDT).
pub mod tables;

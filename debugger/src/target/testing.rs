//! A target built in memory for host tests: guest-physical pages in a map, registers
//! per vCPU, and metadata set by the test. [`FakeTarget::map_virtual`] builds 4-level
//! long-mode page tables so tests can read by virtual address exactly as on a real
//! guest.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use super::{
    DomainSummary, EventChannel, GrantEntry, Registers, Target, TargetError, TargetInfo, TargetKind, XenstoreNode,
};
use crate::target::AddressSpace;

const PAGE: u64 = 4096;

/// An in-memory target. Every field is public so a test can set exactly what it needs.
#[derive(Debug, Clone)]
pub struct FakeTarget {
    pub info: TargetInfo,
    pub pages: BTreeMap<u64, Vec<u8>>,
    pub registers: Vec<Registers>,
    pub event_channels: Option<Vec<EventChannel>>,
    pub grants: Option<Vec<GrantEntry>>,
    pub xenstore: Option<Vec<XenstoreNode>>,
    pub shared_info: Option<Vec<u8>>,
    pub kernel_symbol_file: Option<Vec<u8>>,
    pub domains: Option<Vec<DomainSummary>>,
    /// Where [`FakeTarget::map_virtual`] takes new page-table pages from.
    pub next_table_frame: u64,
    /// The PML4's guest-physical address once a mapping exists.
    pub page_table_root: Option<u64>,
}

impl FakeTarget {
    /// A one-vCPU domain "fake" (id 1) with no memory.
    pub fn new() -> FakeTarget {
        FakeTarget {
            info: TargetInfo {
                kind: TargetKind::CoreFile { source: String::from("fixture") },
                domain_id: 1,
                domain_name: String::from("fake"),
                vcpus: 1,
                memory_bytes: 0,
                state: String::from("running"),
                vcpu_snapshot: String::from("fixture"),
                hypervisor: String::from("Basalt test"),
                host: None,
            },
            pages: BTreeMap::new(),
            registers: vec![Registers::default()],
            event_channels: None,
            grants: None,
            xenstore: None,
            shared_info: None,
            kernel_symbol_file: None,
            domains: None,
            next_table_frame: 0x10_0000,
            page_table_root: None,
        }
    }

    /// Writes `bytes` at guest-physical `address`, creating pages as needed.
    pub fn write_physical(&mut self, address: u64, bytes: &[u8]) {
        for (index, byte) in bytes.iter().enumerate() {
            let at = address + index as u64;
            let page = self.pages.entry(at & !(PAGE - 1)).or_insert_with(|| vec![0; PAGE as usize]);
            page[(at % PAGE) as usize] = *byte;
        }
        self.info.memory_bytes = self.pages.len() as u64 * PAGE;
    }

    /// Writes a little-endian u64 at guest-physical `address`.
    pub fn write_physical_u64(&mut self, address: u64, value: u64) {
        self.write_physical(address, &value.to_le_bytes());
    }

    fn read_physical_u64(&self, address: u64) -> u64 {
        let mut bytes = [0u8; 8];
        match self.read_physical(address, &mut bytes) {
            Ok(()) => u64::from_le_bytes(bytes),
            Err(_) => 0,
        }
    }

    fn allocate_table(&mut self) -> u64 {
        let frame = self.next_table_frame;
        self.next_table_frame += PAGE;
        self.write_physical(frame, &[0; PAGE as usize]);
        frame
    }

    /// Maps the 4 KiB virtual page at `virtual_address` to `physical` in 4-level page
    /// tables (present + writable), and points every vCPU's CR3 at them with long
    /// mode and paging on.
    pub fn map_virtual(&mut self, virtual_address: u64, physical: u64) {
        const PRESENT_WRITABLE: u64 = 0b11;
        let root = match self.page_table_root {
            Some(root) => root,
            None => {
                let root = self.allocate_table();
                self.page_table_root = Some(root);
                root
            }
        };
        let mut table = root;
        for level in (1..4).rev() {
            let index = (virtual_address >> (12 + 9 * level)) & 0x1ff;
            let entry_address = table + index * 8;
            let entry = self.read_physical_u64(entry_address);
            table = if entry & 1 != 0 {
                entry & 0x000f_ffff_ffff_f000
            } else {
                let next = self.allocate_table();
                self.write_physical_u64(entry_address, next | PRESENT_WRITABLE);
                next
            };
        }
        let index = (virtual_address >> 12) & 0x1ff;
        self.write_physical_u64(table + index * 8, (physical & !(PAGE - 1)) | PRESENT_WRITABLE);
        if !self.pages.contains_key(&(physical & !(PAGE - 1))) {
            self.write_physical(physical & !(PAGE - 1), &[0; PAGE as usize]);
        }
        for registers in &mut self.registers {
            registers.cr3 = root;
            registers.cr0 = 0x8000_0011;
            registers.cr4 = 0x20;
            registers.efer = 0x500;
        }
    }

    /// Maps `length` bytes from `virtual_address` to consecutive physical pages from
    /// `physical` and writes `bytes` there (a convenience for stacks and text).
    pub fn write_virtual(&mut self, virtual_address: u64, physical: u64, bytes: &[u8]) {
        let first = virtual_address & !(PAGE - 1);
        let last = (virtual_address + bytes.len().max(1) as u64 - 1) & !(PAGE - 1);
        let mut page = first;
        while page <= last {
            self.map_virtual(page, (physical & !(PAGE - 1)) + (page - first));
            page += PAGE;
        }
        let offset = virtual_address - first;
        self.write_physical((physical & !(PAGE - 1)) + offset, bytes);
    }
}

impl Default for FakeTarget {
    fn default() -> Self {
        Self::new()
    }
}

impl Target for FakeTarget {
    fn info(&self) -> TargetInfo {
        self.info.clone()
    }

    fn registers(&self, vcpu: u32) -> Result<Registers, TargetError> {
        self.registers.get(vcpu as usize).copied().ok_or(TargetError::NoSuchVcpu(vcpu))
    }

    fn read_physical(&self, address: u64, buffer: &mut [u8]) -> Result<(), TargetError> {
        let mut done = 0usize;
        while done < buffer.len() {
            let at = address
                .checked_add(done as u64)
                .ok_or(TargetError::Unmapped { space: AddressSpace::Physical, address })?;
            let page = self
                .pages
                .get(&(at & !(PAGE - 1)))
                .ok_or(TargetError::Unmapped { space: AddressSpace::Physical, address: at })?;
            let offset = (at % PAGE) as usize;
            let length = (PAGE as usize - offset).min(buffer.len() - done);
            buffer[done..done + length].copy_from_slice(&page[offset..offset + length]);
            done += length;
        }
        Ok(())
    }

    fn memory_ranges(&self) -> Vec<(u64, u64)> {
        let mut ranges: Vec<(u64, u64)> = Vec::new();
        for &page in self.pages.keys() {
            match ranges.last_mut() {
                Some(last) if last.1 == page => last.1 = page + PAGE,
                _ => ranges.push((page, page + PAGE)),
            }
        }
        ranges
    }

    fn event_channels(&self) -> Result<Vec<EventChannel>, TargetError> {
        self.event_channels.clone().ok_or(TargetError::Unsupported("event channel table"))
    }

    fn grants(&self) -> Result<Vec<GrantEntry>, TargetError> {
        self.grants.clone().ok_or(TargetError::Unsupported("grant table"))
    }

    fn xenstore(&self) -> Result<Vec<XenstoreNode>, TargetError> {
        self.xenstore.clone().ok_or(TargetError::Unsupported("xenstore"))
    }

    fn shared_info(&self) -> Result<Option<Vec<u8>>, TargetError> {
        Ok(self.shared_info.clone())
    }

    fn kernel_symbol_file(&self) -> Option<&[u8]> {
        self.kernel_symbol_file.as_deref()
    }

    fn domains(&self) -> Result<Vec<DomainSummary>, TargetError> {
        self.domains.clone().ok_or(TargetError::Unsupported("::domains (only inside the appliance)"))
    }
}

//! Host fakes for the blkif back end's two outside edges: grants held in a map of
//! gref → page ([`MapGrants`]) and a disk in RAM ([`RamDisk`]). Used by the unit tests
//! and by the fuzz body ([`super::fuzz_one`]); no part of the real back end.

use super::{BackendDisk, DiskError, GrantAccess, GrantFault};
use crate::shared_page::PAGE_SIZE;
use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::vec;
use alloc::vec::Vec;

/// One granted page and whether dom0 may write it (`GTF_readonly` clear).
pub struct FakeGrant {
    pub page: Box<[u8; PAGE_SIZE]>,
    pub writable: bool,
}

/// Grants a frontend made to domain 0: a copy into or out of an unknown gref, beyond
/// the page, or into a read-only grant faults, as the hypervisor's grant copy does.
#[derive(Default)]
pub struct MapGrants {
    pub grants: BTreeMap<u32, FakeGrant>,
    /// Copies performed (successful or not), to bound work in tests.
    pub copies: usize,
}

impl MapGrants {
    /// Grants a zeroed page as `gref`.
    pub fn grant(&mut self, gref: u32, writable: bool) {
        self.grants.insert(gref, FakeGrant { page: Box::new([0; PAGE_SIZE]), writable });
    }

    /// The page granted as `gref`, for the test to fill or check.
    pub fn page_mut(&mut self, gref: u32) -> Option<&mut [u8; PAGE_SIZE]> {
        self.grants.get_mut(&gref).map(|grant| &mut *grant.page)
    }
}

impl GrantAccess for MapGrants {
    fn copy_from_grant(&mut self, gref: u32, offset: usize, buffer: &mut [u8]) -> Result<(), GrantFault> {
        self.copies += 1;
        let grant = self.grants.get(&gref).ok_or(GrantFault)?;
        let end = offset.checked_add(buffer.len()).filter(|&end| end <= PAGE_SIZE).ok_or(GrantFault)?;
        buffer.copy_from_slice(&grant.page[offset..end]);
        Ok(())
    }

    fn copy_to_grant(&mut self, gref: u32, offset: usize, data: &[u8]) -> Result<(), GrantFault> {
        self.copies += 1;
        let grant = self.grants.get_mut(&gref).filter(|grant| grant.writable).ok_or(GrantFault)?;
        let end = offset.checked_add(data.len()).filter(|&end| end <= PAGE_SIZE).ok_or(GrantFault)?;
        grant.page[offset..end].copy_from_slice(data);
        Ok(())
    }
}

/// A disk of 512-byte sectors in RAM. Out-of-range access is a [`DiskError`] (the back
/// end must never ask), and so is a write to a read-only disk.
pub struct RamDisk {
    pub data: Vec<u8>,
    pub read_only: bool,
    pub flushes: usize,
    /// (sector, count) of every discard.
    pub discards: Vec<(u64, u64)>,
    /// Calls that were out of range or refused: must stay 0.
    pub misuses: usize,
}

impl RamDisk {
    pub fn new(sectors: u64, read_only: bool) -> Self {
        RamDisk { data: vec![0; sectors as usize * 512], read_only, flushes: 0, discards: Vec::new(), misuses: 0 }
    }

    fn range(&mut self, sector: u64, length: usize) -> Result<core::ops::Range<usize>, DiskError> {
        let start = (sector as usize).checked_mul(512);
        match start.and_then(|start| Some(start..start.checked_add(length)?)) {
            Some(range) if range.end <= self.data.len() => Ok(range),
            _ => {
                self.misuses += 1;
                Err(DiskError)
            }
        }
    }
}

impl BackendDisk for RamDisk {
    fn sectors(&self) -> u64 {
        (self.data.len() / 512) as u64
    }
    fn read_only(&self) -> bool {
        self.read_only
    }
    fn read(&mut self, sector: u64, buffer: &mut [u8]) -> Result<(), DiskError> {
        let range = self.range(sector, buffer.len())?;
        buffer.copy_from_slice(&self.data[range]);
        Ok(())
    }
    fn write(&mut self, sector: u64, data: &[u8]) -> Result<(), DiskError> {
        if self.read_only {
            self.misuses += 1;
            return Err(DiskError);
        }
        let range = self.range(sector, data.len())?;
        self.data[range].copy_from_slice(data);
        Ok(())
    }
    fn flush(&mut self) -> Result<(), DiskError> {
        self.flushes += 1;
        Ok(())
    }
    fn discard(&mut self, sector: u64, count: u64) -> Result<(), DiskError> {
        let length = usize::try_from(count).ok().and_then(|count| count.checked_mul(512)).ok_or(DiskError)?;
        let range = self.range(sector, length)?;
        self.data[range].fill(0);
        self.discards.push((sector, count));
        Ok(())
    }
}

//! Which running domain holds which of dom0's disks (or partitions), and how: the one
//! place that decides whether a disk may be given to a guest.
//!
//! Why: two guests writing one disk, or one writing a partition while another reads the
//! whole disk, corrupt each other's file systems with no error anywhere. So a claim
//! names the disk and every disk that overlaps it (the whole disk of a partition, the
//! partitions of a whole disk), and the rule is xl's "one writer or many readers",
//! applied across overlaps: a read-write claim needs nobody else on the disk or
//! anything overlapping it; a read-only claim needs no writer there. Overlaps are
//! checked both ways (the new claim's list and each held claim's), so a caller that
//! knows the relation on one side only is still safe.
//!
//! Domain ids carry no special meaning here: the same domain asking twice for a disk
//! it holds read-write is refused like anyone else (two vdevs on one disk are as bad
//! within one guest). A second claim of one vdev is the caller's to refuse.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

#[cfg(test)]
#[path = "claims_tests.rs"]
mod tests;

/// Names one claim, for [`DiskClaims::release`]. Never reused within one
/// [`DiskClaims`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClaimId(u64);

/// A held claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub id: ClaimId,
    /// dom0's name for the disk or partition (`nvme0n1p2`, `sda`).
    pub disk: String,
    /// Disks that overlap it, as given when claimed.
    pub related: Vec<String>,
    pub domid: u16,
    /// The domain's name when claimed, for messages.
    pub domain_name: String,
    pub writable: bool,
}

impl Claim {
    /// Whether this claim covers `disk` (is on it, or on something overlapping it).
    fn covers(&self, disk: &str) -> bool {
        self.disk == disk || self.related.iter().any(|related| related == disk)
    }
}

/// Why a claim was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimError {
    /// `disk` (the one asked for, or one overlapping it) is held in a way that
    /// excludes the claim.
    InUse {
        /// The disk the holder holds.
        disk: String,
        domid: u16,
        domain_name: String,
        /// The holder writes (else it reads and the claim wanted to write).
        writable: bool,
    },
    /// An empty disk name.
    NoDisk,
}

impl fmt::Display for ClaimError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClaimError::InUse { disk, domid, domain_name, writable } => {
                let how = if *writable { "read-write" } else { "read-only" };
                write!(formatter, "{disk} is in use {how} by domain {domid} ({domain_name})")
            }
            ClaimError::NoDisk => formatter.write_str("no disk named"),
        }
    }
}

/// Every claim held on dom0's disks.
#[derive(Debug, Clone, Default)]
pub struct DiskClaims {
    claims: Vec<Claim>,
    next_id: u64,
}

impl DiskClaims {
    /// No claims.
    pub fn new() -> Self {
        Self::default()
    }

    /// Claims `disk` for `domid` (named `domain_name`), read-write if `writable`.
    /// `related` lists the disks that overlap it: its whole disk if it is a partition,
    /// its partitions if it is a whole disk. Refused while a writer holds the disk or
    /// anything overlapping it, and, for a writable claim, while anyone does.
    pub fn claim(
        &mut self,
        disk: &str,
        related: &[&str],
        domid: u16,
        domain_name: &str,
        writable: bool,
    ) -> Result<ClaimId, ClaimError> {
        if disk.is_empty() {
            return Err(ClaimError::NoDisk);
        }
        let overlaps = |held: &Claim| held.covers(disk) || related.iter().any(|&other| held.disk == other);
        if let Some(held) = self.claims.iter().find(|held| overlaps(held) && (writable || held.writable)) {
            return Err(ClaimError::InUse {
                disk: held.disk.clone(),
                domid: held.domid,
                domain_name: held.domain_name.clone(),
                writable: held.writable,
            });
        }
        let id = ClaimId(self.next_id);
        self.next_id += 1;
        self.claims.push(Claim {
            id,
            disk: disk.to_string(),
            related: related.iter().filter(|&&other| other != disk).map(|other| other.to_string()).collect(),
            domid,
            domain_name: domain_name.to_string(),
            writable,
        });
        Ok(id)
    }

    /// Gives a claim up; `None` if it was not held.
    pub fn release(&mut self, id: ClaimId) -> Option<Claim> {
        let index = self.claims.iter().position(|claim| claim.id == id)?;
        Some(self.claims.remove(index))
    }

    /// Gives up every claim of `domid` (it was destroyed); returns how many.
    pub fn release_domain(&mut self, domid: u16) -> usize {
        let before = self.claims.len();
        self.claims.retain(|claim| claim.domid != domid);
        before - self.claims.len()
    }

    /// The claims on exactly `disk`, oldest first.
    pub fn holders(&self, disk: &str) -> Vec<&Claim> {
        self.claims.iter().filter(|claim| claim.disk == disk).collect()
    }

    /// The claims on `disk` or on anything overlapping it (as either side declared).
    pub fn holders_overlapping(&self, disk: &str, related: &[&str]) -> Vec<&Claim> {
        self.claims
            .iter()
            .filter(|claim| claim.covers(disk) || related.iter().any(|&other| claim.disk == other))
            .collect()
    }

    /// The claims of `domid`, oldest first.
    pub fn of_domain(&self, domid: u16) -> Vec<&Claim> {
        self.claims.iter().filter(|claim| claim.domid == domid).collect()
    }

    /// The claim named `id`.
    pub fn get(&self, id: ClaimId) -> Option<&Claim> {
        self.claims.iter().find(|claim| claim.id == id)
    }

    /// Every claim, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &Claim> {
        self.claims.iter()
    }
}

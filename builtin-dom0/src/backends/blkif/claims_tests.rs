//! Host tests of disk claims: one writer or many readers, across overlapping disks and
//! partitions.

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use super::*;

/// The relation a caller derives from the partition table: sda holds sda1 and sda2.
const SDA: (&str, &[&str]) = ("sda", &["sda1", "sda2"]);
const SDA1: (&str, &[&str]) = ("sda1", &["sda"]);
const SDA2: (&str, &[&str]) = ("sda2", &["sda"]);

fn claim(claims: &mut DiskClaims, disk: (&str, &[&str]), domid: u16, writable: bool) -> Result<ClaimId, String> {
    claims.claim(disk.0, disk.1, domid, "linux", writable).map_err(|error| error.to_string())
}

#[test]
fn one_writer_excludes_everyone() {
    let mut claims = DiskClaims::new();
    let id = claim(&mut claims, SDA, 3, true).unwrap();
    assert_eq!(claim(&mut claims, SDA, 4, false), Err("sda is in use read-write by domain 3 (linux)".into()));
    assert_eq!(claim(&mut claims, SDA, 4, true), Err("sda is in use read-write by domain 3 (linux)".into()));
    // The same domain again (another vdev on the same disk) is refused too.
    assert_eq!(claim(&mut claims, SDA, 3, false), Err("sda is in use read-write by domain 3 (linux)".into()));
    // Partitions of a disk held read-write are refused as well.
    assert_eq!(claim(&mut claims, SDA1, 4, false), Err("sda is in use read-write by domain 3 (linux)".into()));
    // An unrelated disk is free.
    assert!(claim(&mut claims, ("sdb", &[]), 4, true).is_ok());
    assert_eq!(claims.release(id).map(|claim| claim.disk), Some("sda".to_string()));
    assert_eq!(claims.release(id), None, "released once");
    assert!(claim(&mut claims, SDA1, 4, true).is_ok());
}

#[test]
fn readers_share_and_exclude_writers() {
    let mut claims = DiskClaims::new();
    let first = claim(&mut claims, SDA, 3, false).unwrap();
    let second = claim(&mut claims, SDA, 4, false).unwrap();
    assert_ne!(first, second);
    assert!(claim(&mut claims, SDA, 3, false).is_ok(), "read-only twice in one domain is fine");
    assert_eq!(claim(&mut claims, SDA, 5, true), Err("sda is in use read-only by domain 3 (linux)".into()));
    assert_eq!(claim(&mut claims, SDA2, 5, true), Err("sda is in use read-only by domain 3 (linux)".into()));
    assert_eq!(claims.holders("sda").iter().map(|claim| claim.domid).collect::<Vec<_>>(), [3, 4, 3]);
    assert_eq!(claims.release_domain(3), 2);
    assert_eq!(claims.holders("sda").len(), 1);
    assert_eq!(claim(&mut claims, SDA, 5, true), Err("sda is in use read-only by domain 4 (linux)".into()));
    claims.release(second).unwrap();
    assert!(claims.holders("sda").is_empty());
    assert!(claim(&mut claims, SDA, 5, true).is_ok());
}

#[test]
fn partitions_are_independent_of_each_other_but_not_of_their_disk() {
    let mut claims = DiskClaims::new();
    claim(&mut claims, SDA1, 3, true).unwrap();
    claim(&mut claims, SDA2, 4, true).unwrap();
    assert_eq!(claim(&mut claims, SDA, 5, false), Err("sda1 is in use read-write by domain 3 (linux)".into()));
    assert_eq!(claims.holders_overlapping("sda", &["sda1", "sda2"]).len(), 2);
    assert_eq!(claims.holders("sda").len(), 0);
}

#[test]
fn overlaps_count_when_only_one_side_declares_them() {
    // The holder declared the relation; the newcomer did not.
    let mut claims = DiskClaims::new();
    claim(&mut claims, SDA1, 3, true).unwrap();
    assert_eq!(claim(&mut claims, ("sda", &[]), 4, false), Err("sda1 is in use read-write by domain 3 (linux)".into()));
    // The newcomer declared it; the holder did not.
    let mut claims = DiskClaims::new();
    claim(&mut claims, ("sda", &[]), 3, true).unwrap();
    assert_eq!(claim(&mut claims, SDA1, 4, false), Err("sda is in use read-write by domain 3 (linux)".into()));
}

#[test]
fn bookkeeping() {
    let mut claims = DiskClaims::new();
    assert_eq!(claims.claim("", &[], 3, "linux", false), Err(ClaimError::NoDisk));
    let id = claims.claim("nvme0n1p2", &["nvme0n1", "nvme0n1p2"], 7, "web", true).unwrap();
    let held = claims.get(id).unwrap();
    assert_eq!(
        (held.disk.as_str(), held.domid, held.domain_name.as_str(), held.writable),
        ("nvme0n1p2", 7, "web", true)
    );
    assert_eq!(held.related, ["nvme0n1"], "the disk itself is not its own relation");
    assert_eq!(claims.of_domain(7).len(), 1);
    assert_eq!(claims.iter().count(), 1);
    assert_eq!(claims.release_domain(8), 0);
    assert_eq!(claims.release_domain(7), 1);
    assert_eq!(claims.iter().count(), 0);
    let again = claims.claim("nvme0n1p2", &[], 7, "web", true).unwrap();
    assert_ne!(again, id, "ids are not reused");
}

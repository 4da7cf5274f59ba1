//! Partition tables: MBR (with extended partitions) and GPT, read from any
//! [`BlockReader`] (UEFI 2.10 §5.2 "LBA 0 Format" and §5.3 "GUID Partition Table").
//!
//! A partition table is outside input (a disk can hold anything), so nothing here
//! panics, every count and size is bounded before anything is allocated, and a table
//! is accepted only whole: every partition inside the disk (GPT: inside the header's
//! usable range) and no two overlapping. A GPT whose primary header or entry array is
//! corrupt is read from the backup header in the disk's last block (§5.3.2).
//!
//! Which table: a disk without the 0x55AA signature in LBA 0 has none; an MBR with a
//! partition of type 0xEE is a protective MBR and the disk is GPT; otherwise the MBR's
//! own partitions count (numbered 1–4, logical partitions from 5).

use super::{BlockError, BlockReader};
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// At most this many GPT entries are read. The spec's minimum array is 128 entries;
/// tools write more (xorriso's hybrid images: 176, some 256), so this is generous but
/// bounded, together with [`MAX_GPT_ARRAY_BYTES`].
pub const MAX_GPT_ENTRIES: u32 = 1024;
/// At most this many bytes of GPT entry array are read.
pub const MAX_GPT_ARRAY_BYTES: u32 = 256 * 1024;
/// GPT entry sizes accepted: 128 × 2^n, up to this.
pub const MAX_GPT_ENTRY_SIZE: u32 = 4096;
/// At most this many logical partitions are followed in an extended partition chain.
pub const MAX_LOGICAL_PARTITIONS: u32 = 64;

const MBR_SIGNATURE_OFFSET: usize = 510;
const MBR_ENTRIES_OFFSET: usize = 446;
const MBR_TYPE_PROTECTIVE: u8 = 0xEE;
const MBR_EXTENDED_TYPES: [u8; 3] = [0x05, 0x0F, 0x85];
const GPT_SIGNATURE: &[u8; 8] = b"EFI PART";
const GPT_REVISION_1_0: u32 = 0x0001_0000;
const GPT_HEADER_MIN_SIZE: u32 = 92;

/// A GUID in its on-disk byte order (first three fields little-endian).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Guid(pub [u8; 16]);

impl Guid {
    pub const UNUSED: Guid = Guid([0; 16]);

    pub fn is_unused(&self) -> bool {
        *self == Guid::UNUSED
    }
}

impl fmt::Display for Guid {
    /// The registry form, e.g. `0FC63DAF-8483-4772-8E79-3D69D8477DE4`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.0;
        write!(
            f,
            "{:02X}{:02X}{:02X}{:02X}-{:02X}{:02X}-{:02X}{:02X}-{:02X}{:02X}-",
            b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9]
        )?;
        for byte in &b[10..] {
            write!(f, "{byte:02X}")?;
        }
        Ok(())
    }
}

/// Which GPT header the table came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GptHeaderSource {
    Primary,
    /// The primary was corrupt; this is why.
    Backup {
        primary_error: PartitionError,
    },
}

/// The kind of table found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Mbr { disk_signature: u32 },
    Gpt { disk_guid: Guid, header: GptHeaderSource },
}

/// What a partition's table says about it besides its extent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartitionKind {
    Mbr {
        /// The MBR system ID (0x83 Linux, 0x07 NTFS, …).
        type_byte: u8,
        bootable: bool,
        /// Inside an extended partition (numbered from 5).
        logical: bool,
    },
    Gpt {
        type_guid: Guid,
        unique_guid: Guid,
        attributes: u64,
        /// The UTF-16LE name, up to its first NUL (unpaired surrogates become U+FFFD).
        name: String,
    },
}

/// One partition: blocks `first_lba .. first_lba + blocks` of the disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionEntry {
    /// The number in the partition's name (`sda2` is 2): the MBR slot 1–4, 5+ for
    /// logical partitions, the GPT entry index + 1.
    pub number: u32,
    pub first_lba: u64,
    pub blocks: u64,
    pub kind: PartitionKind,
}

/// A disk's partitions, ordered by number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionTable {
    pub scheme: Scheme,
    pub partitions: Vec<PartitionEntry>,
}

/// Why a partition table was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionError {
    /// Reading the disk failed.
    Read(BlockError),
    /// The block size is not one a table can be read with (< 512 bytes).
    BlockSize(u32),
    /// The disk is too small to hold the table it claims.
    DiskTooSmall,
    /// A GPT header lacks the "EFI PART" signature.
    GptSignature,
    /// A GPT header revision other than 1.0.
    GptRevision(u32),
    /// A GPT header size outside 92 ..= block size.
    GptHeaderSize(u32),
    /// The GPT header's CRC32 does not match.
    GptHeaderCrc,
    /// The header's own LBA is not where it was read from.
    GptMyLba(u64),
    /// The usable range is empty, inverted, or outside the disk.
    GptUsableRange,
    /// Entry count of 0 or above [`MAX_GPT_ENTRIES`], or an entry array above
    /// [`MAX_GPT_ARRAY_BYTES`].
    GptEntryCount(u32),
    /// Entry size not 128 × 2^n up to [`MAX_GPT_ENTRY_SIZE`].
    GptEntrySize(u32),
    /// The entry array is not inside the disk outside the usable range.
    GptEntryArrayRange,
    /// The entry array's CRC32 does not match.
    GptEntryArrayCrc,
    /// An MBR entry's boot indicator is neither 0x00 nor 0x80.
    MbrBootIndicator { number: u32 },
    /// An extended partition chain is too long or loops.
    MbrExtendedChain,
    /// A logical partition's EBR is malformed.
    MbrExtendedRecord,
    /// A partition's first block is after its last, or it has no blocks.
    EmptyOrInverted { number: u32 },
    /// A partition reaches beyond the disk (or the GPT usable range).
    OutsideDisk { number: u32 },
    /// Two partitions share blocks.
    Overlap { first: u32, second: u32 },
}

impl From<BlockError> for PartitionError {
    fn from(error: BlockError) -> Self {
        PartitionError::Read(error)
    }
}

impl fmt::Display for PartitionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PartitionError::Read(error) => write!(f, "reading the partition table: {error}"),
            PartitionError::BlockSize(size) => write!(f, "block size {size} is too small"),
            PartitionError::DiskTooSmall => f.write_str("disk too small for its partition table"),
            PartitionError::GptSignature => f.write_str("GPT header has no EFI PART signature"),
            PartitionError::GptRevision(revision) => {
                write!(f, "GPT revision {revision:#010x} is not 1.0")
            }
            PartitionError::GptHeaderSize(size) => write!(f, "GPT header size {size} is invalid"),
            PartitionError::GptHeaderCrc => f.write_str("GPT header CRC32 mismatch"),
            PartitionError::GptMyLba(lba) => {
                write!(f, "GPT header claims LBA {lba}, not where it was found")
            }
            PartitionError::GptUsableRange => f.write_str("GPT usable block range is invalid"),
            PartitionError::GptEntryCount(count) => {
                write!(f, "GPT entry count {count} is not 1..={MAX_GPT_ENTRIES}")
            }
            PartitionError::GptEntrySize(size) => write!(f, "GPT entry size {size} is invalid"),
            PartitionError::GptEntryArrayRange => {
                f.write_str("GPT entry array is outside the disk or overlaps the usable range")
            }
            PartitionError::GptEntryArrayCrc => f.write_str("GPT entry array CRC32 mismatch"),
            PartitionError::MbrBootIndicator { number } => {
                write!(f, "MBR partition {number} has an invalid boot indicator")
            }
            PartitionError::MbrExtendedChain => f.write_str("extended partition chain is too long or loops"),
            PartitionError::MbrExtendedRecord => f.write_str("extended boot record is malformed"),
            PartitionError::EmptyOrInverted { number } => {
                write!(f, "partition {number} is empty or ends before it starts")
            }
            PartitionError::OutsideDisk { number } => {
                write!(f, "partition {number} reaches beyond the disk")
            }
            PartitionError::Overlap { first, second } => {
                write!(f, "partitions {first} and {second} overlap")
            }
        }
    }
}

/// CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320), as GPT uses it. Bitwise, no
/// table: tables are read once per disk.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

fn u32_at(bytes: &[u8], offset: usize) -> u32 {
    let mut word = [0u8; 4];
    if let Some(slice) = bytes.get(offset..offset + 4) {
        word.copy_from_slice(slice);
    }
    u32::from_le_bytes(word)
}

fn u64_at(bytes: &[u8], offset: usize) -> u64 {
    let mut word = [0u8; 8];
    if let Some(slice) = bytes.get(offset..offset + 8) {
        word.copy_from_slice(slice);
    }
    u64::from_le_bytes(word)
}

fn guid_at(bytes: &[u8], offset: usize) -> Guid {
    let mut guid = [0u8; 16];
    if let Some(slice) = bytes.get(offset..offset + 16) {
        guid.copy_from_slice(slice);
    }
    Guid(guid)
}

/// Reads the partition table of `disk`: `Ok(None)` when LBA 0 has no MBR signature.
pub fn parse(disk: &mut dyn BlockReader) -> Result<Option<PartitionTable>, PartitionError> {
    let block_size = disk.block_size();
    if block_size < 512 {
        return Err(PartitionError::BlockSize(block_size));
    }
    if disk.capacity() == 0 {
        return Ok(None);
    }
    let mbr = disk.read_blocks(0, 1)?;
    if mbr.get(MBR_SIGNATURE_OFFSET..MBR_SIGNATURE_OFFSET + 2) != Some(&[0x55, 0xAA][..]) {
        return Ok(None);
    }
    let protective = (0..4).any(|slot| mbr[MBR_ENTRIES_OFFSET + slot * 16 + 4] == MBR_TYPE_PROTECTIVE);
    let table = if protective { parse_gpt(disk)? } else { parse_mbr(disk, &mbr)? };
    Ok(Some(table))
}

/// The primary GPT, or the backup if the primary is corrupt; the primary's error if
/// both are.
fn parse_gpt(disk: &mut dyn BlockReader) -> Result<PartitionTable, PartitionError> {
    let capacity = disk.capacity();
    if capacity < 3 {
        return Err(PartitionError::DiskTooSmall);
    }
    match read_gpt(disk, 1) {
        Ok((disk_guid, partitions)) => {
            Ok(PartitionTable { scheme: Scheme::Gpt { disk_guid, header: GptHeaderSource::Primary }, partitions })
        }
        Err(primary_error @ PartitionError::Read(_)) => Err(primary_error),
        Err(primary_error) => match read_gpt(disk, capacity - 1) {
            Ok((disk_guid, partitions)) => Ok(PartitionTable {
                scheme: Scheme::Gpt { disk_guid, header: GptHeaderSource::Backup { primary_error } },
                partitions,
            }),
            Err(_) => Err(primary_error),
        },
    }
}

/// One GPT header at `header_lba` and its entry array, checked whole.
fn read_gpt(disk: &mut dyn BlockReader, header_lba: u64) -> Result<(Guid, Vec<PartitionEntry>), PartitionError> {
    let capacity = disk.capacity();
    let block_size = disk.block_size();
    let block = disk.read_blocks(header_lba, 1)?;
    if block.get(0..8) != Some(&GPT_SIGNATURE[..]) {
        return Err(PartitionError::GptSignature);
    }
    let revision = u32_at(&block, 8);
    if revision != GPT_REVISION_1_0 {
        return Err(PartitionError::GptRevision(revision));
    }
    let header_size = u32_at(&block, 12);
    if header_size < GPT_HEADER_MIN_SIZE || header_size > block_size {
        return Err(PartitionError::GptHeaderSize(header_size));
    }
    let mut header = block[..header_size as usize].to_vec();
    let stored_crc = u32_at(&header, 16);
    header[16..20].fill(0);
    if crc32(&header) != stored_crc {
        return Err(PartitionError::GptHeaderCrc);
    }
    let my_lba = u64_at(&header, 24);
    if my_lba != header_lba {
        return Err(PartitionError::GptMyLba(my_lba));
    }
    let first_usable = u64_at(&header, 40);
    let last_usable = u64_at(&header, 48);
    // Usable blocks lie strictly between the primary header and the backup header.
    if first_usable < 2 || first_usable > last_usable || last_usable >= capacity - 1 {
        return Err(PartitionError::GptUsableRange);
    }
    let disk_guid = guid_at(&header, 56);
    let array_lba = u64_at(&header, 72);
    let entry_count = u32_at(&header, 80);
    let entry_size = u32_at(&header, 84);
    let array_crc = u32_at(&header, 88);
    if entry_count == 0 || entry_count > MAX_GPT_ENTRIES {
        return Err(PartitionError::GptEntryCount(entry_count));
    }
    if !(128..=MAX_GPT_ENTRY_SIZE).contains(&entry_size) || !entry_size.is_power_of_two() {
        return Err(PartitionError::GptEntrySize(entry_size));
    }
    // Cannot overflow: ≤ 1024 × 4096.
    let array_bytes = entry_count * entry_size;
    if array_bytes > MAX_GPT_ARRAY_BYTES {
        return Err(PartitionError::GptEntryCount(entry_count));
    }
    let array_blocks = array_bytes.div_ceil(block_size);
    let array_end = array_lba.checked_add(u64::from(array_blocks));
    let array_inside = array_lba >= 1
        && array_lba != header_lba
        && array_end.is_some_and(|end| end <= capacity && (end <= first_usable || array_lba > last_usable))
        && !(array_lba..array_end.unwrap_or(u64::MAX)).contains(&header_lba);
    if !array_inside {
        return Err(PartitionError::GptEntryArrayRange);
    }
    let array = disk.read_blocks(array_lba, array_blocks)?;
    let array = &array[..array_bytes as usize];
    if crc32(array) != array_crc {
        return Err(PartitionError::GptEntryArrayCrc);
    }
    let mut partitions = Vec::new();
    for (index, entry) in array.chunks_exact(entry_size as usize).enumerate() {
        let type_guid = guid_at(entry, 0);
        if type_guid.is_unused() {
            continue;
        }
        let number = index as u32 + 1;
        let first_lba = u64_at(entry, 32);
        let last_lba = u64_at(entry, 40);
        if last_lba < first_lba {
            return Err(PartitionError::EmptyOrInverted { number });
        }
        if first_lba < first_usable || last_lba > last_usable {
            return Err(PartitionError::OutsideDisk { number });
        }
        let name_units = entry[56..128]
            .chunks_exact(2)
            .map(|pair| u16::from_le_bytes([pair[0], pair[1]]))
            .take_while(|&unit| unit != 0);
        let name = char::decode_utf16(name_units).map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER)).collect();
        partitions.push(PartitionEntry {
            number,
            first_lba,
            blocks: last_lba - first_lba + 1,
            kind: PartitionKind::Gpt {
                type_guid,
                unique_guid: guid_at(entry, 16),
                attributes: u64_at(entry, 48),
                name,
            },
        });
    }
    check_no_overlap(&partitions)?;
    Ok((disk_guid, partitions))
}

/// The four primary entries of an MBR, and the logical partitions of an extended one.
fn parse_mbr(disk: &mut dyn BlockReader, mbr: &[u8]) -> Result<PartitionTable, PartitionError> {
    let capacity = disk.capacity();
    let mut partitions = Vec::new();
    let mut extended: Option<(u64, u64)> = None;
    for slot in 0..4u32 {
        let number = slot + 1;
        let entry = &mbr[MBR_ENTRIES_OFFSET + slot as usize * 16..][..16];
        let type_byte = entry[4];
        if type_byte == 0 {
            continue;
        }
        let bootable = match entry[0] {
            0x00 => false,
            0x80 => true,
            _ => return Err(PartitionError::MbrBootIndicator { number }),
        };
        let first_lba = u64::from(u32_at(entry, 8));
        let blocks = u64::from(u32_at(entry, 12));
        check_extent(first_lba, blocks, 1, capacity, number)?;
        if MBR_EXTENDED_TYPES.contains(&type_byte) {
            if extended.is_some() {
                return Err(PartitionError::MbrExtendedRecord);
            }
            extended = Some((first_lba, blocks));
            // The container is not a partition of its own, but it must not overlap
            // a primary partition: keep it for the overlap check below.
        }
        partitions.push(PartitionEntry {
            number,
            first_lba,
            blocks,
            kind: PartitionKind::Mbr { type_byte, bootable, logical: false },
        });
    }
    check_no_overlap(&partitions)?;
    if let Some((extended_start, extended_blocks)) = extended {
        partitions.retain(|p| !is_extended(p));
        let logical = parse_extended(disk, extended_start, extended_blocks)?;
        partitions.extend(logical);
    }
    Ok(PartitionTable { scheme: Scheme::Mbr { disk_signature: u32_at(mbr, 440) }, partitions })
}

fn is_extended(partition: &PartitionEntry) -> bool {
    matches!(partition.kind, PartitionKind::Mbr { type_byte, .. } if MBR_EXTENDED_TYPES.contains(&type_byte))
}

/// Follows the EBR chain of the extended partition at `start`: each EBR's first entry
/// is a logical partition relative to the EBR, its second the next EBR relative to
/// `start`. Every logical partition stays inside the container, EBRs must advance
/// (so the chain cannot loop), and at most [`MAX_LOGICAL_PARTITIONS`] are read.
fn parse_extended(disk: &mut dyn BlockReader, start: u64, blocks: u64) -> Result<Vec<PartitionEntry>, PartitionError> {
    let end = start + blocks; // checked by check_extent
    let mut logical = Vec::new();
    let mut ebr_lba = start;
    for index in 0..MAX_LOGICAL_PARTITIONS {
        let number = 5 + index;
        let ebr = disk.read_blocks(ebr_lba, 1)?;
        if ebr.get(MBR_SIGNATURE_OFFSET..MBR_SIGNATURE_OFFSET + 2) != Some(&[0x55, 0xAA][..]) {
            return Err(PartitionError::MbrExtendedRecord);
        }
        let entry = &ebr[MBR_ENTRIES_OFFSET..][..16];
        let next = &ebr[MBR_ENTRIES_OFFSET + 16..][..16];
        if entry[4] != 0 {
            let bootable = match entry[0] {
                0x00 => false,
                0x80 => true,
                _ => return Err(PartitionError::MbrBootIndicator { number }),
            };
            let first_lba = ebr_lba + u64::from(u32_at(entry, 8));
            let count = u64::from(u32_at(entry, 12));
            // Inside the container, after its own EBR.
            check_extent(first_lba, count, ebr_lba + 1, end, number)?;
            logical.push(PartitionEntry {
                number,
                first_lba,
                blocks: count,
                kind: PartitionKind::Mbr { type_byte: entry[4], bootable, logical: true },
            });
        }
        if next[4] == 0 {
            check_no_overlap(&logical)?;
            return Ok(logical);
        }
        if !MBR_EXTENDED_TYPES.contains(&next[4]) {
            return Err(PartitionError::MbrExtendedRecord);
        }
        let next_lba = start + u64::from(u32_at(next, 8));
        if next_lba <= ebr_lba || next_lba >= end {
            return Err(PartitionError::MbrExtendedChain);
        }
        ebr_lba = next_lba;
    }
    Err(PartitionError::MbrExtendedChain)
}

/// `first_lba .. first_lba + blocks` is non-empty and inside `low .. high`.
fn check_extent(first_lba: u64, blocks: u64, low: u64, high: u64, number: u32) -> Result<(), PartitionError> {
    if blocks == 0 {
        return Err(PartitionError::EmptyOrInverted { number });
    }
    let inside = first_lba >= low && first_lba.checked_add(blocks).is_some_and(|e| e <= high);
    if !inside {
        return Err(PartitionError::OutsideDisk { number });
    }
    Ok(())
}

/// No two partitions share a block (sorts a copy of the extents: at most 1024 + 64).
fn check_no_overlap(partitions: &[PartitionEntry]) -> Result<(), PartitionError> {
    let mut extents: Vec<(u64, u64, u32)> =
        partitions.iter().map(|p| (p.first_lba, p.first_lba.saturating_add(p.blocks), p.number)).collect();
    extents.sort_unstable();
    for pair in extents.windows(2) {
        let (_, end, first) = pair[0];
        let (start, _, second) = pair[1];
        if start < end {
            return Err(PartitionError::Overlap { first: first.min(second), second: first.max(second) });
        }
    }
    Ok(())
}

/// The fuzz body: `data[0]` picks the block size (512 or 4096), the rest is the disk.
/// Parsing never panics; an accepted table's partitions are inside the disk and
/// disjoint.
pub fn fuzz_one(data: &[u8]) {
    let Some((&selector, image)) = data.split_first() else {
        return;
    };
    let block_size = if selector & 1 == 0 { 512 } else { 4096 };
    let mut reader = super::ImageReader::new(image, block_size);
    let capacity = reader.capacity();
    if let Ok(Some(table)) = parse(&mut reader) {
        for partition in &table.partitions {
            assert!(partition.blocks > 0);
            assert!(partition.first_lba + partition.blocks <= capacity);
        }
        assert!(check_no_overlap(&table.partitions).is_ok());
    }
}

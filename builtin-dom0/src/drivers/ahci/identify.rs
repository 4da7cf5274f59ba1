//! ATA IDENTIFY DEVICE data: the 256 words a SATA disk returns for command 0xEC,
//! decoded into what the AHCI driver needs (model, capacity, sector sizes, cache and
//! TRIM abilities).
//!
//! Every word comes from the device and is checked: the optional integrity word
//! (255) is verified when its signature is present, words 82–84 and 106 are used only
//! when their "valid" pattern (bits 15:14 = 01) is there, the capacity must be non-zero
//! and fit 48-bit addressing, and the logical sector size must be a power of two from
//! 512 bytes to 64 KiB (so a sector always fits a bounce region). A device that fails
//! a check is refused with a [`DriverError`], never trusted.
//!
//! Spec: ATA/ATAPI Command Set (ACS-3) §7.12.7, table 45 (IDENTIFY DEVICE data).

use crate::drivers::DriverError;
use alloc::format;
use alloc::string::String;

/// Bytes of IDENTIFY DEVICE data (one 512-byte block, 256 little-endian words).
pub(super) const IDENTIFY_BYTES: usize = 512;

/// Word 0 bit 15: set for ATAPI (and other non-ATA) devices.
const GENERAL_CONFIG_NOT_ATA: u16 = 1 << 15;
/// Words 27–46: model number, 40 ASCII characters, first character in each word's high byte.
const MODEL_FIRST_WORD: usize = 27;
const MODEL_WORDS: usize = 20;
/// Words 82, 83 (command sets supported), 84: valid when word 83 bits 15:14 are 01.
const COMMAND_SET_1: usize = 82;
const COMMAND_SET_2: usize = 83;
/// Word 82 bit 5: volatile write cache supported.
const COMMAND_SET_1_WRITE_CACHE: u16 = 1 << 5;
/// Word 83 bit 10: 48-bit Address feature set supported.
const COMMAND_SET_2_LBA48: u16 = 1 << 10;
/// Word 83 bit 13: FLUSH CACHE EXT supported.
const COMMAND_SET_2_FLUSH_CACHE_EXT: u16 = 1 << 13;
/// Words 100–103: number of user-addressable logical sectors (48-bit addressing).
const LBA48_CAPACITY_FIRST_WORD: usize = 100;
/// Word 105: maximum 512-byte blocks of LBA Range Entries per DATA SET MANAGEMENT
/// command (0: not reported).
const DATA_SET_MANAGEMENT_MAX_BLOCKS_WORD: usize = 105;
/// Word 106: physical/logical sector size, valid when bits 15:14 are 01.
const SECTOR_SIZE_WORD: usize = 106;
/// Word 106 bit 13: several logical sectors per physical sector (bits 3:0 = log2 of how many).
const SECTOR_SIZE_MULTIPLE_LOGICAL: u16 = 1 << 13;
/// Word 106 bit 12: logical sector longer than 256 words (size in words 117–118).
const SECTOR_SIZE_LONG_LOGICAL: u16 = 1 << 12;
const SECTOR_SIZE_LOGICAL_PER_PHYSICAL_MASK: u16 = 0xF;
/// Words 117–118: logical sector size in 16-bit words.
const LOGICAL_SECTOR_WORDS_FIRST_WORD: usize = 117;
/// Word 169 bit 0: DATA SET MANAGEMENT with the TRIM bit supported.
const DATA_SET_MANAGEMENT_WORD: usize = 169;
const DATA_SET_MANAGEMENT_TRIM: u16 = 1 << 0;
/// Word 255: integrity word; low byte 0xA5 says the high byte is a checksum making
/// the sum of all 512 bytes zero (modulo 256).
const INTEGRITY_WORD: usize = 255;
const INTEGRITY_SIGNATURE: u16 = 0xA5;

/// Bits 15:14 of words 83 and 106 when the word holds valid data.
const WORD_VALID_MASK: u16 = 0xC000;
const WORD_VALID: u16 = 0x4000;

const MIN_LOGICAL_SECTOR: u32 = 512;
const MAX_LOGICAL_SECTOR: u32 = 64 * 1024;
/// Largest capacity 48-bit LBAs address.
const LBA48_LIMIT: u64 = 1 << 48;

/// What the driver keeps from IDENTIFY DEVICE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Identity {
    /// Model number, spaces and NULs trimmed, non-printable bytes shown as `?`.
    pub model: String,
    /// Logical sectors addressable with 48-bit LBAs (non-zero).
    pub capacity: u64,
    /// Bytes per logical sector: a power of two in 512..=65536.
    pub logical_block_size: u32,
    /// Bytes per physical sector (≥ the logical size).
    pub physical_block_size: u32,
    /// The device has a volatile write cache.
    pub write_cache: bool,
    /// FLUSH CACHE EXT (0xEA) is supported.
    pub flush_cache_ext: bool,
    /// DATA SET MANAGEMENT / TRIM is supported.
    pub trim: bool,
    /// Word 105: payload blocks per TRIM command the device takes (0: not reported).
    pub trim_max_payload_blocks: u16,
}

/// Decodes IDENTIFY DEVICE data; refuses non-ATA devices, disks without 48-bit
/// addressing, zero or impossible capacities and odd sector sizes.
pub(super) fn parse(bytes: &[u8]) -> Result<Identity, DriverError> {
    if bytes.len() != IDENTIFY_BYTES {
        return Err(DriverError::Device(format!("IDENTIFY DEVICE data of {} bytes", bytes.len())));
    }
    let mut words = [0u16; IDENTIFY_BYTES / 2];
    for (word, pair) in words.iter_mut().zip(bytes.chunks_exact(2)) {
        *word = u16::from_le_bytes([pair[0], pair[1]]);
    }
    let word = |index: usize| words.get(index).copied().unwrap_or(0);

    if word(INTEGRITY_WORD) & 0xFF == INTEGRITY_SIGNATURE {
        let sum = bytes.iter().fold(0u8, |sum, byte| sum.wrapping_add(*byte));
        if sum != 0 {
            return Err(DriverError::Device(String::from("IDENTIFY DEVICE checksum mismatch")));
        }
    }
    if word(0) & GENERAL_CONFIG_NOT_ATA != 0 {
        return Err(DriverError::Unsupported(String::from("not an ATA device")));
    }

    let command_sets_valid = word(COMMAND_SET_2) & WORD_VALID_MASK == WORD_VALID;
    let command_set = |index: usize, bit: u16| command_sets_valid && word(index) & bit != 0;
    if !command_set(COMMAND_SET_2, COMMAND_SET_2_LBA48) {
        return Err(DriverError::Unsupported(String::from("disk without 48-bit addressing")));
    }

    let capacity = (0..4)
        .fold(0u64, |capacity, index| capacity | u64::from(word(LBA48_CAPACITY_FIRST_WORD + index)) << (16 * index));
    if capacity == 0 {
        return Err(DriverError::Device(String::from("zero capacity")));
    }
    if capacity > LBA48_LIMIT {
        return Err(DriverError::Device(format!("capacity of {capacity} sectors is beyond 48-bit addressing")));
    }

    let sector_size = word(SECTOR_SIZE_WORD);
    let sector_size_valid = sector_size & WORD_VALID_MASK == WORD_VALID;
    let logical_block_size = if sector_size_valid && sector_size & SECTOR_SIZE_LONG_LOGICAL != 0 {
        let sector_words = u32::from(word(LOGICAL_SECTOR_WORDS_FIRST_WORD))
            | u32::from(word(LOGICAL_SECTOR_WORDS_FIRST_WORD + 1)) << 16;
        sector_words.checked_mul(2).unwrap_or(0)
    } else {
        MIN_LOGICAL_SECTOR
    };
    if !logical_block_size.is_power_of_two() || !(MIN_LOGICAL_SECTOR..=MAX_LOGICAL_SECTOR).contains(&logical_block_size)
    {
        return Err(DriverError::Unsupported(format!("logical sector size of {logical_block_size} bytes")));
    }
    let physical_block_size = if sector_size_valid && sector_size & SECTOR_SIZE_MULTIPLE_LOGICAL != 0 {
        let logical_per_physical = 1u32 << (sector_size & SECTOR_SIZE_LOGICAL_PER_PHYSICAL_MASK);
        logical_block_size.checked_mul(logical_per_physical).unwrap_or(logical_block_size)
    } else {
        logical_block_size
    };

    Ok(Identity {
        model: model(&words),
        capacity,
        logical_block_size,
        physical_block_size,
        write_cache: command_set(COMMAND_SET_1, COMMAND_SET_1_WRITE_CACHE),
        flush_cache_ext: command_set(COMMAND_SET_2, COMMAND_SET_2_FLUSH_CACHE_EXT),
        trim: word(DATA_SET_MANAGEMENT_WORD) & DATA_SET_MANAGEMENT_TRIM != 0,
        trim_max_payload_blocks: word(DATA_SET_MANAGEMENT_MAX_BLOCKS_WORD),
    })
}

/// The model string: each word holds two characters, the first in its high byte.
/// Padding is spaces by the spec; some devices pad with NULs, trimmed too.
fn model(words: &[u16]) -> String {
    let mut bytes = [0u8; MODEL_WORDS * 2];
    for (pair, word) in bytes.chunks_exact_mut(2).zip(words.iter().skip(MODEL_FIRST_WORD)) {
        pair.copy_from_slice(&word.to_be_bytes());
    }
    let padding = |byte: &u8| *byte == b' ' || *byte == 0;
    let start = bytes.iter().position(|byte| !padding(byte)).unwrap_or(bytes.len());
    let end = bytes.iter().rposition(|byte| !padding(byte)).map_or(start, |last| last + 1);
    bytes
        .get(start..end)
        .unwrap_or(&[])
        .iter()
        .map(|&byte| if byte.is_ascii_graphic() || byte == b' ' { char::from(byte) } else { '?' })
        .collect()
}

//! Symbols of a Linux kernel without `.symtab`, read from the kernel's own kallsyms
//! tables in guest memory.
//!
//! Where the tables are: kernels that name them in vmcoreinfo (`SYMBOL(kallsyms_names)`
//! and friends) say so; 6.1 does not, so they are found by shape as vmlinux-to-elf
//! does. scripts/kallsyms (6.1) emits, in `.rodata`, each label 8-aligned:
//! `kallsyms_offsets` (s32 per symbol), `kallsyms_relative_base` (u64),
//! `kallsyms_num_syms` (u32), `kallsyms_names` (per symbol a length — one byte, or two
//! when the first has bit 7 set — then that many token numbers), `kallsyms_markers`
//! (u32 offset into names of every 256th symbol), `kallsyms_token_table` (256
//! NUL-terminated tokens) and `kallsyms_token_index` (256 u16 offsets into the token
//! table). A byte that no name uses is replaced by a multi-character token, so the
//! digits '0'..'9', which every kernel uses, stay single-character tokens 0x30..0x39:
//! the search looks for "0\01\0…9\0", then checks the token index after the table and
//! walks back through markers, names and num_syms to the offsets.
//!
//! Invariants: every count read from the guest is bounded ([`MAXIMUM_SYMBOLS`], region
//! sizes), every candidate is validated before it is trusted, and a table that fails
//! validation gives an error, not a partial list of wrong names.

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use super::{Symbol, SymbolKind};
use crate::linux::VmcoreInfo;
use crate::target::TargetError;

/// At most this many symbols are decoded (a 6.1 distribution kernel has ~150 000).
pub const MAXIMUM_SYMBOLS: u64 = 2_000_000;
/// How much of the kernel image the shape search reads.
pub const SEARCH_LENGTH: u64 = 64 << 20;
/// The x86-64 kernel's link address of `_text` (the search start without KASLR facts).
pub const DEFAULT_KERNEL_START: u64 = 0xffff_ffff_8100_0000;
const ALIGNMENT: u64 = 8;
const PAGE: u64 = 4096;
const CHUNK: u64 = 64 * 1024;
const DIGITS_PATTERN: &[u8] = b"0\x001\x002\x003\x004\x005\x006\x007\x008\x009\x00";
const TOKEN_TABLE_MAXIMUM: u64 = 64 * 1024;
const MAXIMUM_NAME_BYTES: usize = 1024;
/// The longest entry a two-byte length can describe.
const MAXIMUM_ENTRY: usize = 0x3fff;
const MAXIMUM_NAMES_BYTES: u64 = 64 << 20;
/// How far before the last marker's entry the start of `kallsyms_names` may be: 256
/// entries of the last block, each at most this long when compressed.
const LAST_BLOCK_MAXIMUM: u64 = 256 * 512;

/// Reads guest memory: `(address, buffer)`.
pub type Reader<'a> = &'a dyn Fn(u64, &mut [u8]) -> Result<(), TargetError>;

/// Why kallsyms could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KallsymsError {
    /// No table of the right shape in the searched range.
    NotFound,
    /// A table was found but its contents are inconsistent; the text says where.
    Damaged(&'static str),
    /// Guest memory could not be read.
    Target(TargetError),
}

impl fmt::Display for KallsymsError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KallsymsError::NotFound => formatter.write_str("no kallsyms tables found"),
            KallsymsError::Damaged(what) => write!(formatter, "kallsyms {what} inconsistent"),
            KallsymsError::Target(error) => write!(formatter, "{error}"),
        }
    }
}

impl From<TargetError> for KallsymsError {
    fn from(error: TargetError) -> Self {
        KallsymsError::Target(error)
    }
}

/// Where the tables are (guest-virtual addresses) and how many symbols they hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tables {
    pub offsets: u64,
    pub relative_base: u64,
    pub symbol_count: u64,
    pub names: u64,
    pub markers: u64,
    pub token_table: u64,
    pub token_index: u64,
}

fn align_up(value: u64, alignment: u64) -> Option<u64> {
    Some(value.checked_add(alignment - 1)? & !(alignment - 1))
}

fn read_vec(read: Reader<'_>, address: u64, length: u64) -> Result<Vec<u8>, KallsymsError> {
    let mut bytes = vec![0u8; usize::try_from(length).map_err(|_| KallsymsError::Damaged("size"))?];
    read(address, &mut bytes)?;
    Ok(bytes)
}

/// Reads as much of `[address, address + length)` as is mapped from its start, page by
/// page after a failed whole read.
fn read_prefix(read: Reader<'_>, address: u64, length: u64) -> Vec<u8> {
    if let Ok(bytes) = read_vec(read, address, length) {
        return bytes;
    }
    let mut bytes = Vec::new();
    let mut at = address;
    while (at - address) < length {
        let page_end = (at | (PAGE - 1)).saturating_add(1).min(address.saturating_add(length));
        let mut page = vec![0u8; (page_end - at) as usize];
        if read(at, &mut page).is_err() {
            break;
        }
        bytes.extend_from_slice(&page);
        at = page_end;
    }
    bytes
}

/// Reads backwards from `end` in chunks while memory is mapped, at most `span` bytes:
/// (start address, bytes up to `end`).
fn read_suffix(read: Reader<'_>, end: u64, span: u64) -> (u64, Vec<u8>) {
    let lowest = end.saturating_sub(span);
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    let mut start = end;
    'outer: while start > lowest {
        let chunk_start = start.saturating_sub(CHUNK).max(lowest);
        match read_vec(read, chunk_start, start - chunk_start) {
            Ok(bytes) => {
                chunks.push(bytes);
                start = chunk_start;
            }
            Err(_) => {
                // Take the mapped pages at the end of this chunk, then stop.
                while start > chunk_start {
                    let page_start = ((start - 1) & !(PAGE - 1)).max(chunk_start);
                    match read_vec(read, page_start, start - page_start) {
                        Ok(bytes) => {
                            chunks.push(bytes);
                            start = page_start;
                        }
                        Err(_) => break 'outer,
                    }
                }
                break;
            }
        }
    }
    let mut bytes = Vec::with_capacity((end - start) as usize);
    for chunk in chunks.iter().rev() {
        bytes.extend_from_slice(chunk);
    }
    (start, bytes)
}

fn u16_at(bytes: &[u8], offset: usize) -> Option<u16> {
    Some(u16::from_le_bytes(bytes.get(offset..offset.checked_add(2)?)?.try_into().ok()?))
}

fn u32_at(bytes: &[u8], offset: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(offset..offset.checked_add(4)?)?.try_into().ok()?))
}

fn u64_at(bytes: &[u8], offset: usize) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.get(offset..offset.checked_add(8)?)?.try_into().ok()?))
}

/// The token table and index validated against each other: `index[i]` is the start of
/// token `i`, each token is non-empty and ends in the table's only NULs.
fn validate_tokens(table: &[u8], index: &[u16; 256]) -> bool {
    if index[0] != 0 {
        return false;
    }
    let mut terminators = 0;
    for token in 0..256 {
        let start = usize::from(index[token]);
        let Some(length) = table.get(start..).and_then(|rest| rest.iter().position(|&byte| byte == 0)) else {
            return false;
        };
        if length == 0 {
            return false;
        }
        let end = start + length + 1;
        match index.get(token + 1) {
            Some(&next) if usize::from(next) != end => return false,
            _ => {}
        }
        terminators = end;
    }
    terminators == table.len() || table.get(terminators..).is_some_and(|rest| rest.iter().all(|&byte| byte == 0))
}

/// Given the address of the "0" token, finds and validates the token table and index.
fn tokens_at_digit_zero(read: Reader<'_>, zero: u64) -> Option<(u64, u64)> {
    let after = read_prefix(read, zero, TOKEN_TABLE_MAXIMUM);
    // Tokens 0x30..=0xff follow "0": 208 terminators.
    let mut seen = 0;
    let mut end = None;
    for (position, &byte) in after.iter().enumerate() {
        if byte == 0 {
            seen += 1;
            if seen == 256 - 0x30 {
                end = Some(position as u64 + 1);
                break;
            }
        }
    }
    let table_end = zero.checked_add(end?)?;
    let token_index = align_up(table_end, ALIGNMENT)?;
    let index_bytes = read_vec(read, token_index, 512).ok()?;
    let mut index = [0u16; 256];
    for (slot, token) in index.iter_mut().enumerate() {
        *token = u16_at(&index_bytes, slot * 2)?;
    }
    let token_table = zero.checked_sub(u64::from(index[0x30]))?;
    if token_table % ALIGNMENT != 0 {
        return None;
    }
    let table = read_vec(read, token_table, table_end - token_table).ok()?;
    validate_tokens(&table, &index).then_some((token_table, token_index))
}

/// Candidate `kallsyms_markers` before the token table: (start address, markers).
/// Between the markers and the token table there is nothing (6.1) or, where
/// `kallsyms_seqs_of_names` was added (6.2, and backported to some 6.1 builds), 3 bytes
/// per symbol; so a candidate is an aligned 0 (markers[0]) followed by strictly
/// increasing u32s whose count fits the distance to the token table either way. The
/// symbol count found later settles which.
fn marker_candidates(read: Reader<'_>, token_table: u64) -> Vec<(u64, Vec<u32>)> {
    let maximum_markers = MAXIMUM_SYMBOLS.div_ceil(256);
    let span = (maximum_markers * (4 + 3 * 256) + 4 * ALIGNMENT).min(token_table);
    let (base, bytes) = read_suffix(read, token_table, span);
    let mut candidates = Vec::new();
    let mut start = token_table & !(ALIGNMENT - 1);
    while start >= base + ALIGNMENT && candidates.len() < 16 {
        start -= ALIGNMENT;
        let at = (start - base) as usize;
        if u32_at(&bytes, at) != Some(0) {
            continue;
        }
        let distance = token_table - start;
        let plain = distance / 4;
        let with_sequences = distance / (4 + 3 * 256);
        for count in [plain, with_sequences.saturating_sub(1), with_sequences, with_sequences + 1] {
            if count == 0 || count > maximum_markers {
                continue;
            }
            if let Some(markers) = increasing_words(&bytes, at, count as usize) {
                candidates.push((start, markers));
            }
        }
    }
    candidates
}

/// `count` strictly increasing u32s at `offset`, or None at the first that is not.
fn increasing_words(bytes: &[u8], offset: usize, count: usize) -> Option<Vec<u32>> {
    let mut words: Vec<u32> = Vec::new();
    for slot in 0..count {
        let word = u32_at(bytes, offset.checked_add(slot * 4)?)?;
        if words.last().is_some_and(|&previous| previous >= word) {
            return None;
        }
        words.push(word);
    }
    Some(words)
}

/// Walks `count` entries of `names` checking each 256th against `markers`; returns
/// the length of the names walked.
fn walk_names(names: &[u8], count: u64, markers: &[u32]) -> Option<usize> {
    let mut offset = 0usize;
    for symbol in 0..count {
        if symbol % 256 == 0 && markers.get((symbol / 256) as usize).map(|&marker| marker as usize) != Some(offset) {
            return None;
        }
        let (length, header) = entry_length(names, offset)?;
        offset = offset.checked_add(header + length)?;
        if offset > names.len() {
            return None;
        }
    }
    Some(offset)
}

/// An entry's length and how many bytes the length took (6.1: a second byte holds
/// bits 7.. when the first has bit 7 set).
fn entry_length(names: &[u8], offset: usize) -> Option<(usize, usize)> {
    let first = *names.get(offset)?;
    if first & 0x80 == 0 {
        return Some((usize::from(first), 1));
    }
    let second = *names.get(offset + 1)?;
    Some((usize::from(first & 0x7f) | (usize::from(second) << 7), 2))
}

/// Finds the 6.1 tables by shape in `[start, start + length)`.
pub fn find_tables(read: Reader<'_>, start: u64, length: u64) -> Result<Tables, KallsymsError> {
    let end = start.saturating_add(length);
    let mut carry: Vec<u8> = Vec::new();
    let mut carry_start = start;
    let mut chunk_start = start;
    while chunk_start < end {
        let chunk_length = CHUNK.min(end - chunk_start);
        let pieces: Vec<(u64, Option<Vec<u8>>)> = match read_vec(read, chunk_start, chunk_length) {
            Ok(bytes) => vec![(chunk_start, Some(bytes))],
            Err(_) => {
                let mut pieces = Vec::new();
                let mut page = chunk_start;
                while page < chunk_start + chunk_length {
                    let size = PAGE.min(chunk_start + chunk_length - page);
                    pieces.push((page, read_vec(read, page, size).ok()));
                    page += size;
                }
                pieces
            }
        };
        for (piece_start, piece) in pieces {
            let Some(piece) = piece else {
                carry.clear();
                continue;
            };
            if carry.is_empty() {
                carry_start = piece_start;
            }
            let mut window = core::mem::take(&mut carry);
            window.extend_from_slice(&piece);
            let mut from = 0;
            while let Some(found) = window
                .get(from..)
                .and_then(|rest| rest.windows(DIGITS_PATTERN.len()).position(|candidate| candidate == DIGITS_PATTERN))
            {
                let zero = carry_start + (from + found) as u64;
                if let Some(tables) = tables_from_digit_zero(read, zero) {
                    return Ok(tables);
                }
                from += found + 1;
            }
            let keep = window.len().min(DIGITS_PATTERN.len() - 1);
            carry_start += (window.len() - keep) as u64;
            carry = window.split_off(window.len() - keep);
        }
        chunk_start += chunk_length;
    }
    Err(KallsymsError::NotFound)
}

fn tables_from_digit_zero(read: Reader<'_>, zero: u64) -> Option<Tables> {
    let (token_table, token_index) = tokens_at_digit_zero(read, zero)?;
    for (markers_address, markers) in marker_candidates(read, token_table) {
        if let Some(tables) = names_before_markers(read, &markers, markers_address, token_table, token_index) {
            return Some(tables);
        }
    }
    None
}

fn names_before_markers(
    read: Reader<'_>,
    markers: &[u32],
    markers_address: u64,
    token_table: u64,
    token_index: u64,
) -> Option<Tables> {
    let last = u64::from(*markers.last()?);
    let marker_count = markers.len() as u64;
    // names_start + last + (at least one 1-byte entry) <= markers_address.
    let highest = markers_address.checked_sub(last + 2)? & !(ALIGNMENT - 1);
    let lowest = highest.saturating_sub(LAST_BLOCK_MAXIMUM);
    let (region_start, region) = read_suffix(read, markers_address, markers_address - lowest.checked_sub(8)?);
    let mut names = highest;
    while names >= lowest.max(region_start + 8) {
        let at = (names - 8 - region_start) as usize;
        let count = u64::from(u32_at(&region, at)?);
        let padding = u32_at(&region, at + 4)?;
        let markers_end = align_up(markers_address.checked_add(4 * marker_count)?, ALIGNMENT)?;
        let fits = markers_end == token_table
            || markers_end.checked_add(3 * count).and_then(|end| align_up(end, ALIGNMENT)) == Some(token_table);
        let plausible = padding == 0 && count > (marker_count - 1) * 256 && count <= marker_count * 256 && fits;
        if plausible {
            if let Some(tables) = names_at(read, names, count, markers, markers_address, token_table, token_index) {
                return Some(tables);
            }
        }
        let Some(lower) = names.checked_sub(ALIGNMENT) else { break };
        names = lower;
    }
    None
}

#[allow(clippy::too_many_arguments)]
fn names_at(
    read: Reader<'_>,
    names: u64,
    count: u64,
    markers: &[u32],
    markers_address: u64,
    token_table: u64,
    token_index: u64,
) -> Option<Tables> {
    let bytes = read_vec(read, names, markers_address - names).ok()?;
    let used = walk_names(&bytes, count, markers)? as u64;
    if align_up(names + used, ALIGNMENT)? != markers_address {
        return None;
    }
    let symbol_count_address = names - 8;
    // Up to 6.3 the offsets and relative base come first; from 6.4 they follow the
    // token index. The relative base is a kernel address either way.
    let mut relative_base = symbol_count_address - 8;
    let mut offsets = relative_base.checked_sub(align_up(count * 4, ALIGNMENT)?)?;
    if !read_vec(read, relative_base, 8).ok().and_then(|bytes| u64_at(&bytes, 0)).is_some_and(is_kernel_address) {
        offsets = token_index + 512;
        relative_base = align_up(offsets + count * 4, ALIGNMENT)?;
        let base = read_vec(read, relative_base, 8).ok().and_then(|bytes| u64_at(&bytes, 0))?;
        if !is_kernel_address(base) {
            return None;
        }
    }
    Some(Tables {
        offsets,
        relative_base,
        symbol_count: count,
        names,
        markers: markers_address,
        token_table,
        token_index,
    })
}

/// The tables as a kernel's vmcoreinfo names them (newer kernels), if it does.
pub fn tables_from_vmcoreinfo(info: &VmcoreInfo, read: Reader<'_>) -> Option<Tables> {
    let symbol_count_address = info.symbol("kallsyms_num_syms")?;
    let count = read_vec(read, symbol_count_address, 4).ok().and_then(|bytes| u32_at(&bytes, 0))?;
    let names = info.symbol("kallsyms_names")?;
    let token_table = info.symbol("kallsyms_token_table")?;
    let token_index = info.symbol("kallsyms_token_index")?;
    let offsets = info.symbol("kallsyms_offsets")?;
    let relative_base = info.symbol("kallsyms_relative_base")?;
    let markers = info.symbol("kallsyms_markers").unwrap_or(0);
    Some(Tables { offsets, relative_base, symbol_count: u64::from(count), names, markers, token_table, token_index })
}

fn is_kernel_address(address: u64) -> bool {
    address >= 0xffff_8000_0000_0000
}

fn kind_of(type_character: u8) -> SymbolKind {
    match type_character.to_ascii_lowercase() {
        b't' => SymbolKind::Function,
        b'd' | b'b' | b'r' => SymbolKind::Object,
        _ => SymbolKind::Other,
    }
}

/// Decodes every symbol of `tables`.
pub fn decode(read: Reader<'_>, tables: &Tables) -> Result<Vec<Symbol>, KallsymsError> {
    let count = tables.symbol_count;
    if count == 0 || count > MAXIMUM_SYMBOLS {
        return Err(KallsymsError::Damaged("symbol count"));
    }
    let index_bytes = read_vec(read, tables.token_index, 512)?;
    let mut index = [0u16; 256];
    for (slot, token) in index.iter_mut().enumerate() {
        *token = u16_at(&index_bytes, slot * 2).ok_or(KallsymsError::Damaged("token index"))?;
    }
    let table_length = u64::from(index.iter().copied().max().unwrap_or(0)) + 1024;
    let table = read_prefix(read, tables.token_table, table_length.min(TOKEN_TABLE_MAXIMUM));
    let tokens: Vec<&[u8]> = index
        .iter()
        .map(|&start| {
            let rest = table.get(usize::from(start)..).unwrap_or(&[]);
            let end = rest.iter().position(|&byte| byte == 0).unwrap_or(rest.len());
            &rest[..end]
        })
        .collect();
    let offsets = read_vec(read, tables.offsets, count * 4)?;
    let relative_base = read_vec(read, tables.relative_base, 8)?;
    let relative_base = u64_at(&relative_base, 0).ok_or(KallsymsError::Damaged("relative base"))?;
    let offset_of = |symbol: usize| u32_at(&offsets, symbol * 4).map(|raw| raw as i32);
    // With CONFIG_KALLSYMS_ABSOLUTE_PERCPU (x86-64 SMP), non-negative offsets are
    // absolute (per-CPU) values and kernel addresses are stored as -(address - base) - 1;
    // without it every offset is an unsigned distance from the base.
    let absolute_percpu = (0..count as usize).any(|symbol| offset_of(symbol).is_some_and(|offset| offset < 0));

    // kallsyms_names is read in chunks as the walk needs them: its size is not known
    // in advance, only bounded.
    let mut names: Vec<u8> = Vec::new();
    let mut exhausted = false;
    let mut symbols = Vec::with_capacity(count as usize);
    let mut position = 0usize;
    let mut text = Vec::new();
    for symbol in 0..count as usize {
        while !exhausted && names.len() < position + 2 + MAXIMUM_ENTRY {
            let more = read_prefix(read, tables.names + names.len() as u64, CHUNK);
            exhausted = (more.len() as u64) < CHUNK || names.len() as u64 > MAXIMUM_NAMES_BYTES;
            names.extend_from_slice(&more);
        }
        let (length, header) = entry_length(&names, position).ok_or(KallsymsError::Damaged("names"))?;
        let entry = names.get(position + header..position + header + length).ok_or(KallsymsError::Damaged("names"))?;
        position += header + length;
        text.clear();
        for &token in entry {
            text.extend_from_slice(tokens[usize::from(token)]);
            if text.len() > MAXIMUM_NAME_BYTES {
                break;
            }
        }
        let Some((&type_character, name)) = text.split_first() else { continue };
        let raw = offset_of(symbol).ok_or(KallsymsError::Damaged("offsets"))?;
        let address = if !absolute_percpu {
            relative_base.wrapping_add(u64::from(raw as u32))
        } else if raw >= 0 {
            raw as u64
        } else {
            relative_base.wrapping_sub(1).wrapping_sub(i64::from(raw) as u64)
        };
        let Ok(name) = core::str::from_utf8(name) else { continue };
        if name.is_empty() {
            continue;
        }
        symbols.push(Symbol { name: String::from(name), address, size: 0, kind: kind_of(type_character) });
    }
    Ok(symbols)
}

/// Finds (vmcoreinfo first, then by shape from `search_start`) and decodes kallsyms.
pub fn load(read: Reader<'_>, info: Option<&VmcoreInfo>, search_start: u64) -> Result<Vec<Symbol>, KallsymsError> {
    if let Some(tables) = info.and_then(|info| tables_from_vmcoreinfo(info, read)) {
        if let Ok(symbols) = decode(read, &tables) {
            return Ok(symbols);
        }
    }
    let tables = find_tables(read, search_start, SEARCH_LENGTH)?;
    decode(read, &tables)
}

/// Where the shape search starts for a guest: `_stext` from vmcoreinfo, else the link
/// address moved by `KERNELOFFSET`, else the default link address.
pub fn search_start(info: Option<&VmcoreInfo>) -> u64 {
    match info {
        Some(info) => info
            .symbol("_stext")
            .map(|stext| stext & !(PAGE - 1))
            .unwrap_or_else(|| DEFAULT_KERNEL_START.wrapping_add(info.kernel_offset())),
        None => DEFAULT_KERNEL_START,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::target::testing::FakeTarget;
    use crate::target::Target;
    use alloc::format;

    pub(crate) const BASE: u64 = 0xffff_ffff_8100_0000;

    fn pad(bytes: &mut Vec<u8>) {
        while !bytes.len().is_multiple_of(8) {
            bytes.push(0);
        }
    }

    /// The kallsyms tables as scripts/kallsyms lays them out (6.1 order; with
    /// `sequences`, the `kallsyms_seqs_of_names` of later builds between markers and
    /// tokens), starting at `origin`: symbol `i` is `function_i` at BASE + 0x10 * i,
    /// plus a per-CPU `percpu_thing` at absolute 0x2000. Returns the bytes and the
    /// offset of the token table.
    pub(crate) fn build_tables(count: usize, sequences: bool) -> (Vec<u8>, usize) {
        // Token 1 expands to "function_"; every other byte value a name uses is itself;
        // unused values get two-character tokens.
        let mut tokens: Vec<Vec<u8>> = (0..256u32).map(|value| alloc::vec![b'q', value as u8 | 0x40]).collect();
        for value in 0x21..0x7fu8 {
            tokens[usize::from(value)] = alloc::vec![value];
        }
        tokens[1] = b"function_".to_vec();
        let mut entries: Vec<(Vec<u8>, i32)> = Vec::new();
        entries.push((b"Bpercpu_thing".to_vec(), 0x2000));
        for index in 0..count - 1 {
            let mut encoded = alloc::vec![if index % 2 == 0 { b'T' } else { b't' }, 1];
            encoded.extend_from_slice(format!("{index}").as_bytes());
            entries.push((encoded, -(0x10 * index as i32) - 1));
        }
        let mut bytes = Vec::new();
        for (_, offset) in &entries {
            bytes.extend_from_slice(&offset.to_le_bytes());
        }
        pad(&mut bytes);
        bytes.extend_from_slice(&BASE.to_le_bytes());
        bytes.extend_from_slice(&(count as u32).to_le_bytes());
        pad(&mut bytes);
        let names_start = bytes.len();
        let mut markers = Vec::new();
        for (index, (encoded, _)) in entries.iter().enumerate() {
            if index % 256 == 0 {
                markers.push((bytes.len() - names_start) as u32);
            }
            bytes.push(encoded.len() as u8);
            bytes.extend_from_slice(encoded);
        }
        pad(&mut bytes);
        for marker in markers {
            bytes.extend_from_slice(&marker.to_le_bytes());
        }
        pad(&mut bytes);
        if sequences {
            for index in 0..count as u32 {
                bytes.extend_from_slice(&index.to_be_bytes()[1..]);
            }
            pad(&mut bytes);
        }
        let token_table = bytes.len();
        let mut index = Vec::new();
        for token in &tokens {
            index.push((bytes.len() - token_table) as u16);
            bytes.extend_from_slice(token);
            bytes.push(0);
        }
        pad(&mut bytes);
        for offset in index {
            bytes.extend_from_slice(&offset.to_le_bytes());
        }
        (bytes, token_table)
    }

    pub(crate) const ORIGIN: u64 = 0xffff_ffff_8200_0000;

    pub(crate) fn target_with_tables(count: usize, sequences: bool) -> (FakeTarget, usize) {
        let mut target = FakeTarget::new();
        let (bytes, token_table) = build_tables(count, sequences);
        // Junk before the tables that looks like the digits pattern but is no table.
        let mut junk = alloc::vec![0u8; 0x100];
        junk[0x10..0x10 + DIGITS_PATTERN.len()].copy_from_slice(DIGITS_PATTERN);
        target.write_virtual(ORIGIN - 0x100, 0x40_0000 - 0x100, &junk);
        target.write_virtual(ORIGIN, 0x40_0000, &bytes);
        (target, token_table)
    }

    fn check(count: usize, sequences: bool) {
        let (target, token_table) = target_with_tables(count, sequences);
        let registers = target.registers(0).unwrap();
        let read = |address: u64, buffer: &mut [u8]| crate::paging::read_virtual(&target, &registers, address, buffer);
        let tables = find_tables(&read, ORIGIN - 0x2000, 0x10_0000).unwrap();
        assert_eq!(tables.token_table, ORIGIN + token_table as u64);
        assert_eq!(tables.symbol_count, count as u64);
        assert_eq!(tables.offsets, ORIGIN);
        let symbols = decode(&read, &tables).unwrap();
        assert_eq!(symbols.len(), count);
        assert_eq!(symbols[0].name, "percpu_thing");
        assert_eq!((symbols[0].address, symbols[0].kind), (0x2000, SymbolKind::Object));
        let last = &symbols[count - 1];
        assert_eq!(last.name, format!("function_{}", count - 2));
        assert_eq!(last.address, BASE + 0x10 * (count as u64 - 2));
        assert_eq!(symbols[1].kind, SymbolKind::Function);
    }

    #[test]
    fn shape_search_finds_and_decodes_the_6_1_layout() {
        check(300, false);
        check(3, false);
    }

    #[test]
    fn shape_search_handles_sequences_between_markers_and_tokens() {
        check(600, true);
    }

    #[test]
    fn damaged_tables_are_not_trusted() {
        let (mut target, token_table) = target_with_tables(300, false);
        // Break the token index: the shape no longer validates.
        target.write_physical(0x40_0000 + token_table as u64, &[0, 0]);
        let registers = target.registers(0).unwrap();
        let read = |address: u64, buffer: &mut [u8]| crate::paging::read_virtual(&target, &registers, address, buffer);
        assert_eq!(find_tables(&read, ORIGIN - 0x2000, 0x10_0000), Err(KallsymsError::NotFound));
        let bogus = Tables {
            offsets: ORIGIN,
            relative_base: ORIGIN,
            symbol_count: u64::from(u32::MAX),
            names: ORIGIN,
            markers: ORIGIN,
            token_table: ORIGIN,
            token_index: ORIGIN,
        };
        assert_eq!(decode(&read, &bogus), Err(KallsymsError::Damaged("symbol count")));
    }
    #[test]
    fn symbols_load_uses_kallsyms_for_a_linux_guest_without_symtab() {
        let (mut target, _) = target_with_tables(300, true);
        let vmcoreinfo = format!("OSRELEASE=6.1.0-test\nSYMBOL(_stext)={:x}\n", ORIGIN - 0x1800);
        target.write_physical(0x9000, vmcoreinfo.as_bytes());
        let table = crate::symbols::load(&target);
        assert_eq!(table.source, "kallsyms in guest memory");
        assert_eq!(table.len(), 300);
        assert_eq!(table.describe(BASE + 0x10 * 7 + 3).as_deref(), Some("function_7+0x3"));

        // A kernel file with a .symtab wins over kallsyms.
        target.kernel_symbol_file = Some(crate::symbols::elf::tests::build_elf64(&[("from_file", BASE, 0x10, 2)]));
        assert_eq!(crate::symbols::load(&target).source, "ELF .symtab of the kernel file");
    }

    #[test]
    fn vmcoreinfo_names_the_tables_in_later_kernels() {
        let (target, token_table) = target_with_tables(20, false);
        let registers = target.registers(0).unwrap();
        let read = |address: u64, buffer: &mut [u8]| crate::paging::read_virtual(&target, &registers, address, buffer);
        let names = ORIGIN + align_up(20 * 4, 8).unwrap() + 16;
        let text = format!(
            "OSRELEASE=6.9.0\nSYMBOL(kallsyms_num_syms)={:x}\nSYMBOL(kallsyms_names)={names:x}\n\
SYMBOL(kallsyms_token_table)={:x}\nSYMBOL(kallsyms_token_index)={:x}\nSYMBOL(kallsyms_offsets)={ORIGIN:x}\n\
SYMBOL(kallsyms_relative_base)={:x}\n",
            names - 8,
            ORIGIN + token_table as u64,
            find_tables(&read, ORIGIN, 0x1_0000).unwrap().token_index,
            names - 16,
        );
        let info = VmcoreInfo::parse(text.as_bytes());
        let tables = tables_from_vmcoreinfo(&info, &read).unwrap();
        assert_eq!(tables.symbol_count, 20);
        let symbols = load(&read, Some(&info), 0).unwrap();
        assert_eq!(symbols.len(), 20);
        assert_eq!(symbols[5].name, "function_4");
    }
}

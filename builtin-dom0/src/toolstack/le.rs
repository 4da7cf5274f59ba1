//! Little-endian fields of untrusted byte strings (kernel files): reads that return
//! None past the end instead of panicking. Shared by the bzImage and ELF readers.

/// The u16 at `offset`, if it lies inside `bytes`.
pub(crate) fn read_u16(bytes: &[u8], offset: usize) -> Option<u16> {
    Some(u16::from_le_bytes(bytes.get(offset..offset.checked_add(2)?)?.try_into().ok()?))
}

/// The u32 at `offset`, if it lies inside `bytes`.
pub(crate) fn read_u32(bytes: &[u8], offset: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(offset..offset.checked_add(4)?)?.try_into().ok()?))
}

/// The u64 at `offset`, if it lies inside `bytes`.
pub(crate) fn read_u64(bytes: &[u8], offset: usize) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.get(offset..offset.checked_add(8)?)?.try_into().ok()?))
}

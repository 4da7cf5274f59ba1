//! Just enough ELF64 parsing to size the hypervisor binary's loadable segments.
//!
//! Reads the ELF header (System V gABI, "ELF Header": `e_phoff` at 0x20, `e_phentsize`
//! at 0x36, `e_phnum` at 0x38) and the program headers (`p_type` at 0x00, `p_filesz`
//! at 0x20, `p_memsz` at 0x28 of each 56-byte Elf64_Phdr), little-endian only (the
//! hypervisor is x86_64). Every offset is bounds-checked; malformed input is an error.

use crate::error::{Error, Result};

/// `PT_LOAD`: a loadable segment.
pub const PT_LOAD: u32 = 1;

/// One program header's size fields.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    /// `p_type`.
    pub kind: u32,
    /// `p_flags` (PF_X = 1, PF_W = 2, PF_R = 4).
    pub flags: u32,
    /// Bytes in the file.
    pub file_size: u64,
    /// Bytes in memory (includes .bss).
    pub memory_size: u64,
}

fn read<const N: usize>(data: &[u8], offset: usize) -> Result<[u8; N]> {
    data.get(offset..offset + N)
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or_else(|| Error::new(format!("ELF truncated at offset {offset:#x}")))
}

/// The program headers of an ELF64 little-endian file.
pub fn segments(data: &[u8]) -> Result<Vec<Segment>> {
    if data.get(..4) != Some(b"\x7fELF") {
        return Err(Error::new("not an ELF file"));
    }
    if read::<1>(data, 4)?[0] != 2 || read::<1>(data, 5)?[0] != 1 {
        return Err(Error::new("not a 64-bit little-endian ELF file"));
    }
    let table = usize::try_from(u64::from_le_bytes(read(data, 0x20)?)).map_err(|_| Error::new("e_phoff too large"))?;
    let entry_size = usize::from(u16::from_le_bytes(read(data, 0x36)?));
    let count = usize::from(u16::from_le_bytes(read(data, 0x38)?));
    if count > 0 && entry_size < 56 {
        return Err(Error::new(format!("e_phentsize {entry_size} too small")));
    }
    (0..count)
        .map(|index| {
            let base =
                table.checked_add(index * entry_size).ok_or_else(|| Error::new("program header offset overflows"))?;
            Ok(Segment {
                kind: u32::from_le_bytes(read(data, base)?),
                flags: u32::from_le_bytes(read(data, base + 4)?),
                file_size: u64::from_le_bytes(read(data, base + 0x20)?),
                memory_size: u64::from_le_bytes(read(data, base + 0x28)?),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_elf(headers: &[(u32, u64, u64)]) -> Vec<u8> {
        let mut data = vec![0u8; 64];
        data[..4].copy_from_slice(b"\x7fELF");
        data[4] = 2;
        data[5] = 1;
        data[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
        data[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        data[0x38..0x3a].copy_from_slice(&(headers.len() as u16).to_le_bytes());
        for &(kind, file_size, memory_size) in headers {
            let mut header = [0u8; 56];
            header[..4].copy_from_slice(&kind.to_le_bytes());
            header[4..8].copy_from_slice(&5u32.to_le_bytes());
            header[0x20..0x28].copy_from_slice(&file_size.to_le_bytes());
            header[0x28..0x30].copy_from_slice(&memory_size.to_le_bytes());
            data.extend_from_slice(&header);
        }
        data
    }

    #[test]
    fn reads_program_headers() {
        let data = fake_elf(&[(PT_LOAD, 100, 200), (0x6474e551, 0, 0), (PT_LOAD, 30, 30)]);
        let segments = segments(&data).unwrap();
        assert_eq!(segments.len(), 3);
        let load: u64 =
            segments.iter().filter(|segment| segment.kind == PT_LOAD).map(|segment| segment.memory_size).sum();
        assert_eq!(load, 230);
        assert_eq!(segments[0].flags, 5);
    }

    #[test]
    fn rejects_malformed_files() {
        assert!(segments(b"MZ").is_err());
        let mut data = fake_elf(&[(PT_LOAD, 1, 1)]);
        data.truncate(100);
        assert!(segments(&data).is_err());
        let mut data = fake_elf(&[]);
        data[4] = 1;
        assert!(segments(&data).is_err());
    }
}

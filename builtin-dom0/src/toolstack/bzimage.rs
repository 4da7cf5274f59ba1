//! Reading a Linux bzImage: the setup header, the compressed payload it points at, and
//! decompressing that payload into the vmlinux ELF a PVH domain boots.
//!
//! Setup header (Linux `Documentation/arch/x86/boot.rst`): `setup_sects` at 0x1f1 (0
//! means 4), the "HdrS" magic at 0x202, the boot protocol version at 0x206 (the payload
//! fields need 2.08), and at 0x248/0x24c the payload's offset (from the start of the
//! protected-mode code, at `(setup_sects + 1) * 512`) and length. The payload's last
//! four bytes are not compressed data: they are the uncompressed size, appended by the
//! kernel build. The compression is recognized by the payload's first bytes.
//!
//! LZ4 uses Linux's "legacy" framing (`lib/decompress_unlz4.c`): a 0x184C2102 magic,
//! then blocks of a u32 compressed length and a raw LZ4 block that decompresses to at
//! most 8 MiB; a length equal to the magic starts another stream and is skipped (lz4_flex
//! unpacks the blocks). gzip (RFC 1952: a header, then raw deflate, unpacked by
//! miniz_oxide) ends with its own size field, which doubles as the trailer. zstd frames
//! are unpacked by ruzstd. bzip2, lzma, xz and lzo are recognized and reported as not
//! supported.
//!
//! Memory: the unpacked ELF is tens of MiB (Debian's cloud kernel: 53 MiB) out of a
//! hypervisor heap not much larger, and its size comes from the file. So the output
//! buffer is allocated once, exactly the trailer's size, fallibly
//! ([`BzImageError::OutOfMemory`], never an allocation panic), and every decompressor
//! writes into it in place; nothing else here is sized by the file. (ruzstd keeps its
//! own window buffer, at most the frame's window, which it allocates itself.)

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::fmt;

use super::le::{read_u16, read_u32};

/// The legacy LZ4 stream magic, little-endian at the start of the payload.
const LZ4_LEGACY_MAGIC: u32 = 0x184c_2102;
/// Largest uncompressed size of one legacy LZ4 block.
const LZ4_LEGACY_BLOCK: usize = 8 << 20;
/// Largest compressed size of one block: LZ4's worst-case bound for 8 MiB.
const LZ4_LEGACY_MAX_COMPRESSED: usize = LZ4_LEGACY_BLOCK + LZ4_LEGACY_BLOCK / 255 + 16;
/// Boot protocol version that introduced `payload_offset` / `payload_length`.
const PROTOCOL_WITH_PAYLOAD: u16 = 0x0208;

/// How a bzImage payload is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Gzip,
    Bzip2,
    Lzma,
    Xz,
    Lzo,
    Lz4,
    Zstd,
    /// The payload is the ELF itself.
    None,
}

impl Compression {
    fn detect(payload: &[u8]) -> Option<Compression> {
        let starts = |magic: &[u8]| payload.starts_with(magic);
        Some(if starts(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if starts(b"BZh") {
            Compression::Bzip2
        } else if starts(&[0x5d, 0x00, 0x00]) {
            Compression::Lzma
        } else if starts(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
            Compression::Xz
        } else if starts(&[0x89, b'L', b'Z', b'O']) {
            Compression::Lzo
        } else if starts(&LZ4_LEGACY_MAGIC.to_le_bytes()) {
            Compression::Lz4
        } else if starts(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else if starts(b"\x7fELF") {
            Compression::None
        } else {
            return None;
        })
    }

    /// Lower-case name, for messages.
    pub fn name(self) -> &'static str {
        match self {
            Compression::Gzip => "gzip",
            Compression::Bzip2 => "bzip2",
            Compression::Lzma => "lzma",
            Compression::Xz => "xz",
            Compression::Lzo => "lzo",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
            Compression::None => "none",
        }
    }
}

/// Why a bzImage could not be read or unpacked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BzImageError {
    /// No boot sector signature or "HdrS" header.
    NotBzImage,
    /// Boot protocol older than 2.08 (no payload fields).
    ProtocolTooOld(u16),
    /// The payload fields point outside the file, or the payload is too short.
    BadPayloadBounds,
    /// The payload's first bytes match no known compression.
    UnknownCompression,
    /// A known compression this loader cannot unpack yet.
    UnsupportedCompression(Compression),
    /// The uncompressed size in the trailer exceeds the caller's limit.
    TooLarge { size: u64, limit: usize },
    /// The compressed stream is corrupt (bad block length, bad LZ4 data, wrong size).
    Corrupt(&'static str),
    /// The hypervisor heap has no room for the `size`-byte unpacked kernel.
    OutOfMemory { size: usize },
}

impl fmt::Display for BzImageError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BzImageError::NotBzImage => formatter.write_str("not a Linux bzImage"),
            BzImageError::ProtocolTooOld(version) => {
                write!(formatter, "boot protocol {}.{:02} is older than 2.08", version >> 8, version & 0xff)
            }
            BzImageError::BadPayloadBounds => formatter.write_str("payload lies outside the file"),
            BzImageError::UnknownCompression => formatter.write_str("payload compression not recognized"),
            BzImageError::UnsupportedCompression(kind) => {
                write!(formatter, "{}-compressed kernels are not supported yet", kind.name())
            }
            BzImageError::TooLarge { size, limit } => {
                write!(formatter, "kernel unpacks to {size} bytes, more than the limit of {limit}")
            }
            BzImageError::Corrupt(what) => write!(formatter, "compressed kernel is corrupt: {what}"),
            BzImageError::OutOfMemory { size } => write!(
                formatter,
                "not enough hypervisor memory to unpack the kernel ({} MiB needed)",
                size.div_ceil(1 << 20)
            ),
        }
    }
}

/// A bzImage's header facts and its compressed payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BzImage<'a> {
    /// Boot protocol version (e.g. 0x020f).
    pub protocol_version: u16,
    /// The compressed data, without the 4-byte size trailer.
    pub compressed: &'a [u8],
    /// Uncompressed size, from the trailer.
    pub uncompressed_size: u32,
    pub compression: Compression,
}

/// Reads the setup header and finds the payload.
pub fn parse(file: &[u8]) -> Result<BzImage<'_>, BzImageError> {
    if read_u16(file, 0x1fe) != Some(0xaa55) || file.get(0x202..0x206) != Some(b"HdrS".as_slice()) {
        return Err(BzImageError::NotBzImage);
    }
    let protocol_version = read_u16(file, 0x206).ok_or(BzImageError::NotBzImage)?;
    if protocol_version < PROTOCOL_WITH_PAYLOAD {
        return Err(BzImageError::ProtocolTooOld(protocol_version));
    }
    let setup_sectors = match file.get(0x1f1) {
        Some(0) => 4,
        Some(&sectors) => usize::from(sectors),
        None => return Err(BzImageError::NotBzImage),
    };
    let payload_offset = read_u32(file, 0x248).ok_or(BzImageError::NotBzImage)?;
    let payload_length = read_u32(file, 0x24c).ok_or(BzImageError::NotBzImage)?;
    let start = (setup_sectors + 1)
        .checked_mul(512)
        .and_then(|code| code.checked_add(usize::try_from(payload_offset).ok()?))
        .ok_or(BzImageError::BadPayloadBounds)?;
    let length = usize::try_from(payload_length).map_err(|_| BzImageError::BadPayloadBounds)?;
    let payload = start
        .checked_add(length)
        .and_then(|end| file.get(start..end))
        .filter(|payload| payload.len() > 4)
        .ok_or(BzImageError::BadPayloadBounds)?;
    let (compressed, trailer) = payload.split_at(payload.len() - 4);
    let uncompressed_size = read_u32(trailer, 0).ok_or(BzImageError::BadPayloadBounds)?;
    let compression = Compression::detect(compressed).ok_or(BzImageError::UnknownCompression)?;
    Ok(BzImage { protocol_version, compressed, uncompressed_size, compression })
}

impl BzImage<'_> {
    /// Unpacks the payload (the vmlinux ELF). Refuses to allocate more than `limit`
    /// bytes, and checks the result has exactly the trailer's size. The one buffer
    /// allocated (the result) is allocated fallibly: a heap without room for it is
    /// [`BzImageError::OutOfMemory`].
    pub fn decompress(&self, limit: usize) -> Result<Vec<u8>, BzImageError> {
        let too_large = BzImageError::TooLarge { size: u64::from(self.uncompressed_size), limit };
        let size = usize::try_from(self.uncompressed_size).map_err(|_| too_large.clone())?;
        if size > limit {
            return Err(too_large);
        }
        self.decompress_exact(size)
    }

    /// Unpacks the payload into exactly `size` bytes, whatever the trailer says (which
    /// [`BzImage::decompress`] has checked against its limit). Separate so the tests
    /// can ask for more than a u32 trailer can say.
    fn decompress_exact(&self, size: usize) -> Result<Vec<u8>, BzImageError> {
        if !matches!(self.compression, Compression::Lz4 | Compression::Gzip | Compression::Zstd | Compression::None) {
            return Err(BzImageError::UnsupportedCompression(self.compression));
        }
        if self.compression == Compression::None && self.compressed.len() != size {
            return Err(BzImageError::Corrupt("uncompressed payload size differs from its trailer"));
        }
        let mut output = zeroed_buffer(size)?;
        let written = match self.compression {
            Compression::Lz4 => lz4_legacy_decompress(self.compressed, &mut output)?,
            Compression::Gzip => gzip_decompress(self.compressed, &mut output)?,
            Compression::Zstd => zstd_decompress(self.compressed, &mut output)?,
            _ => {
                output.copy_from_slice(self.compressed);
                size
            }
        };
        if written != size {
            return Err(BzImageError::Corrupt("unpacked size differs from the trailer"));
        }
        Ok(output)
    }
}

/// `size` zero bytes, or [`BzImageError::OutOfMemory`] if the heap has no room: the
/// size comes from the file, so an allocation failure must not be a panic.
fn zeroed_buffer(size: usize) -> Result<Vec<u8>, BzImageError> {
    let mut buffer = Vec::new();
    buffer.try_reserve_exact(size).map_err(|_| BzImageError::OutOfMemory { size })?;
    buffer.resize(size, 0); // within the capacity just reserved: no reallocation
    Ok(buffer)
}

/// Decompresses a Linux legacy-framed LZ4 stream into `output`, which must be filled
/// exactly; returns the bytes written.
fn lz4_legacy_decompress(stream: &[u8], output: &mut [u8]) -> Result<usize, BzImageError> {
    let size = output.len();
    let mut written = 0usize;
    let mut position = 4; // past the magic, which `Compression::detect` matched
    while position < stream.len() {
        let block_length = read_u32(stream, position).ok_or(BzImageError::Corrupt("truncated block length"))?;
        position += 4;
        if block_length == LZ4_LEGACY_MAGIC {
            continue;
        }
        let block_length = block_length as usize;
        if block_length == 0 || block_length > LZ4_LEGACY_MAX_COMPRESSED {
            return Err(BzImageError::Corrupt("impossible block length"));
        }
        let block = position
            .checked_add(block_length)
            .and_then(|end| stream.get(position..end))
            .ok_or(BzImageError::Corrupt("block runs past the payload"))?;
        position += block_length;
        let window_end = written.saturating_add(LZ4_LEGACY_BLOCK).min(size);
        let window =
            output.get_mut(written..window_end).ok_or(BzImageError::Corrupt("more data than the trailer says"))?;
        let produced =
            lz4_flex::block::decompress_into(block, window).map_err(|_| BzImageError::Corrupt("bad LZ4 block"))?;
        written += produced;
    }
    Ok(written)
}

/// Unpacks a gzip member (RFC 1952) into `output`, whose deflate data must fill it
/// exactly (more is corruption); returns the bytes written. The member's CRC is not
/// checked; the exact size and deflate's own structure are.
fn gzip_decompress(member: &[u8], output: &mut [u8]) -> Result<usize, BzImageError> {
    use miniz_oxide::inflate::core::{decompress, inflate_flags, DecompressorOxide};
    use miniz_oxide::inflate::TINFLStatus;

    const FHCRC: u8 = 1 << 1;
    const FEXTRA: u8 = 1 << 2;
    const FNAME: u8 = 1 << 3;
    const FCOMMENT: u8 = 1 << 4;
    let truncated = BzImageError::Corrupt("truncated gzip header");
    if member.get(2) != Some(&8) {
        return Err(BzImageError::Corrupt("gzip method is not deflate"));
    }
    let flags = *member.get(3).ok_or(truncated.clone())?;
    let mut position = 10;
    if flags & FEXTRA != 0 {
        let extra = read_u16(member, position).ok_or(truncated.clone())?;
        position += 2 + usize::from(extra);
    }
    for flag in [FNAME, FCOMMENT] {
        if flags & flag != 0 {
            let rest = member.get(position..).ok_or(truncated.clone())?;
            let terminator = rest.iter().position(|&byte| byte == 0).ok_or(truncated.clone())?;
            position += terminator + 1;
        }
    }
    if flags & FHCRC != 0 {
        position += 2;
    }
    let deflate = member.get(position..).ok_or(truncated)?;
    // The whole stream in one call, into the whole output: no window to wrap, and the
    // stream must end (Done) within the buffer. The decompressor state (about 11 KiB,
    // a fixed size) lives on the heap rather than the hypervisor's stack.
    let mut state = Box::<DecompressorOxide>::default();
    let (status, _, written) =
        decompress(&mut state, deflate, output, 0, inflate_flags::TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF);
    match status {
        TINFLStatus::Done => Ok(written),
        TINFLStatus::HasMoreOutput => Err(BzImageError::Corrupt("unpacked size differs from the trailer")),
        _ => Err(BzImageError::Corrupt("bad deflate data")),
    }
}

/// Unpacks zstd frames into `output`; returns the bytes written.
fn zstd_decompress(frames: &[u8], output: &mut [u8]) -> Result<usize, BzImageError> {
    ruzstd::decoding::FrameDecoder::new().decode_all(frames, output).map_err(|error| match error {
        ruzstd::decoding::errors::FrameDecoderError::TargetTooSmall => {
            BzImageError::Corrupt("unpacked size differs from the trailer")
        }
        _ => BzImageError::Corrupt("bad zstd data"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;

    /// A minimal bzImage around `payload` (which must already end with its trailer).
    fn bzimage(payload: &[u8]) -> Vec<u8> {
        let setup_sectors = 3u8;
        let code_start = (usize::from(setup_sectors) + 1) * 512;
        let payload_offset = 0x40;
        let mut file = vec![0u8; code_start + payload_offset];
        file[0x1f1] = setup_sectors;
        file[0x1fe..0x200].copy_from_slice(&0xaa55u16.to_le_bytes());
        file[0x202..0x206].copy_from_slice(b"HdrS");
        file[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
        file[0x248..0x24c].copy_from_slice(&(payload_offset as u32).to_le_bytes());
        file[0x24c..0x250].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        file.extend_from_slice(payload);
        file
    }

    /// Linux's legacy LZ4 framing of `data`, in blocks of `block` bytes, plus trailer.
    fn lz4_legacy(data: &[u8], block: usize) -> Vec<u8> {
        let mut stream = LZ4_LEGACY_MAGIC.to_le_bytes().to_vec();
        for chunk in data.chunks(block) {
            let compressed = lz4_flex::block::compress(chunk);
            stream.extend_from_slice(&(compressed.len() as u32).to_le_bytes());
            stream.extend_from_slice(&compressed);
        }
        stream.extend_from_slice(&(data.len() as u32).to_le_bytes());
        stream
    }

    fn sample(length: usize) -> Vec<u8> {
        let mut data = b"\x7fELF".to_vec();
        data.extend((0..length).map(|i| (i * 7 % 251) as u8 ^ (i / 4096) as u8));
        data
    }

    #[test]
    fn unpacks_lz4_legacy_payloads() {
        let data = sample(3 * LZ4_LEGACY_BLOCK / 2);
        let file = bzimage(&lz4_legacy(&data, LZ4_LEGACY_BLOCK));
        let image = parse(&file).unwrap();
        assert_eq!(image.compression, Compression::Lz4);
        assert_eq!(image.protocol_version, 0x020f);
        assert_eq!(image.uncompressed_size as usize, data.len());
        assert_eq!(image.decompress(64 << 20).unwrap(), data);
        assert_eq!(
            image.decompress(1 << 20).unwrap_err(),
            BzImageError::TooLarge { size: data.len() as u64, limit: 1 << 20 }
        );
    }

    #[test]
    fn a_second_magic_starts_another_stream() {
        let data = sample(10_000);
        let first = lz4_legacy(&data[..5000], LZ4_LEGACY_BLOCK);
        let second = lz4_legacy(&data[5000..], LZ4_LEGACY_BLOCK);
        let mut stream = first[..first.len() - 4].to_vec();
        stream.extend_from_slice(&second[..second.len() - 4]);
        stream.extend_from_slice(&(data.len() as u32).to_le_bytes());
        assert_eq!(parse(&bzimage(&stream)).unwrap().decompress(1 << 20).unwrap(), data);
    }

    /// A gzip member of `data` (with a file name, as `gzip` writes), as Linux builds it:
    /// no extra trailer, the member's own size field ends the payload.
    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut member = vec![0x1f, 0x8b, 8, 1 << 3, 0, 0, 0, 0, 2, 3];
        member.extend_from_slice(b"vmlinux.bin\0");
        member.extend(miniz_oxide::deflate::compress_to_vec(data, 6));
        member.extend_from_slice(&0u32.to_le_bytes()); // CRC32, not checked
        member.extend_from_slice(&(data.len() as u32).to_le_bytes());
        member
    }

    fn zstd(data: &[u8]) -> Vec<u8> {
        let mut frames = ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest);
        frames.extend_from_slice(&(data.len() as u32).to_le_bytes());
        frames
    }

    #[test]
    fn unpacks_gzip_and_zstd_payloads() {
        let data = sample(300_000);
        for (payload, kind) in [(gzip(&data), Compression::Gzip), (zstd(&data), Compression::Zstd)] {
            let file = bzimage(&payload);
            let image = parse(&file).unwrap();
            assert_eq!(image.compression, kind);
            assert_eq!(image.decompress(1 << 20).unwrap(), data, "{kind:?}");
            // A trailer that disagrees with the data is corruption, whichever way.
            for wrong in [data.len() - 1, data.len() + 1] {
                let mut file = file.clone();
                let end = file.len();
                file[end - 4..].copy_from_slice(&(wrong as u32).to_le_bytes());
                let image = parse(&file).unwrap();
                assert!(matches!(image.decompress(1 << 20), Err(BzImageError::Corrupt(_))), "{kind:?} {wrong}");
            }
        }
    }

    /// A size that passes the caller's limit (usize::MAX) but that no heap can hold:
    /// every compression reports OutOfMemory, before touching the stream, and the
    /// process does not abort. (A u32 trailer cannot say more than 4 GiB, which a host
    /// may well allocate, so the size is given to `decompress_exact` directly.)
    #[test]
    fn a_size_the_heap_cannot_hold_is_out_of_memory_not_a_panic() {
        let data = sample(10_000);
        let mut plain = data.clone();
        plain.extend_from_slice(&(data.len() as u32).to_le_bytes());
        let huge = isize::MAX as usize - 4096;
        for payload in [lz4_legacy(&data, LZ4_LEGACY_BLOCK), gzip(&data), zstd(&data)] {
            let file = bzimage(&payload);
            let image = parse(&file).unwrap();
            assert_eq!(image.decompress(usize::MAX).unwrap(), data);
            assert_eq!(image.decompress_exact(huge).unwrap_err(), BzImageError::OutOfMemory { size: huge });
            assert_eq!(image.decompress_exact(usize::MAX).unwrap_err(), BzImageError::OutOfMemory { size: usize::MAX });
        }
        assert_eq!(zeroed_buffer(huge).unwrap_err(), BzImageError::OutOfMemory { size: huge });
        assert_eq!(
            BzImageError::OutOfMemory { size: 53 << 20 }.to_string(),
            "not enough hypervisor memory to unpack the kernel (53 MiB needed)"
        );
        assert_eq!(
            BzImageError::OutOfMemory { size: (53 << 20) + 1 }.to_string(),
            "not enough hypervisor memory to unpack the kernel (54 MiB needed)"
        );
    }

    #[test]
    fn recognizes_unsupported_compressions_and_plain_elf() {
        let cases: [(&[u8], Compression); 4] = [
            (b"BZh9", Compression::Bzip2),
            (&[0x5d, 0, 0, 0x80], Compression::Lzma),
            (&[0xfd, b'7', b'z', b'X', b'Z', 0], Compression::Xz),
            (&[0x89, b'L', b'Z', b'O'], Compression::Lzo),
        ];
        for (magic, kind) in cases {
            let mut payload = magic.to_vec();
            payload.extend_from_slice(&[0; 8]);
            payload.extend_from_slice(&100u32.to_le_bytes());
            let file = bzimage(&payload);
            let image = parse(&file).unwrap();
            assert_eq!(image.compression, kind);
            assert_eq!(image.decompress(1 << 20).unwrap_err(), BzImageError::UnsupportedCompression(kind));
        }
        let mut plain = sample(100);
        plain.extend_from_slice(&104u32.to_le_bytes());
        assert_eq!(parse(&bzimage(&plain)).unwrap().decompress(1 << 20).unwrap(), sample(100));
    }

    #[test]
    fn rejects_bad_headers_and_corrupt_streams() {
        assert_eq!(parse(b"").unwrap_err(), BzImageError::NotBzImage);
        let good = bzimage(&lz4_legacy(&sample(50_000), 16_384));
        let mut old = good.clone();
        old[0x206..0x208].copy_from_slice(&0x0206u16.to_le_bytes());
        assert_eq!(parse(&old).unwrap_err(), BzImageError::ProtocolTooOld(0x0206));
        let mut outside = good.clone();
        outside[0x24c..0x250].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(parse(&outside).unwrap_err(), BzImageError::BadPayloadBounds);
        let mut unknown = good.clone();
        let payload_start = 4 * 512 + 0x40;
        unknown[payload_start] = 0x42;
        assert_eq!(parse(&unknown).unwrap_err(), BzImageError::UnknownCompression);
        // Wrong trailer: the stream unpacks to a different size.
        let mut short_trailer = good.clone();
        let end = short_trailer.len();
        short_trailer[end - 4..].copy_from_slice(&1000u32.to_le_bytes());
        assert!(matches!(parse(&short_trailer).unwrap().decompress(1 << 20), Err(BzImageError::Corrupt(_))));
        // Every truncation and many single-byte corruptions: errors, never panics, and
        // any success has exactly the trailer's size.
        for length in (0..good.len()).step_by(97) {
            if let Ok(image) = parse(&good[..length]) {
                let _ = image.decompress(1 << 20);
            }
        }
        let mut state = 0x9e37_79b9u32;
        let data = sample(20_000);
        for good in [good.clone(), bzimage(&gzip(&data)), bzimage(&zstd(&data))] {
            for _ in 0..2000 {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                let mut file = good.clone();
                let at = payload_start + state as usize % (good.len() - payload_start);
                file[at] ^= (state >> 24) as u8 | 1;
                if let Ok(image) = parse(&file) {
                    if let Ok(unpacked) = image.decompress(1 << 20) {
                        assert_eq!(unpacked.len(), image.uncompressed_size as usize);
                    }
                }
            }
        }
    }
}

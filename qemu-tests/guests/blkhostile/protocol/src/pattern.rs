//! Data for disk round trips: a pattern that differs per byte, per sector and per
//! round (so a sector written to the wrong place, or stale data, shows), and a
//! checksum (64-bit FNV-1a) to compare what was written with what came back.

/// Fills `buffer` with the pattern of `seed`, as if it started at disk byte `start`.
pub fn fill(buffer: &mut [u8], seed: u64, start: u64) {
    for (at, byte) in buffer.iter_mut().enumerate() {
        let position = start.wrapping_add(at as u64);
        let mixed = (position ^ seed.rotate_left(17)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        *byte = (mixed >> 56) as u8;
    }
}

const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// A running 64-bit FNV-1a checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checksum(u64);

impl Checksum {
    pub fn new() -> Self {
        Self(FNV_OFFSET_BASIS)
    }

    pub fn add(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0 ^ u64::from(byte)).wrapping_mul(FNV_PRIME);
        }
    }

    pub fn value(&self) -> u64 {
        self.0
    }
}

impl Default for Checksum {
    fn default() -> Self {
        Self::new()
    }
}

/// Bytes in the protocol's sector.
const SECTOR_SIZE: u64 = 512;

/// The checksum of `count` disk sectors from `first_sector` holding `seed`'s pattern.
pub fn sectors_checksum(seed: u64, first_sector: u64, count: u64) -> Checksum {
    let mut checksum = Checksum::new();
    let mut sector = [0u8; SECTOR_SIZE as usize];
    for index in 0..count {
        fill(&mut sector, seed, first_sector.wrapping_add(index).wrapping_mul(SECTOR_SIZE));
        checksum.add(&sector);
    }
    checksum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_the_published_vectors() {
        let mut empty = Checksum::new();
        empty.add(b"");
        assert_eq!(empty.value(), 0xcbf2_9ce4_8422_2325);
        let mut a = Checksum::new();
        a.add(b"a");
        assert_eq!(a.value(), 0xaf63_dc4c_8601_ec8c);
        let mut split = Checksum::new();
        split.add(b"foo");
        split.add(b"bar");
        let mut whole = Checksum::new();
        whole.add(b"foobar");
        assert_eq!(split, whole);
        assert_eq!(whole.value(), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn pattern_depends_on_position_and_seed_and_continues_across_buffers() {
        let mut whole = [0u8; 1024];
        fill(&mut whole, 1, 4096);
        let mut halves = [0u8; 1024];
        fill(&mut halves[..512], 1, 4096);
        fill(&mut halves[512..], 1, 4096 + 512);
        assert_eq!(whole, halves);
        let mut other_seed = [0u8; 1024];
        fill(&mut other_seed, 2, 4096);
        assert_ne!(whole, other_seed);
        // Two sectors of the same round differ.
        assert_ne!(whole[..512], whole[512..]);
    }

    #[test]
    fn sectors_checksum_is_the_checksum_of_the_filled_sectors() {
        let mut disk = [0u8; 12 * 512];
        fill(&mut disk, 7, 3 * 512);
        let mut direct = Checksum::new();
        direct.add(&disk);
        assert_eq!(sectors_checksum(7, 3, 12), direct);
        assert_ne!(sectors_checksum(7, 4, 12), direct);
        assert_ne!(sectors_checksum(8, 3, 12), direct);
    }
}

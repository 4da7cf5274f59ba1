//! The one way dom0's services reach a page a guest shares with them (a xenstore or
//! console ring, later a grant-mapped page): byte and 32-bit little-endian access at
//! offsets inside one 4 KiB page.
//!
//! Why a trait: the page is guest memory, which only the hypervisor side (image/) can
//! reach; host tests use [`TestPage`]. Every access is bounds-checked by the caller's
//! offsets being below [`PAGE_SIZE`]; implementations clamp anything outside the page
//! to a no-op (reads give zeros), so a bug here can never touch memory beyond the page.
//! The guest writes the same page concurrently: readers must treat every value as
//! untrusted and may see it change between two reads.

/// Size of a shared page.
pub const PAGE_SIZE: usize = 4096;

pub trait SharedPage {
    /// Copies `buffer.len()` bytes from `offset`.
    fn read(&self, offset: usize, buffer: &mut [u8]);
    /// Copies `data` to `offset`.
    fn write(&mut self, offset: usize, data: &[u8]);
    /// A 32-bit little-endian value at `offset` (ring indices), read once.
    fn read_u32(&self, offset: usize) -> u32 {
        let mut bytes = [0u8; 4];
        self.read(offset, &mut bytes);
        u32::from_le_bytes(bytes)
    }
    /// Writes a 32-bit little-endian value at `offset` (ring indices). Implementations
    /// order this after every earlier write (a release store), as the ring protocols
    /// require before an index moves.
    fn write_u32(&mut self, offset: usize, value: u32) {
        self.write(offset, &value.to_le_bytes());
    }
}

/// A page in host memory, for tests.
#[derive(Clone)]
pub struct TestPage {
    pub bytes: [u8; PAGE_SIZE],
}

impl Default for TestPage {
    fn default() -> Self {
        TestPage { bytes: [0; PAGE_SIZE] }
    }
}

impl SharedPage for TestPage {
    fn read(&self, offset: usize, buffer: &mut [u8]) {
        buffer.fill(0);
        if let Some(source) = offset.checked_add(buffer.len()).and_then(|end| self.bytes.get(offset..end)) {
            buffer.copy_from_slice(source);
        }
    }
    fn write(&mut self, offset: usize, data: &[u8]) {
        if let Some(target) = offset.checked_add(data.len()).and_then(|end| self.bytes.get_mut(offset..end)) {
            target.copy_from_slice(data);
        }
    }
}

//! A bzImage from the user (LZ4, gzip or zstd payload): reading the header and
//! unpacking the payload never panic, never allocate past the limit, and a successful
//! unpack has the trailer's size.
#![no_main]

use basalt_dom0::toolstack::bzimage;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(image) = bzimage::parse(data) {
        if let Ok(unpacked) = image.decompress(16 << 20) {
            assert_eq!(unpacked.len(), image.uncompressed_size as usize);
        }
    }
});

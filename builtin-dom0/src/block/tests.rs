//! Host tests of the block layer: the RAM disk's operations and refusals, partition
//! views, MBR/GPT parsing of images built here in memory, and names.

use super::names::{disk_name, human_size, partition_name, DiskTable, DriverKind};
use super::partition::{self, crc32, GptHeaderSource, Guid, PartitionError, PartitionKind, Scheme};
use super::ramdisk::{parse_size, SizeError};
use super::*;
use alloc::boxed::Box;
use alloc::string::ToString;
use alloc::vec;

const BS: usize = 512;

fn poll(device: &mut dyn BlockDevice) -> Vec<Completion> {
    let mut out = Vec::new();
    device.poll_completions(&mut out);
    out
}

fn write_sync(device: &mut dyn BlockDevice, lba: u64, data: Vec<u8>) {
    let blocks = (data.len() / device.info().logical_block_size as usize) as u32;
    let id = device.submit(Request::write(lba, blocks, data)).unwrap();
    let done = poll(device);
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].id, id);
    assert_eq!(done[0].result, Ok(()));
}

fn read_sync(device: &mut dyn BlockDevice, lba: u64, blocks: u32) -> Vec<u8> {
    let size = device.info().logical_block_size;
    let id = device.submit(Request::read(lba, blocks, size).unwrap()).unwrap();
    let mut done = poll(device);
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].id, id);
    assert_eq!(done[0].result, Ok(()));
    done.pop().unwrap().buffer
}

// ---- RAM disk ----

#[test]
fn ramdisk_write_read_flush_discard() {
    let mut disk = RamDisk::new(16, 512).unwrap();
    let info = disk.info();
    assert_eq!(info.capacity, 16);
    assert_eq!(info.capacity_bytes(), 8192);
    assert!(info.supports_flush && info.supports_discard && !info.read_only);

    write_sync(&mut disk, 3, vec![0xAB; 1024]);
    assert_eq!(read_sync(&mut disk, 3, 2), vec![0xAB; 1024]);
    assert_eq!(read_sync(&mut disk, 2, 1), vec![0; 512]);

    let flush = disk.submit(Request::flush()).unwrap();
    let discard = disk.submit(Request::discard(4, 1)).unwrap();
    let done = poll(&mut disk);
    assert_eq!(done.iter().map(|c| c.id).collect::<Vec<_>>(), [flush, discard]);
    assert!(done.iter().all(|c| c.result.is_ok()));
    assert_eq!(read_sync(&mut disk, 3, 1), vec![0xAB; 512]);
    assert_eq!(read_sync(&mut disk, 4, 1), vec![0; 512]);
}

#[test]
fn ramdisk_completes_only_on_poll() {
    let mut disk = RamDisk::new(4, 4096).unwrap();
    let a = disk.submit(Request::read(0, 1, 4096).unwrap()).unwrap();
    let b = disk.submit(Request::read(1, 1, 4096).unwrap()).unwrap();
    assert_ne!(a, b);
    let done = poll(&mut disk);
    assert_eq!(done.len(), 2);
    assert_eq!(done[0].buffer.len(), 4096);
    assert!(poll(&mut disk).is_empty());
}

#[test]
fn ramdisk_refusals() {
    let mut disk = RamDisk::new(8, 512).unwrap();
    let refused = |disk: &mut RamDisk, request| disk.submit(request).unwrap_err();
    assert_eq!(refused(&mut disk, Request::write(0, 0, Vec::new())), BlockError::EmptyRequest);
    assert_eq!(
        refused(&mut disk, Request::read(7, 2, 512).unwrap()),
        BlockError::OutOfRange { lba: 7, blocks: 2, capacity: 8 }
    );
    assert!(matches!(refused(&mut disk, Request::discard(u64::MAX, 2)), BlockError::OutOfRange { .. }));
    assert_eq!(
        refused(&mut disk, Request::write(0, 2, vec![0; 513])),
        BlockError::BufferLength { expected: 1024, actual: 513 }
    );
    let mut discard = Request::discard(0, 1);
    discard.buffer = vec![0; 512];
    assert!(matches!(refused(&mut disk, discard), BlockError::BufferLength { expected: 0, .. }));
    let mut flush = Request::flush();
    flush.blocks = 1;
    assert_eq!(refused(&mut disk, flush), BlockError::MalformedFlush);
    // Nothing refused was queued.
    assert!(poll(&mut disk).is_empty());

    let mut read_only = RamDisk::new(8, 512).unwrap().with_read_only(true);
    assert_eq!(read_only.submit(Request::write(0, 1, vec![0; 512])), Err(BlockError::ReadOnly));
    assert_eq!(read_only.submit(Request::discard(0, 1)), Err(BlockError::ReadOnly));
    assert!(read_only.submit(Request::read(0, 1, 512).unwrap()).is_ok());
    assert!(read_only.submit(Request::flush()).is_ok());
}

#[test]
fn ramdisk_queue_depth() {
    let mut disk = RamDisk::new(8, 512).unwrap().with_queue_depth(2);
    disk.submit(Request::flush()).unwrap();
    disk.submit(Request::flush()).unwrap();
    assert_eq!(disk.submit(Request::flush()), Err(BlockError::QueueFull));
    assert_eq!(poll(&mut disk).len(), 2);
    assert!(disk.submit(Request::flush()).is_ok());
}

#[test]
fn ramdisk_construction_limits() {
    assert!(RamDisk::new(1, 1024).is_err());
    assert_eq!(RamDisk::new(u64::MAX, 4096).err(), Some(BlockError::NoMemory));
    assert!(RamDisk::from_image(vec![0; 1000], 512).is_err());
    assert_eq!(RamDisk::from_image(vec![0; 1024], 512).unwrap().info().capacity, 2);
    assert_eq!(RamDisk::from_size_spec("64K").unwrap().info().capacity, 128);
    assert_eq!(RamDisk::from_size_spec("100").err(), Some(SizeError::NotWholeBlocks));
    assert_eq!(RamDisk::from_size_spec("0").err(), Some(SizeError::NotWholeBlocks));
}

#[test]
fn size_parsing() {
    assert_eq!(parse_size("512"), Ok(512));
    assert_eq!(parse_size("4k"), Ok(4096));
    assert_eq!(parse_size("256M"), Ok(256 << 20));
    assert_eq!(parse_size("2GiB"), Ok(2 << 30));
    assert_eq!(parse_size("1T"), Ok(1 << 40));
    assert_eq!(parse_size("M"), Err(SizeError::Syntax));
    assert_eq!(parse_size("12Q"), Err(SizeError::Syntax));
    assert_eq!(parse_size("-1"), Err(SizeError::Syntax));
    assert_eq!(parse_size("99999999999999999999"), Err(SizeError::TooLarge));
    assert_eq!(parse_size("16777216T"), Err(SizeError::TooLarge));
}

#[test]
fn errors_display_on_one_line() {
    let errors = [
        BlockError::QueueFull,
        BlockError::EmptyRequest,
        BlockError::MalformedFlush,
        BlockError::OutOfRange { lba: 1, blocks: 2, capacity: 3 },
        BlockError::BufferLength { expected: 1, actual: 2 },
        BlockError::ReadOnly,
        BlockError::Unsupported(Op::Discard),
        BlockError::NoMemory,
        BlockError::Io,
        BlockError::Timeout,
    ];
    for error in errors {
        let text = error.to_string();
        assert!(!text.is_empty() && !text.contains('\n'), "{text}");
        let text = PartitionError::Read(error).to_string();
        assert!(!text.contains('\n'));
    }
    assert_eq!(PartitionError::Overlap { first: 1, second: 2 }.to_string(), "partitions 1 and 2 overlap");
}

// ---- Partition views ----

#[test]
fn partition_translates_and_bounds() {
    let mut disk = RamDisk::new(100, 512).unwrap();
    {
        let mut view = Partition::new(&mut disk, 10, 20).unwrap();
        assert_eq!(view.info().capacity, 20);
        write_sync(&mut view, 0, vec![1; 512]);
        write_sync(&mut view, 19, vec![2; 512]);
        assert_eq!(read_sync(&mut view, 19, 1), vec![2; 512]);
        assert!(matches!(
            view.submit(Request::read(19, 2, 512).unwrap()),
            Err(BlockError::OutOfRange { capacity: 20, .. })
        ));
        assert!(matches!(view.submit(Request::read(20, 1, 512).unwrap()), Err(BlockError::OutOfRange { .. })));
        assert!(view.submit(Request::flush()).is_ok());
        assert_eq!(poll(&mut view).len(), 1);
    }
    let bytes = disk.bytes();
    assert_eq!(bytes[10 * BS], 1);
    assert_eq!(bytes[29 * BS], 2);
    assert_eq!(bytes[30 * BS], 0);
    assert_eq!(bytes[9 * BS + 511], 0);

    assert!(Partition::new(&mut disk, 90, 11).is_err());
    assert!(Partition::new(&mut disk, 0, 0).is_err());
    assert!(Partition::new(&mut disk, u64::MAX, 2).is_err());
    let mut view = Partition::new(&mut disk, 0, 10).unwrap().read_only();
    assert!(view.info().read_only);
    assert_eq!(view.submit(Request::write(0, 1, vec![0; 512])), Err(BlockError::ReadOnly));
}

#[test]
fn sync_reader_reads_and_times_out() {
    struct Never(RamDisk);
    impl BlockDevice for Never {
        fn info(&self) -> DeviceInfo {
            self.0.info()
        }
        fn submit(&mut self, request: Request) -> Result<RequestId, BlockError> {
            self.0.submit(request)
        }
        fn poll_completions(&mut self, _out: &mut Vec<Completion>) {}
    }
    let mut disk = RamDisk::new(4, 512).unwrap();
    write_sync(&mut disk, 1, vec![7; 512]);
    let mut reader = SyncReader { device: &mut disk, max_polls: 1 };
    assert_eq!(reader.read_blocks(1, 1).unwrap(), vec![7; 512]);
    assert!(reader.read_blocks(4, 1).is_err());
    let mut reader = SyncReader { device: Never(RamDisk::new(4, 512).unwrap()), max_polls: 3 };
    assert_eq!(reader.read_blocks(0, 1), Err(BlockError::Timeout));
}

// ---- Partition table images ----

fn put_u32(image: &mut [u8], offset: usize, value: u32) {
    image[offset..offset + 4].copy_from_slice(&value.to_le_bytes());
}

fn put_u64(image: &mut [u8], offset: usize, value: u64) {
    image[offset..offset + 8].copy_from_slice(&value.to_le_bytes());
}

/// MBR slot `slot` (0–3) in the block at `base`.
fn mbr_entry(image: &mut [u8], base: usize, slot: usize, kind: u8, first: u32, count: u32) {
    let at = base + 446 + slot * 16;
    image[at] = 0;
    image[at + 4] = kind;
    put_u32(image, at + 8, first);
    put_u32(image, at + 12, count);
    image[base + 510] = 0x55;
    image[base + 511] = 0xAA;
}

fn mbr_image(blocks: usize, entries: &[(u8, u32, u32)]) -> Vec<u8> {
    let mut image = vec![0; blocks * BS];
    image[510] = 0x55;
    image[511] = 0xAA;
    for (slot, &(kind, first, count)) in entries.iter().enumerate() {
        mbr_entry(&mut image, 0, slot, kind, first, count);
    }
    image
}

fn parse_image(image: &[u8]) -> Result<Option<PartitionTable>, PartitionError> {
    partition::parse(&mut ImageReader::new(image, 512))
}

const LINUX_FS: Guid =
    Guid([0xAF, 0x3D, 0xC6, 0x0F, 0x83, 0x84, 0x72, 0x47, 0x8E, 0x79, 0x3D, 0x69, 0xD8, 0x47, 0x7D, 0xE4]);

struct GptEntry {
    first: u64,
    last: u64,
    name: &'static str,
}

/// Writes one GPT header at `header_lba` (its array at `array_lba`) into `image`.
fn write_gpt_header(image: &mut [u8], header_lba: u64, alternate: u64, array_lba: u64, array: &[u8]) {
    let blocks = (image.len() / BS) as u64;
    let at = header_lba as usize * BS;
    let header = &mut image[at..at + BS];
    header.fill(0);
    header[0..8].copy_from_slice(b"EFI PART");
    put_u32(header, 8, 0x0001_0000);
    put_u32(header, 12, 92);
    put_u64(header, 24, header_lba);
    put_u64(header, 32, alternate);
    put_u64(header, 40, 34);
    put_u64(header, 48, blocks - 34);
    header[56..72].copy_from_slice(&[0x11; 16]);
    put_u64(header, 72, array_lba);
    put_u32(header, 80, 128);
    put_u32(header, 84, 128);
    put_u32(header, 88, crc32(array));
    let crc = crc32(&header[..92]);
    put_u32(header, 16, crc);
    let array_at = array_lba as usize * BS;
    image[array_at..array_at + array.len()].copy_from_slice(array);
}

/// A disk of `blocks` blocks with a protective MBR and primary and backup GPTs.
fn gpt_image(blocks: usize, entries: &[GptEntry]) -> Vec<u8> {
    let mut image = mbr_image(blocks, &[(0xEE, 1, (blocks - 1) as u32)]);
    let mut array = vec![0u8; 128 * 128];
    for (index, entry) in entries.iter().enumerate() {
        let at = index * 128;
        array[at..at + 16].copy_from_slice(&LINUX_FS.0);
        array[at + 16..at + 32].copy_from_slice(&[index as u8 + 1; 16]);
        put_u64(&mut array, at + 32, entry.first);
        put_u64(&mut array, at + 40, entry.last);
        for (unit, c) in entry.name.encode_utf16().enumerate() {
            array[at + 56 + unit * 2..at + 58 + unit * 2].copy_from_slice(&c.to_le_bytes());
        }
    }
    let last = blocks as u64 - 1;
    write_gpt_header(&mut image, 1, last, 2, &array);
    write_gpt_header(&mut image, last, 1, last - 32, &array);
    image
}

fn two_partitions() -> [GptEntry; 2] {
    [GptEntry { first: 34, last: 99, name: "boot" }, GptEntry { first: 100, last: 199, name: "root ✓" }]
}

#[test]
fn crc32_known_value() {
    assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    assert_eq!(crc32(b""), 0);
}

#[test]
fn guid_display() {
    assert_eq!(LINUX_FS.to_string(), "0FC63DAF-8483-4772-8E79-3D69D8477DE4");
}

#[test]
fn no_table() {
    assert_eq!(parse_image(&vec![0; 4 * BS]), Ok(None));
    assert_eq!(parse_image(&[]), Ok(None));
    // Less than one block: no block 0 at all.
    assert_eq!(parse_image(&[0x55; 100]), Ok(None));
    assert!(matches!(partition::parse(&mut ImageReader::new(&[0; 1024], 256)), Err(PartitionError::BlockSize(256))));
}

#[test]
fn mbr_primary_partitions() {
    let mut image = mbr_image(200, &[(0x83, 2048 / 512, 50), (0x07, 100, 100)]);
    image[446] = 0x80;
    let table = parse_image(&image).unwrap().unwrap();
    assert!(matches!(table.scheme, Scheme::Mbr { .. }));
    assert_eq!(table.partitions.len(), 2);
    let first = &table.partitions[0];
    assert_eq!((first.number, first.first_lba, first.blocks), (1, 4, 50));
    assert_eq!(first.kind, PartitionKind::Mbr { type_byte: 0x83, bootable: true, logical: false });
    assert_eq!(table.partitions[1].number, 2);
}

#[test]
fn mbr_refusals() {
    let beyond = mbr_image(200, &[(0x83, 150, 51)]);
    assert_eq!(parse_image(&beyond), Err(PartitionError::OutsideDisk { number: 1 }));
    let overlap = mbr_image(200, &[(0x83, 10, 50), (0x83, 100, 10), (0x83, 59, 2)]);
    assert_eq!(parse_image(&overlap), Err(PartitionError::Overlap { first: 1, second: 3 }));
    let empty = mbr_image(200, &[(0x83, 10, 0)]);
    assert_eq!(parse_image(&empty), Err(PartitionError::EmptyOrInverted { number: 1 }));
    let at_zero = mbr_image(200, &[(0x83, 0, 10)]);
    assert_eq!(parse_image(&at_zero), Err(PartitionError::OutsideDisk { number: 1 }));
    let wrapping = mbr_image(200, &[(0x83, u32::MAX, u32::MAX)]);
    assert!(parse_image(&wrapping).is_err());
    let mut bad_boot = mbr_image(200, &[(0x83, 10, 10)]);
    bad_boot[446] = 0x12;
    assert_eq!(parse_image(&bad_boot), Err(PartitionError::MbrBootIndicator { number: 1 }));
    // Truncated: the table describes a disk larger than the image.
    let image = mbr_image(200, &[(0x83, 10, 180)]);
    assert_eq!(parse_image(&image[..100 * BS]), Err(PartitionError::OutsideDisk { number: 1 }));
}

#[test]
fn mbr_extended_partitions() {
    // Primary 1 at 1..50, extended 2 at 50..200 holding logicals at 51..80, 101..150.
    let mut image = mbr_image(200, &[(0x83, 1, 49), (0x05, 50, 150)]);
    mbr_entry(&mut image, 50 * BS, 0, 0x83, 1, 29);
    mbr_entry(&mut image, 50 * BS, 1, 0x05, 50, 50);
    mbr_entry(&mut image, 100 * BS, 0, 0x82, 1, 49);
    let table = parse_image(&image).unwrap().unwrap();
    let extents: Vec<_> = table.partitions.iter().map(|p| (p.number, p.first_lba, p.blocks)).collect();
    assert_eq!(extents, [(1, 1, 49), (5, 51, 29), (6, 101, 49)]);

    // A chain that points back to itself.
    let mut looping = image.clone();
    mbr_entry(&mut looping, 100 * BS, 1, 0x05, 0, 10);
    assert_eq!(parse_image(&looping), Err(PartitionError::MbrExtendedChain));
    // A logical partition outside its container.
    let mut outside = image.clone();
    mbr_entry(&mut outside, 100 * BS, 0, 0x83, 1, 100);
    assert_eq!(parse_image(&outside), Err(PartitionError::OutsideDisk { number: 6 }));
    // An EBR without its signature.
    let mut unsigned = image;
    unsigned[100 * BS + 510] = 0;
    assert_eq!(parse_image(&unsigned), Err(PartitionError::MbrExtendedRecord));
}

#[test]
fn gpt_with_protective_mbr() {
    let image = gpt_image(300, &two_partitions());
    let table = parse_image(&image).unwrap().unwrap();
    assert_eq!(table.scheme, Scheme::Gpt { disk_guid: Guid([0x11; 16]), header: GptHeaderSource::Primary });
    assert_eq!(table.partitions.len(), 2);
    let root = &table.partitions[1];
    assert_eq!((root.number, root.first_lba, root.blocks), (2, 100, 100));
    match &root.kind {
        PartitionKind::Gpt { type_guid, unique_guid, name, .. } => {
            assert_eq!(*type_guid, LINUX_FS);
            assert_eq!(*unique_guid, Guid([2; 16]));
            assert_eq!(name, "root ✓");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn gpt_corrupt_primary_uses_backup() {
    let image = gpt_image(300, &two_partitions());
    let expect_backup = |image: &[u8], why: PartitionError| {
        let table = parse_image(image).unwrap().unwrap();
        assert_eq!(
            table.scheme,
            Scheme::Gpt { disk_guid: Guid([0x11; 16]), header: GptHeaderSource::Backup { primary_error: why } }
        );
        assert_eq!(table.partitions.len(), 2);
    };
    let mut header_crc = image.clone();
    header_crc[BS + 40] ^= 1;
    expect_backup(&header_crc, PartitionError::GptHeaderCrc);
    let mut array_crc = image.clone();
    array_crc[2 * BS + 60] ^= 1;
    expect_backup(&array_crc, PartitionError::GptEntryArrayCrc);
    let mut wiped = image.clone();
    wiped[BS..2 * BS].fill(0);
    expect_backup(&wiped, PartitionError::GptSignature);

    // Both corrupt: the primary's error.
    let mut both = header_crc;
    let last = both.len() - BS;
    both[last + 40] ^= 1;
    assert_eq!(parse_image(&both), Err(PartitionError::GptHeaderCrc));
}

/// Rewrites both headers of a GPT image after `edit` changes a header (before the CRC).
fn edit_headers(image: &mut [u8], edit: impl Fn(&mut [u8])) {
    let last = image.len() / BS - 1;
    for lba in [1, last] {
        let header = &mut image[lba * BS..lba * BS + BS];
        edit(header);
        put_u32(header, 16, 0);
        let size = u32::from_le_bytes(header[12..16].try_into().unwrap()).clamp(92, 512);
        let crc = crc32(&header[..size as usize]);
        put_u32(header, 16, crc);
    }
}

#[test]
fn gpt_header_refusals() {
    let image = gpt_image(300, &two_partitions());
    let check = |edit: &dyn Fn(&mut [u8]), expected: PartitionError| {
        let mut bad = image.clone();
        edit_headers(&mut bad, edit);
        assert_eq!(parse_image(&bad), Err(expected));
    };
    check(&|h| put_u32(h, 80, 100_000), PartitionError::GptEntryCount(100_000));
    check(&|h| put_u32(h, 80, 0), PartitionError::GptEntryCount(0));
    check(&|h| put_u32(h, 80, 1025), PartitionError::GptEntryCount(1025));
    // 1024 entries of 4 KiB: a 4 MiB array, beyond MAX_GPT_ARRAY_BYTES.
    check(
        &|h| {
            put_u32(h, 80, 1024);
            put_u32(h, 84, 4096);
        },
        PartitionError::GptEntryCount(1024),
    );
    check(&|h| put_u32(h, 84, 64), PartitionError::GptEntrySize(64));
    check(&|h| put_u32(h, 84, 8192), PartitionError::GptEntrySize(8192));
    check(&|h| put_u32(h, 84, 200), PartitionError::GptEntrySize(200));
    check(&|h| put_u32(h, 8, 0x0002_0000), PartitionError::GptRevision(0x0002_0000));
    check(&|h| put_u32(h, 12, 600), PartitionError::GptHeaderSize(600));
    check(&|h| put_u64(h, 48, 1000), PartitionError::GptUsableRange);
    check(&|h| put_u64(h, 40, 1), PartitionError::GptUsableRange);
    check(&|h| put_u64(h, 72, u64::MAX - 1), PartitionError::GptEntryArrayRange);
    check(&|h| put_u64(h, 72, 100), PartitionError::GptEntryArrayRange);
    check(&|h| put_u64(h, 24, 7), PartitionError::GptMyLba(7));
}

#[test]
fn gpt_entry_refusals() {
    let beyond = gpt_image(300, &[GptEntry { first: 34, last: 280, name: "big" }]);
    assert_eq!(parse_image(&beyond), Err(PartitionError::OutsideDisk { number: 1 }));
    let inverted = gpt_image(300, &[GptEntry { first: 50, last: 40, name: "" }]);
    assert_eq!(parse_image(&inverted), Err(PartitionError::EmptyOrInverted { number: 1 }));
    let overlapping =
        gpt_image(300, &[GptEntry { first: 100, last: 199, name: "a" }, GptEntry { first: 34, last: 100, name: "b" }]);
    assert_eq!(parse_image(&overlapping), Err(PartitionError::Overlap { first: 1, second: 2 }));
}

#[test]
fn gpt_truncated_disk() {
    let image = gpt_image(300, &two_partitions());
    // The backup header is gone and the primary's usable range is beyond the end.
    assert_eq!(parse_image(&image[..150 * BS]), Err(PartitionError::GptUsableRange));
    assert_eq!(parse_image(&image[..2 * BS]), Err(PartitionError::DiskTooSmall));
}

#[test]
fn gpt_on_a_block_device() {
    let mut disk = RamDisk::from_image(gpt_image(300, &two_partitions()), 512).unwrap();
    let mut reader = SyncReader { device: &mut disk, max_polls: 2 };
    let table = partition::parse(&mut reader).unwrap().unwrap();
    assert_eq!(table.partitions.len(), 2);
}

#[test]
fn fuzz_body_on_edge_cases() {
    partition::fuzz_one(&[]);
    partition::fuzz_one(&[0]);
    let small = [GptEntry { first: 34, last: 40, name: "small" }];
    let mut data = vec![0];
    data.extend(gpt_image(80, &small));
    partition::fuzz_one(&data);
    // A cheap deterministic sweep: flip bytes of the headers and the MBR.
    let mut state = 0x1234_5678u32;
    for _ in 0..400 {
        state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
        let index = 1 + (state as usize >> 4) % (3 * BS);
        let mut mutated = data.clone();
        mutated[index] ^= (state >> 24) as u8 | 1;
        partition::fuzz_one(&mutated);
    }
}

// ---- Names and the disk table ----

#[test]
fn stable_names() {
    assert_eq!(disk_name(DriverKind::Ahci, 0), "sda");
    assert_eq!(disk_name(DriverKind::Ahci, 25), "sdz");
    assert_eq!(disk_name(DriverKind::Ahci, 26), "sdaa");
    assert_eq!(disk_name(DriverKind::Ahci, 27), "sdab");
    assert_eq!(disk_name(DriverKind::Ahci, 26 + 26 * 26), "sdaaa");
    assert_eq!(disk_name(DriverKind::Nvme, 0), "nvme0n1");
    assert_eq!(disk_name(DriverKind::VirtioBlk, 1), "vdb");
    assert_eq!(disk_name(DriverKind::Ram, 3), "ram3");
    assert_eq!(partition_name("sda", 1), "sda1");
    assert_eq!(partition_name("nvme0n1", 2), "nvme0n1p2");
    assert_eq!(partition_name("ram0", 1), "ram0p1");
    assert_eq!(DriverKind::ALL.len(), 4);
}

#[test]
fn human_sizes() {
    assert_eq!(human_size(0), "0 B");
    assert_eq!(human_size(512), "512 B");
    assert_eq!(human_size(1536), "1.5 KiB");
    assert_eq!(human_size(64 << 20), "64.0 MiB");
    assert_eq!(human_size(3 << 40), "3.0 TiB");
    assert_eq!(human_size(u64::MAX), "16384.0 PiB");
}

#[test]
fn disk_table_registers_scans_and_lists() {
    let mut table = DiskTable::new();
    let gpt = RamDisk::from_image(gpt_image(300, &two_partitions()), 512).unwrap().with_model("QEMU NVMe Ctrl");
    assert_eq!(table.register(DriverKind::Nvme, Box::new(gpt)), "nvme0n1");
    let mbr = RamDisk::from_image(mbr_image(200, &[(0x83, 10, 20)]), 512).unwrap();
    assert_eq!(table.register(DriverKind::Ahci, Box::new(mbr)), "sda");
    let blank = RamDisk::new(64, 512).unwrap();
    assert_eq!(table.register(DriverKind::Ahci, Box::new(blank)), "sdb");
    let broken = RamDisk::from_image(mbr_image(200, &[(0x83, 150, 100)]), 512).unwrap();
    assert_eq!(table.register(DriverKind::VirtioBlk, Box::new(broken)), "vda");

    assert_eq!(table.scan_partitions("nvme0n1").unwrap(), ["nvme0n1p1", "nvme0n1p2"]);
    assert_eq!(table.scan_partitions("sda").unwrap(), ["sda1"]);
    assert!(table.scan_partitions("sdb").unwrap().is_empty());
    assert_eq!(
        table.scan_partitions("vda"),
        Err(names::DiskTableError::Partitions(PartitionError::OutsideDisk { number: 1 }))
    );
    assert!(matches!(table.scan_partitions("sdz"), Err(names::DiskTableError::NoSuchName(_))));
    assert_eq!(table.names(), ["nvme0n1", "nvme0n1p1", "nvme0n1p2", "sda", "sda1", "sdb", "vda"]);
    assert_eq!(table.info("nvme0n1p2").unwrap().capacity, 100);
    assert_eq!(table.info("sda").unwrap().capacity, 200);
    assert!(table.info("sdc").is_none());

    // Writing through a partition lands at the translated block of the disk.
    {
        let mut partition = table.open("sda1").unwrap();
        write_sync(&mut partition, 0, vec![0x5A; 512]);
    }
    {
        let mut disk = table.open("sda").unwrap();
        assert_eq!(read_sync(&mut disk, 10, 1), vec![0x5A; 512]);
    }
    assert!(table.open("sda2").is_err());

    let listing = table.listing();
    assert_eq!(listing.len(), 4);
    assert_eq!(listing[0].model, "QEMU NVMe Ctrl");
    assert_eq!(listing[0].size, "150.0 KiB");
    assert_eq!(listing[0].partitions[1].name, "nvme0n1p2");
    assert_eq!(listing[0].partitions[1].label, "root ✓");
    assert_eq!(listing[0].partitions[0].size, "33.0 KiB");
    assert_eq!(listing[1].partitions[0].label, "type 0x83");
    assert!(listing[2].partitions.is_empty() && listing[2].partition_error.is_none());
    assert_eq!(listing[3].partition_error.as_deref(), Some("partition 1 reaches beyond the disk"));

    // Removal keeps the other names; a new disk gets a fresh one.
    assert!(table.remove("sda").is_some());
    assert!(table.remove("sda").is_none());
    let again = RamDisk::new(8, 512).unwrap();
    assert_eq!(table.register(DriverKind::Ahci, Box::new(again)), "sdc");
    assert!(table.info("sdb").is_some());
}

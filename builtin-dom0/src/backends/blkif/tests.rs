//! Host tests for the blkif back end: a [`TestPage`] driven through [`FrontRing`] as
//! xen-blkfront drives its ring, grants in a [`MapGrants`], a [`RamDisk`].

use super::request::encode;
use super::request::*;
use super::ring::{self, notify_needed, ring_size, FrontRing};
use super::*;
use crate::shared_page::TestPage;

const DISK_SECTORS: u64 = 64;

struct Harness {
    page: TestPage,
    front: FrontRing,
    backend: BlkifBackend,
    grants: MapGrants,
    disk: RamDisk,
}

impl Harness {
    fn new(config: BlkifConfig, read_only: bool) -> Self {
        let mut page = TestPage::default();
        let front = FrontRing::init(&mut page, ENTRY_SIZE);
        let mut disk = RamDisk::new(DISK_SECTORS, read_only);
        for (index, byte) in disk.data.iter_mut().enumerate() {
            *byte = (index / 512) as u8 ^ (index as u8).wrapping_mul(7);
        }
        Harness { page, front, backend: BlkifBackend::new(&config), grants: MapGrants::default(), disk }
    }

    fn submit(&mut self, entries: &[[u8; ENTRY_SIZE]]) -> bool {
        for entry in entries {
            assert!(self.front.put_request(&mut self.page, entry));
        }
        self.front.push_requests_and_check_notify(&mut self.page)
    }

    fn service(&mut self) -> ServiceResult {
        self.backend.service(&mut self.page, &mut self.grants, &mut self.disk)
    }

    fn responses(&mut self) -> Vec<BlkifResponse> {
        let mut responses = Vec::new();
        let mut bytes = [0u8; RESPONSE_SIZE];
        while self.front.take_response(&self.page, &mut bytes) {
            responses.push(BlkifResponse::decode(&bytes));
        }
        responses
    }

    /// Submits one request, services the ring, returns its response's status.
    fn run(&mut self, entry: [u8; ENTRY_SIZE]) -> i16 {
        let _ = self.submit(&[entry]);
        let result = self.service();
        assert_eq!(result.requests, 1);
        assert_eq!(result.broken, None);
        let responses = self.responses();
        assert_eq!(responses.len(), 1);
        assert_eq!(responses[0].id, u64::from_le_bytes(entry[8..16].try_into().unwrap()));
        // Indirect requests are answered with their inner operation (what blkfront checks).
        let expected_operation = if entry[0] == BLKIF_OP_INDIRECT { entry[1] } else { entry[0] };
        assert_eq!(responses[0].operation, expected_operation);
        responses[0].status
    }

    fn sector(&self, sector: u64) -> &[u8] {
        &self.disk.data[sector as usize * 512..][..512]
    }

    /// A good request after a refusal is still served.
    fn assert_still_serving(&mut self) {
        self.grants.grant(999, true);
        assert_eq!(self.run(encode::read_write(BLKIF_OP_READ, 4242, 0, &[(999, 0, 0)])), BLKIF_RSP_OKAY);
        assert_eq!(&self.grants.page_mut(999).unwrap()[..512], &self.disk.data[..512]);
        assert_eq!(self.disk.misuses, 0);
    }
}

fn indirect_config() -> BlkifConfig {
    BlkifConfig { max_indirect_segments: 1024, ..BlkifConfig::default() }
}

#[test]
fn ring_sizes_are_the_largest_power_of_two_that_fits() {
    assert_eq!(ring_size(ENTRY_SIZE), 32);
    assert_eq!(ring_size(16), 128);
    assert_eq!(ring_size(4032), 1);
    assert_eq!(ring_size(4033), 0);
}

#[test]
fn read_copies_disk_sectors_into_the_segment_range() {
    let mut harness = Harness::new(BlkifConfig::default(), false);
    harness.grants.grant(10, true);
    assert_eq!(harness.run(encode::read_write(BLKIF_OP_READ, 7, 4, &[(10, 1, 3)])), BLKIF_RSP_OKAY);
    let expected = harness.disk.data[4 * 512..7 * 512].to_vec();
    let page = harness.grants.page_mut(10).unwrap();
    assert_eq!(&page[512..2048], &expected[..]);
    assert!(page[..512].iter().chain(&page[2048..]).all(|&byte| byte == 0));
}

#[test]
fn write_takes_consecutive_segments_from_several_pages() {
    let mut harness = Harness::new(BlkifConfig::default(), false);
    harness.grants.grant(1, false);
    harness.grants.grant(2, false);
    harness.grants.page_mut(1).unwrap().fill(0xaa);
    harness.grants.page_mut(2).unwrap()[1024..1536].fill(0xbb);
    let entry = encode::read_write(BLKIF_OP_WRITE, 8, 8, &[(1, 0, 7), (2, 2, 2)]);
    assert_eq!(harness.run(entry), BLKIF_RSP_OKAY);
    assert!(harness.disk.data[8 * 512..16 * 512].iter().all(|&byte| byte == 0xaa));
    assert!(harness.sector(16).iter().all(|&byte| byte == 0xbb));
    assert_ne!(harness.sector(17), &[0xbb; 512][..]);
}

#[test]
fn eleven_segments_are_accepted() {
    let mut harness = Harness::new(BlkifConfig::default(), false);
    harness.grants.grant(3, true);
    let segments = [(3, 2, 2); 11];
    assert_eq!(harness.run(encode::read_write(BLKIF_OP_READ, 1, 0, &segments)), BLKIF_RSP_OKAY);
    let last = harness.sector(10).to_vec();
    assert_eq!(&harness.grants.page_mut(3).unwrap()[1024..1536], &last[..]);
}

#[test]
fn flush_reaches_the_disk_and_is_refused_when_not_advertised() {
    let mut harness = Harness::new(BlkifConfig::default(), false);
    assert_eq!(harness.run(encode::bare(BLKIF_OP_FLUSH_DISKCACHE, 5)), BLKIF_RSP_OKAY);
    assert_eq!(harness.disk.flushes, 1);

    let mut harness = Harness::new(BlkifConfig { flush: false, ..BlkifConfig::default() }, false);
    assert_eq!(harness.run(encode::bare(BLKIF_OP_FLUSH_DISKCACHE, 5)), BLKIF_RSP_EOPNOTSUPP);
    assert_eq!(harness.disk.flushes, 0);
    harness.assert_still_serving();
}

#[test]
fn discard_and_its_refusals() {
    let mut harness = Harness::new(BlkifConfig::default(), false);
    assert_eq!(harness.run(encode::discard(1, false, 10, 4)), BLKIF_RSP_OKAY);
    assert_eq!(harness.disk.discards, [(10, 4)]);
    assert!(harness.disk.data[10 * 512..14 * 512].iter().all(|&byte| byte == 0));
    assert_eq!(harness.run(encode::discard(2, false, DISK_SECTORS - 1, 2)), BLKIF_RSP_ERROR);
    assert_eq!(harness.run(encode::discard(3, false, u64::MAX, 2)), BLKIF_RSP_ERROR);
    assert_eq!(harness.run(encode::discard(4, true, 0, 1)), BLKIF_RSP_EOPNOTSUPP);
    assert_eq!(harness.disk.discards.len(), 1);
    harness.assert_still_serving();

    let config = BlkifConfig { discard_secure: true, ..BlkifConfig::default() };
    let mut harness = Harness::new(config, false);
    assert_eq!(harness.run(encode::discard(4, true, 0, 1)), BLKIF_RSP_OKAY);

    let mut harness = Harness::new(BlkifConfig::default(), true);
    assert_eq!(harness.run(encode::discard(5, false, 0, 1)), BLKIF_RSP_ERROR);
    assert!(harness.disk.discards.is_empty());

    let mut harness = Harness::new(BlkifConfig { discard: false, ..BlkifConfig::default() }, false);
    assert_eq!(harness.run(encode::discard(6, false, 0, 1)), BLKIF_RSP_EOPNOTSUPP);
    harness.assert_still_serving();
}

/// Grants an indirect page `gref` holding `segments`.
fn grant_indirect(grants: &mut MapGrants, gref: u32, segments: &[(u32, u8, u8)]) {
    grants.grant(gref, false);
    let page = grants.page_mut(gref).unwrap();
    for (index, segment) in segments.iter().enumerate() {
        page[index * SEGMENT_SIZE..][..SEGMENT_SIZE].copy_from_slice(&encode::segment_bytes(*segment));
    }
}

#[test]
fn indirect_write_then_read_round_trips() {
    let mut harness = Harness::new(indirect_config(), false);
    // 20 segments of one sector each, alternating between two data pages.
    let segments: Vec<(u32, u8, u8)> =
        (0..20u8).map(|index| (200 + u32::from(index % 2), index / 2 % 8, index / 2 % 8)).collect();
    grant_indirect(&mut harness.grants, 100, &segments);
    harness.grants.grant(200, true);
    harness.grants.grant(201, true);
    for (index, byte) in harness.grants.page_mut(200).unwrap().iter_mut().enumerate() {
        *byte = index as u8;
    }
    harness.grants.page_mut(201).unwrap().fill(0x55);
    assert_eq!(harness.run(encode::indirect(BLKIF_OP_WRITE, 9, 30, 20, &[100])), BLKIF_RSP_OKAY);
    for index in 0..20u64 {
        let expected: Vec<u8> = if index % 2 == 0 {
            (0..512).map(|byte| (byte + (index / 2 % 8) as usize * 512) as u8).collect()
        } else {
            vec![0x55; 512]
        };
        assert_eq!(harness.sector(30 + index), &expected[..], "sector {}", 30 + index);
    }

    harness.grants.page_mut(200).unwrap().fill(0);
    harness.grants.page_mut(201).unwrap().fill(0);
    assert_eq!(harness.run(encode::indirect(BLKIF_OP_READ, 10, 30, 20, &[100])), BLKIF_RSP_OKAY);
    assert_eq!(&harness.grants.page_mut(201).unwrap()[..512], &[0x55; 512][..]);
    assert_eq!(harness.grants.page_mut(200).unwrap()[513], 1);
}

#[test]
fn indirect_spans_several_descriptor_pages() {
    let mut harness = Harness::new(indirect_config(), false);
    harness.disk = RamDisk::new(700, false);
    let segments = vec![(300, 0, 0); SEGMENTS_PER_INDIRECT_FRAME];
    grant_indirect(&mut harness.grants, 100, &segments);
    grant_indirect(&mut harness.grants, 101, &segments[..88]);
    harness.grants.grant(300, false);
    harness.grants.page_mut(300).unwrap()[..512].fill(0x77);
    assert_eq!(harness.run(encode::indirect(BLKIF_OP_WRITE, 1, 1, 600, &[100, 101])), BLKIF_RSP_OKAY);
    assert!(harness.disk.data[512..601 * 512].iter().all(|&byte| byte == 0x77));
    assert!(harness.disk.data[601 * 512..].iter().all(|&byte| byte == 0));
    assert!(harness.disk.data[..512].iter().all(|&byte| byte == 0));
}

#[test]
fn indirect_refusals() {
    let mut harness = Harness::new(indirect_config(), false);
    harness.grants.grant(300, true);
    grant_indirect(&mut harness.grants, 100, &[(300, 0, 0); 20]);
    grant_indirect(&mut harness.grants, 101, &[(300, 0, 0), (300, 3, 8)]);
    grant_indirect(&mut harness.grants, 102, &[(300, 0, 0), (300, 4, 3)]);
    grant_indirect(&mut harness.grants, 103, &[(300, 0, 0), (555, 0, 0)]);
    let refused = [
        (encode::indirect(BLKIF_OP_READ, 1, 0, 1025, &[100, 100, 100]), BLKIF_RSP_ERROR), // too many
        (encode::indirect(BLKIF_OP_READ, 2, 0, 0, &[100]), BLKIF_RSP_ERROR),              // none
        (encode::indirect(BLKIF_OP_FLUSH_DISKCACHE, 3, 0, 1, &[100]), BLKIF_RSP_ERROR),   // indirect_op
        (encode::indirect(BLKIF_OP_READ, 4, 0, 1, &[777]), BLKIF_RSP_ERROR),              // bad indirect gref
        (encode::indirect(BLKIF_OP_READ, 5, 0, 2, &[101]), BLKIF_RSP_ERROR),              // last > 7
        (encode::indirect(BLKIF_OP_READ, 6, 0, 2, &[102]), BLKIF_RSP_ERROR),              // first > last
        (encode::indirect(BLKIF_OP_READ, 7, 0, 2, &[103]), BLKIF_RSP_ERROR),              // bad data gref
        (encode::indirect(BLKIF_OP_READ, 8, DISK_SECTORS - 19, 20, &[100]), BLKIF_RSP_ERROR), // past the end
        (encode::indirect(BLKIF_OP_READ, 9, 0, 600, &[100]), BLKIF_RSP_ERROR),            // second page ungranted
    ];
    for (entry, status) in refused {
        assert_eq!(harness.run(entry), status, "request {}", entry[8]);
    }
    assert_eq!(harness.run(encode::indirect(BLKIF_OP_READ, 10, DISK_SECTORS - 20, 20, &[100])), BLKIF_RSP_OKAY);
    harness.assert_still_serving();

    // Not advertised: EOPNOTSUPP.
    let mut harness = Harness::new(BlkifConfig { max_indirect_segments: 11, ..BlkifConfig::default() }, false);
    grant_indirect(&mut harness.grants, 100, &[(300, 0, 0)]);
    assert_eq!(harness.run(encode::indirect(BLKIF_OP_READ, 1, 0, 1, &[100])), BLKIF_RSP_EOPNOTSUPP);
    harness.assert_still_serving();
}

#[test]
fn malformed_direct_requests_are_refused_and_serving_continues() {
    let mut harness = Harness::new(BlkifConfig::default(), false);
    harness.grants.grant(1, true);
    harness.grants.grant(2, false);
    let mut twelve = encode::read_write(BLKIF_OP_READ, 3, 0, &[(1, 0, 0); 11]);
    twelve[1] = 12;
    let refused = [
        (encode::read_write(BLKIF_OP_READ, 1, 0, &[]), BLKIF_RSP_ERROR), // no segments
        (encode::read_write(BLKIF_OP_WRITE, 2, 0, &[]), BLKIF_RSP_ERROR), // no segments
        (twelve, BLKIF_RSP_ERROR),                                       // 12 segments
        (encode::read_write(BLKIF_OP_READ, 4, 0, &[(1, 3, 2)]), BLKIF_RSP_ERROR), // first > last
        (encode::read_write(BLKIF_OP_READ, 5, 0, &[(1, 0, 8)]), BLKIF_RSP_ERROR), // last > 7
        (encode::read_write(BLKIF_OP_READ, 6, 0, &[(1, 9, 9)]), BLKIF_RSP_ERROR), // both > 7
        (encode::read_write(BLKIF_OP_READ, 7, DISK_SECTORS - 1, &[(1, 0, 1)]), BLKIF_RSP_ERROR), // past end
        (encode::read_write(BLKIF_OP_READ, 8, DISK_SECTORS, &[(1, 0, 0)]), BLKIF_RSP_ERROR),
        (encode::read_write(BLKIF_OP_READ, 9, u64::MAX, &[(1, 0, 0)]), BLKIF_RSP_ERROR), // overflow
        (encode::read_write(BLKIF_OP_READ, 10, 0, &[(77, 0, 0)]), BLKIF_RSP_ERROR),      // bad gref
        (encode::read_write(BLKIF_OP_WRITE, 11, 0, &[(77, 0, 0)]), BLKIF_RSP_ERROR),     // bad gref
        (encode::read_write(BLKIF_OP_READ, 12, 0, &[(2, 0, 0)]), BLKIF_RSP_ERROR),       // read into read-only grant
        (encode::read_write(BLKIF_OP_WRITE_BARRIER, 13, 0, &[(1, 0, 0)]), BLKIF_RSP_EOPNOTSUPP),
        (encode::bare(BLKIF_OP_RESERVED_1, 14), BLKIF_RSP_EOPNOTSUPP),
        (encode::bare(7, 15), BLKIF_RSP_EOPNOTSUPP),
        (encode::bare(0xff, 16), BLKIF_RSP_EOPNOTSUPP),
    ];
    let before = harness.disk.data.clone();
    for (entry, status) in refused {
        assert_eq!(harness.run(entry), status, "request {}", entry[8]);
    }
    assert_eq!(harness.disk.data, before);
    assert_eq!(harness.disk.flushes, 0);
    harness.assert_still_serving();
}

#[test]
fn a_failed_segment_fails_the_request_but_no_later_one() {
    let mut harness = Harness::new(BlkifConfig::default(), false);
    harness.grants.grant(1, false);
    let bad = encode::read_write(BLKIF_OP_WRITE, 1, 0, &[(1, 0, 0), (66, 0, 0)]);
    let good = encode::read_write(BLKIF_OP_WRITE, 2, 5, &[(1, 0, 0)]);
    let _ = harness.submit(&[bad, good]);
    let result = harness.service();
    assert_eq!(result.requests, 2);
    let statuses: Vec<_> = harness.responses().iter().map(|response| (response.id, response.status)).collect();
    assert_eq!(statuses, [(1, BLKIF_RSP_ERROR), (2, BLKIF_RSP_OKAY)]);
}

#[test]
fn read_only_disks_refuse_writes_but_serve_reads() {
    let mut harness = Harness::new(BlkifConfig::default(), true);
    harness.grants.grant(1, true);
    let before = harness.disk.data.clone();
    assert_eq!(harness.run(encode::read_write(BLKIF_OP_WRITE, 1, 0, &[(1, 0, 7)])), BLKIF_RSP_ERROR);
    assert_eq!(harness.disk.data, before);
    harness.assert_still_serving();

    let mut harness = Harness::new(indirect_config(), true);
    harness.grants.grant(1, true);
    grant_indirect(&mut harness.grants, 100, &[(1, 0, 0); 12]);
    assert_eq!(harness.run(encode::indirect(BLKIF_OP_WRITE, 2, 0, 12, &[100])), BLKIF_RSP_ERROR);
    assert_eq!(harness.run(encode::indirect(BLKIF_OP_READ, 3, 0, 12, &[100])), BLKIF_RSP_OKAY);
    assert_eq!(harness.disk.misuses, 0);
}

#[test]
fn barrier_when_advertised_flushes_around_the_write() {
    let mut harness = Harness::new(BlkifConfig { barrier: true, ..BlkifConfig::default() }, false);
    harness.grants.grant(1, false);
    harness.grants.page_mut(1).unwrap().fill(0x11);
    assert_eq!(harness.run(encode::read_write(BLKIF_OP_WRITE_BARRIER, 1, 2, &[(1, 0, 0)])), BLKIF_RSP_OKAY);
    assert_eq!(harness.disk.flushes, 2);
    assert_eq!(harness.sector(2), &[0x11; 512][..]);
    assert_eq!(harness.run(encode::read_write(BLKIF_OP_WRITE_BARRIER, 2, 2, &[])), BLKIF_RSP_OKAY);
    assert_eq!(harness.disk.flushes, 4);
}

#[test]
fn an_absurd_req_prod_breaks_the_ring_without_work() {
    for req_prod in [33, 1000, u32::MAX] {
        let mut harness = Harness::new(BlkifConfig::default(), false);
        harness.page.write_u32(ring::REQ_PROD, req_prod);
        let result = harness.service();
        assert_eq!(result.requests, 0);
        assert!(!result.more);
        assert_eq!(result.broken, Some(Broken::RequestProducerOverflow { req_prod, req_cons: 0, rsp_prod: 0 }));
        assert_eq!(harness.grants.copies, 0);
        // It stays broken even if the frontend puts things right.
        harness.page.write_u32(ring::REQ_PROD, 0);
        assert_eq!(harness.service().broken, harness.backend.broken());
        assert!(harness.backend.broken().is_some());
    }
}

#[test]
fn a_req_prod_that_goes_backwards_breaks_the_ring() {
    let mut harness = Harness::new(BlkifConfig::default(), false);
    let entries = [encode::bare(BLKIF_OP_FLUSH_DISKCACHE, 1); 5];
    let _ = harness.submit(&entries);
    assert_eq!(harness.service().requests, 5);
    harness.page.write_u32(ring::REQ_PROD, 2);
    let result = harness.service();
    assert_eq!(result.requests, 0);
    assert!(result.broken.is_some());
}

#[test]
fn a_ring_full_of_requests_is_served_and_the_next_batch_waits_for_space() {
    let mut harness = Harness::new(BlkifConfig::default(), false);
    let entries: Vec<_> = (0..32).map(|id| encode::bare(BLKIF_OP_FLUSH_DISKCACHE, id)).collect();
    let _ = harness.submit(&entries);
    assert!(!harness.front.put_request(&mut harness.page, &entries[0]), "the frontend's ring is full");
    let result = harness.service();
    assert_eq!((result.requests, result.more, result.broken), (32, false, None));

    // The frontend never consumes its responses: the back end has nothing to do and
    // writes nothing, however often it is called.
    let snapshot = harness.page.bytes;
    for _ in 0..3 {
        let result = harness.service();
        assert_eq!((result.requests, result.more, result.notify, result.broken), (0, false, false, None));
        assert_eq!(harness.page.bytes, snapshot);
    }
    assert_eq!(harness.backend.indices(), (32, 32));

    // Once it consumes them, it can produce again, and the ring wraps.
    let ids: Vec<_> = harness.responses().iter().map(|response| response.id).collect();
    assert_eq!(ids, (0..32).collect::<Vec<_>>());
    for round in 0..5u64 {
        let entries: Vec<_> = (0..20).map(|id| encode::bare(BLKIF_OP_FLUSH_DISKCACHE, 100 * round + id)).collect();
        let _ = harness.submit(&entries);
        assert_eq!(harness.service().requests, 20);
        let ids: Vec<_> = harness.responses().iter().map(|response| response.id).collect();
        assert_eq!(ids, (100 * round..100 * round + 20).collect::<Vec<_>>());
    }
}

/// A frontend that refills the ring the instant a response appears (seen through
/// `req_prod` always one ring ahead of the responses written).
struct RefillingFrontend {
    page: TestPage,
    responses: u32,
}

impl SharedPage for RefillingFrontend {
    fn read(&self, offset: usize, buffer: &mut [u8]) {
        if offset == ring::REQ_PROD && buffer.len() == 4 {
            buffer.copy_from_slice(&(self.responses + 32).to_le_bytes());
        } else {
            self.page.read(offset, buffer);
        }
    }
    fn write(&mut self, offset: usize, data: &[u8]) {
        if offset >= ring::ENTRIES && data.len() == RESPONSE_SIZE {
            self.responses += 1;
        }
        self.page.write(offset, data);
    }
}

#[test]
fn a_frontend_that_keeps_producing_gets_one_ring_per_call() {
    let mut frontend = RefillingFrontend { page: TestPage::default(), responses: 0 };
    let mut backend = BlkifBackend::new(&BlkifConfig::default());
    let mut grants = MapGrants::default();
    let mut disk = RamDisk::new(8, false);
    for call in 1..=3 {
        let result = backend.service(&mut frontend, &mut grants, &mut disk);
        assert_eq!((result.requests, result.more, result.broken), (32, true, None));
        assert_eq!(backend.indices(), (32 * call, 32 * call));
    }
}

#[test]
fn notification_rules() {
    assert!(notify_needed(0, 1, 1));
    assert!(!notify_needed(1, 2, 1));
    assert!(notify_needed(1, 5, 3));
    assert!(!notify_needed(3, 3, 3));
    assert!(notify_needed(u32::MAX, 1, 0), "wraps");

    let mut harness = Harness::new(BlkifConfig::default(), false);
    let flush = encode::bare(BLKIF_OP_FLUSH_DISKCACHE, 0);
    // The back end's req_event starts at 1: the first request notifies.
    assert!(harness.submit(&[flush]));
    // Not yet serviced: no event asked for requests 2 and 3.
    assert!(!harness.submit(&[flush, flush]));
    let result = harness.service();
    assert_eq!(result.requests, 3);
    assert!(result.notify, "rsp_event starts at 1");
    assert_eq!(harness.page.read_u32(ring::REQ_EVENT), 4, "final check: req_cons + 1");
    assert!(harness.submit(&[flush]), "the back end asked for the next request");

    // The frontend has not re-armed rsp_event (still 1): no event for these responses.
    assert!(!harness.service().notify);
    assert_eq!(harness.responses().len(), 4);
    assert!(!harness.front.final_check_for_responses(&mut harness.page));
    assert_eq!(harness.page.read_u32(ring::RSP_EVENT), 5);
    let _ = harness.submit(&[flush, flush]);
    assert!(harness.service().notify);

    // Nothing new: nothing published, no event.
    assert!(!harness.service().notify);
}

#[test]
fn xenstore_keys_describe_the_disk_and_features() {
    let disk = RamDisk::new(2048, false);
    let keys = BlkifBackend::xenstore_keys(&BlkifConfig::default(), &disk);
    let get = |keys: &[(String, String)], key: &str| {
        keys.iter().find(|(name, _)| name == key).map(|(_, value)| value.clone())
    };
    assert_eq!(get(&keys, "feature-flush-cache").as_deref(), Some("1"));
    assert_eq!(get(&keys, "feature-discard").as_deref(), Some("1"));
    assert_eq!(get(&keys, "discard-granularity").as_deref(), Some("512"));
    assert_eq!(get(&keys, "feature-max-indirect-segments").as_deref(), Some("256"));
    assert_eq!(get(&keys, "sectors").as_deref(), Some("2048"));
    assert_eq!(get(&keys, "info").as_deref(), Some("0"));
    assert_eq!(get(&keys, "sector-size").as_deref(), Some("512"));
    assert_eq!(get(&keys, "feature-barrier"), None);
    assert_eq!(get(&keys, "feature-persistent"), None);

    let read_only = RamDisk::new(10, true);
    let config = BlkifConfig { discard: false, max_indirect_segments: 9999, barrier: true, ..BlkifConfig::default() };
    let keys = BlkifBackend::xenstore_keys(&config, &read_only);
    assert_eq!(get(&keys, "info").as_deref(), Some("4"));
    assert_eq!(get(&keys, "feature-discard").as_deref(), Some("0"));
    assert_eq!(get(&keys, "discard-granularity"), None);
    assert_eq!(get(&keys, "feature-barrier").as_deref(), Some("1"));
    assert_eq!(get(&keys, "feature-max-indirect-segments").as_deref(), Some("4096"));
    assert_eq!(BlkifBackend::new(&config).features().max_indirect_segments, 4096);

    let keys = BlkifBackend::xenstore_keys(&BlkifConfig { max_indirect_segments: 11, ..BlkifConfig::default() }, &disk);
    assert_eq!(get(&keys, "feature-max-indirect-segments"), None);
}

#[test]
fn responses_encode_at_their_offsets() {
    let bytes = BlkifResponse { id: 0x0102_0304_0506_0708, operation: 6, status: BLKIF_RSP_EOPNOTSUPP }.encode();
    assert_eq!(bytes, [8, 7, 6, 5, 4, 3, 2, 1, 6, 0, 0xfe, 0xff, 0, 0, 0, 0]);
}

#[test]
fn fuzz_body_survives_crafted_and_pseudo_random_inputs() {
    fuzz_one(&[]);
    fuzz_one(&[0xff; 5000]);
    // A well-formed ring with 32 mixed requests, then hostile req_prod steps.
    let mut data = vec![0x1f, 1, 40, 200];
    let mut page = TestPage::default();
    page.write_u32(ring::REQ_PROD, 32);
    for slot in 0..32u64 {
        let entry = match slot % 6 {
            0 => encode::read_write(BLKIF_OP_READ, slot, slot, &[(0, 0, 7), (2, 1, 1)]),
            1 => encode::read_write(BLKIF_OP_WRITE, slot, slot, &[(1, 0, 7)]),
            2 => encode::indirect(BLKIF_OP_READ, slot, 0, 40, &[1]),
            3 => encode::discard(slot, slot % 4 == 1, slot, 3),
            4 => encode::bare(BLKIF_OP_FLUSH_DISKCACHE, slot),
            _ => encode::read_write(BLKIF_OP_WRITE_BARRIER, slot, 60, &[(0, 0, 7), (0, 0, 7)]),
        };
        page.write(ring::ENTRIES + slot as usize * ENTRY_SIZE, &entry);
    }
    data.extend_from_slice(&page.bytes);
    data.extend((0..3 * 4096).map(|index| (index % 8) as u8));
    fuzz_one(&data);

    let mut state = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..200 {
        let length = (state % 20_000) as usize;
        let input: Vec<u8> = (0..length)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                // Keep many bytes small, so that operations, counts and indices are plausible.
                if state & 3 == 0 {
                    state as u8
                } else {
                    (state >> 8) as u8 & 0x0f
                }
            })
            .collect();
        fuzz_one(&input);
    }
}

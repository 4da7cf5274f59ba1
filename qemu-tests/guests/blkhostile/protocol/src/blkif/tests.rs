//! Request encoding, ring index math and the exchange against a fake back end.

use std::cell::RefCell;
use std::rc::Rc;

use super::*;
use crate::testing::{FakeEnvironment, TestPage};

#[test]
fn ring_holds_32_entries_of_112_bytes_after_a_64_byte_header() {
    assert_eq!(RING_SIZE, 32);
    assert_eq!(ring_size(8192), 64);
    assert_eq!(ring_size(64), 0);
    assert_eq!(slot_offset(0), 64);
    assert_eq!(slot_offset(31), 64 + 31 * 112);
    assert_eq!(slot_offset(32), 64);
    assert_eq!(slot_offset(u32::MAX), 64 + 31 * 112);
    assert!(slot_offset(31) + ENTRY_SIZE <= PAGE_SIZE);
}

#[test]
fn notification_rule_is_ring_h_s() {
    // dom0 asked for an event at index 1 (the initial req_event): the first push.
    assert!(needs_notification(0, 1, 1));
    // It is already looking further ahead: no event.
    assert!(!needs_notification(0, 1, 5));
    assert!(needs_notification(3, 6, 5));
    assert!(!needs_notification(3, 6, 3));
    // Across the u32 wrap.
    assert!(needs_notification(u32::MAX, 1, 0));
    assert!(!needs_notification(u32::MAX, 1, 2));
}

#[test]
fn read_write_request_layout() {
    let segments = [Segment { gref: 9, first_sect: 1, last_sect: 6 }, Segment::page(0x0102_0304)];
    let entry = request(BLKIF_OP_WRITE, 51712, 0xAABB_CCDD_EEFF_0011, 0x10_0000_0008, &segments);
    assert_eq!(entry[0], BLKIF_OP_WRITE);
    assert_eq!(entry[1], 2);
    assert_eq!(&entry[2..4], &51712u16.to_le_bytes());
    assert_eq!(&entry[4..8], &[0; 4]);
    assert_eq!(&entry[8..16], &0xAABB_CCDD_EEFF_0011u64.to_le_bytes());
    assert_eq!(&entry[16..24], &0x10_0000_0008u64.to_le_bytes());
    assert_eq!(&entry[24..32], &[9, 0, 0, 0, 1, 6, 0, 0]);
    assert_eq!(&entry[32..40], &[4, 3, 2, 1, 0, 7, 0, 0]);
    assert!(entry[40..].iter().all(|&byte| byte == 0));
}

#[test]
fn hostile_segment_counts_are_written_as_given_but_only_11_descriptors_fit() {
    let segments = [Segment::page(8); 12];
    let entry = read_write_request(BLKIF_OP_READ, 255, 1, 2, 3, &segments);
    assert_eq!(entry[1], 255);
    // seg[10] is the last 8 bytes of the entry.
    assert_eq!(&entry[104..112], &Segment::page(8).encode());
    assert_eq!(request(BLKIF_OP_READ, 1, 2, 3, &segments)[1], 11);
}

#[test]
fn indirect_request_layout() {
    let entry = indirect_request(BLKIF_OP_READ, 513, 51712, 7, 64, &[0xFFFF_FF00, 12]);
    assert_eq!(entry[0], BLKIF_OP_INDIRECT);
    assert_eq!(entry[1], BLKIF_OP_READ);
    assert_eq!(&entry[2..4], &513u16.to_le_bytes());
    assert_eq!(&entry[8..16], &7u64.to_le_bytes());
    assert_eq!(&entry[16..24], &64u64.to_le_bytes());
    assert_eq!(&entry[24..26], &51712u16.to_le_bytes());
    assert_eq!(&entry[28..32], &0xFFFF_FF00u32.to_le_bytes());
    assert_eq!(&entry[32..36], &12u32.to_le_bytes());
    assert!(entry[36..].iter().all(|&byte| byte == 0));
}

#[test]
fn response_round_trips() {
    let response = Response { id: 0xB10C_0000_0000_0003, operation: 6, status: -2 };
    let bytes = response.encode();
    assert_eq!(&bytes[10..12], &[0xFE, 0xFF]);
    assert_eq!(Response::decode(&bytes), response);
}

#[test]
fn judge_checks_id_then_status() {
    let okay = Response { id: 5, operation: 0, status: 0 };
    assert_eq!(judge(5, Expectation::Okay, &okay), Ok(()));
    assert_eq!(judge(6, Expectation::Okay, &okay), Err(Mismatch::WrongId { expected: 6, got: 5 }));
    assert_eq!(judge(5, Expectation::Refused, &okay), Err(Mismatch::Status { expected: Expectation::Refused, got: 0 }));
    for status in [BLKIF_RSP_ERROR, BLKIF_RSP_EOPNOTSUPP] {
        assert_eq!(judge(5, Expectation::Refused, &Response { status, ..okay }), Ok(()));
    }
    assert!(judge(5, Expectation::Refused, &Response { status: -3, ..okay }).is_err());
    assert_eq!(judge(5, Expectation::Error, &Response { status: BLKIF_RSP_ERROR, ..okay }), Ok(()));
    for status in [BLKIF_RSP_OKAY, BLKIF_RSP_EOPNOTSUPP] {
        assert_eq!(
            judge(5, Expectation::Error, &Response { status, ..okay }),
            Err(Mismatch::Status { expected: Expectation::Error, got: status })
        );
    }
    assert_eq!(
        format!("{}", judge(5, Expectation::Error, &Response { status: -2, ..okay }).unwrap_err()),
        "status -2, expected -1"
    );
    assert_eq!(
        format!("{}", judge(5, Expectation::Okay, &Response { status: -1, ..okay }).unwrap_err()),
        "status -1, expected 0"
    );
}

/// A back end that answers every request with `status(request)` in its slot, as
/// ring.h's back end does (final check: req_event = req_cons + 1).
struct FakeBackend {
    page: TestPage,
    req_cons: u32,
    rsp_prod_pvt: u32,
    status: fn(&[u8; ENTRY_SIZE]) -> i16,
    seen: Vec<[u8; ENTRY_SIZE]>,
}

impl FakeBackend {
    fn turn(&mut self) {
        let req_prod = self.page.read_u32(REQ_PROD_OFFSET);
        while self.req_cons != req_prod {
            let mut entry = [0; ENTRY_SIZE];
            self.page.read_bytes(slot_offset(self.req_cons), &mut entry);
            self.req_cons = self.req_cons.wrapping_add(1);
            let id = u64::from_le_bytes(entry[8..16].try_into().unwrap());
            let response = Response { id, operation: entry[0], status: (self.status)(&entry) };
            self.page.write_bytes(slot_offset(self.rsp_prod_pvt), &response.encode());
            self.rsp_prod_pvt = self.rsp_prod_pvt.wrapping_add(1);
            self.seen.push(entry);
        }
        self.page.write_u32(RSP_PROD_OFFSET, self.rsp_prod_pvt);
        self.page.write_u32(REQ_EVENT_OFFSET, self.req_cons.wrapping_add(1));
    }
}

fn backend(page: &TestPage, status: fn(&[u8; ENTRY_SIZE]) -> i16) -> Rc<RefCell<FakeBackend>> {
    Rc::new(RefCell::new(FakeBackend { page: page.clone(), req_cons: 0, rsp_prod_pvt: 0, status, seen: Vec::new() }))
}

#[test]
fn new_ring_is_initialized_with_event_indices_one() {
    let page = TestPage::new();
    page.0.borrow_mut().fill(0xAA);
    let ring = FrontRing::new(page.clone());
    assert_eq!(page.read_u32(REQ_PROD_OFFSET), 0);
    assert_eq!(page.read_u32(RSP_PROD_OFFSET), 0);
    assert_eq!(page.read_u32(REQ_EVENT_OFFSET), 1);
    assert_eq!(page.read_u32(RSP_EVENT_OFFSET), 1);
    assert!(page.0.borrow()[16..].iter().all(|&byte| byte == 0));
    assert_eq!(ring.outstanding(), 0);
}

#[test]
fn exchanges_wrap_around_the_ring_and_keep_ids() {
    let page = TestPage::new();
    let mut ring = FrontRing::new(page.clone());
    let fake = backend(&page, |entry| if entry[0] == BLKIF_OP_READ { 0 } else { -1 });
    let peer = fake.clone();
    let mut env = FakeEnvironment::new(move || peer.borrow_mut().turn());
    for id in 0..100u64 {
        let operation = if id % 3 == 0 { 77 } else { BLKIF_OP_READ };
        let entry = request(operation, 1, id, id * 8, &[Segment::page(8)]);
        let mut deadline = Deadline::after(&mut env, 1_000_000_000);
        let response = ring.exchange(&mut env, 4, &entry, &mut deadline).unwrap();
        let expectation = if id % 3 == 0 { Expectation::Refused } else { Expectation::Okay };
        assert_eq!(judge(id, expectation, &response), Ok(()));
    }
    assert_eq!(fake.borrow().seen.len(), 100);
    assert_eq!(ring.outstanding(), 0);
    // The back end's final check keeps req_event one ahead: every push notified.
    assert_eq!(env.notified.len(), 100);
    assert!(env.notified.iter().all(|&port| port == 4));
}

#[test]
fn no_back_end_times_out_and_the_request_stays_outstanding() {
    let page = TestPage::new();
    let mut ring = FrontRing::new(page);
    let mut env = FakeEnvironment::new(|| {});
    let mut deadline = Deadline::after(&mut env, 20_000_000);
    let entry = bare_request(BLKIF_OP_READ, 0, 1);
    assert_eq!(ring.exchange(&mut env, 4, &entry, &mut deadline), Err(RingError::TimedOut));
    assert_eq!(ring.outstanding(), 1);
    assert!(env.pauses <= 21);
}

#[test]
fn responses_beyond_the_requests_are_refused_unread() {
    let mut page = TestPage::new();
    let mut ring = FrontRing::new(page.clone());
    ring.push(&bare_request(BLKIF_OP_READ, 0, 1)).unwrap();
    ring.publish();
    page.write_u32(RSP_PROD_OFFSET, 2);
    assert_eq!(ring.take_response(), Err(RingError::ResponseOverrun { rsp_prod: 2, rsp_cons: 0, req_prod: 1 }));
    page.write_u32(RSP_PROD_OFFSET, u32::MAX);
    assert!(matches!(ring.take_response(), Err(RingError::ResponseOverrun { .. })));
}

#[test]
fn no_response_asks_for_an_event_at_the_next_one() {
    let page = TestPage::new();
    let mut ring = FrontRing::new(page.clone());
    ring.push(&bare_request(BLKIF_OP_READ, 0, 1)).unwrap();
    ring.publish();
    assert_eq!(ring.take_response(), Ok(None));
    assert_eq!(page.read_u32(RSP_EVENT_OFFSET), 1);
}

#[test]
fn a_full_ring_refuses_another_push() {
    let page = TestPage::new();
    let mut ring = FrontRing::new(page.clone());
    for id in 0..u64::from(RING_SIZE) {
        ring.push(&bare_request(BLKIF_OP_READ, 0, id)).unwrap();
    }
    assert_eq!(ring.push(&bare_request(BLKIF_OP_READ, 0, 99)), Err(RingError::Full));
    // Nothing was published yet; publishing tells dom0 about all 32.
    assert_eq!(page.read_u32(REQ_PROD_OFFSET), 0);
    assert!(ring.publish());
    assert_eq!(page.read_u32(REQ_PROD_OFFSET), RING_SIZE);
}

//! The xenstore client against a fake dom0 that serves the ring in host memory.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use super::*;
use crate::testing::{FakeEnvironment, TestPage};

const PORT: u32 = 7;
const TIMEOUT_NS: u64 = 50_000_000;

/// A dom0 that answers READ/WRITE from a map, `chunk` bytes of ring traffic per turn,
/// optionally sending a watch event before each reply.
struct FakeStore {
    page: TestPage,
    nodes: BTreeMap<String, Vec<u8>>,
    pending: Vec<u8>,
    output: Vec<u8>,
    chunk: usize,
    watch_event_first: bool,
    /// Answer with this type instead of the right one.
    answer_kind: Option<u32>,
    requests: Vec<MessageHeader>,
}

impl FakeStore {
    fn new(page: TestPage) -> Self {
        Self {
            page,
            nodes: BTreeMap::new(),
            pending: Vec::new(),
            output: Vec::new(),
            chunk: usize::MAX,
            watch_event_first: false,
            answer_kind: None,
            requests: Vec::new(),
        }
    }

    fn turn(&mut self) {
        // Take what the guest produced (at most `chunk` bytes).
        let cons = self.page.read_u32(REQ_CONS_OFFSET);
        let prod = self.page.read_u32(REQ_PROD_OFFSET);
        let take = (prod.wrapping_sub(cons) as usize).min(self.chunk);
        for at in 0..take {
            self.pending.push(self.page.read_u8(REQ_OFFSET + ring_offset(cons, at)));
        }
        self.page.write_u32(REQ_CONS_OFFSET, cons.wrapping_add(take as u32));
        while self.pending.len() >= HEADER_SIZE {
            let header = MessageHeader::decode(self.pending[..HEADER_SIZE].try_into().unwrap());
            let end = HEADER_SIZE + header.len as usize;
            if self.pending.len() < end {
                break;
            }
            let payload: Vec<u8> = self.pending.drain(..end).skip(HEADER_SIZE).collect();
            self.requests.push(header);
            self.answer(header, &payload);
        }
        // Give back what fits (at most `chunk` bytes).
        let cons = self.page.read_u32(RSP_CONS_OFFSET);
        let prod = self.page.read_u32(RSP_PROD_OFFSET);
        let room = (XENSTORE_RING_SIZE - prod.wrapping_sub(cons)) as usize;
        let give = room.min(self.chunk).min(self.output.len());
        for (at, byte) in self.output.drain(..give).enumerate() {
            self.page.write_u8(RSP_OFFSET + ring_offset(prod, at), byte);
        }
        self.page.write_u32(RSP_PROD_OFFSET, prod.wrapping_add(give as u32));
    }

    fn answer(&mut self, request: MessageHeader, payload: &[u8]) {
        if self.watch_event_first {
            self.reply(MessageHeader { kind: XS_WATCH_EVENT, req_id: 0, tx_id: 0, len: 0 }, b"device\0token\0");
        }
        let mut fields = payload.splitn(2, |&byte| byte == 0);
        let path = String::from_utf8(fields.next().unwrap_or_default().to_vec()).unwrap();
        let (kind, body): (u32, Vec<u8>) = match request.kind {
            XS_READ => match self.nodes.get(&path) {
                Some(value) => (XS_READ, value.clone()),
                None => (XS_ERROR, b"ENOENT\0".to_vec()),
            },
            XS_WRITE => {
                self.nodes.insert(path, fields.next().unwrap_or_default().to_vec());
                (XS_WRITE, b"OK\0".to_vec())
            }
            _ => (XS_ERROR, b"EINVAL\0".to_vec()),
        };
        let kind = self.answer_kind.unwrap_or(kind);
        self.reply(MessageHeader { kind, len: 0, ..request }, &body);
    }

    fn reply(&mut self, header: MessageHeader, body: &[u8]) {
        let header = MessageHeader { len: body.len() as u32, ..header };
        self.output.extend_from_slice(&header.encode());
        self.output.extend_from_slice(body);
    }
}

fn setup() -> (XenstoreClient<TestPage>, Rc<RefCell<FakeStore>>) {
    let page = TestPage::new();
    let store = Rc::new(RefCell::new(FakeStore::new(page.clone())));
    (XenstoreClient::new(page, PORT, TIMEOUT_NS), store)
}

fn serving(store: &Rc<RefCell<FakeStore>>) -> FakeEnvironment<impl FnMut()> {
    let store = store.clone();
    FakeEnvironment::new(move || store.borrow_mut().turn())
}

#[test]
fn header_round_trips_with_little_endian_fields_in_order() {
    let header = MessageHeader { kind: XS_WRITE, req_id: 0x0102_0304, tx_id: 5, len: 300 };
    let bytes = header.encode();
    assert_eq!(&bytes[..4], &[11, 0, 0, 0]);
    assert_eq!(&bytes[4..8], &[4, 3, 2, 1]);
    assert_eq!(&bytes[12..16], &[44, 1, 0, 0]);
    assert_eq!(MessageHeader::decode(&bytes), header);
}

#[test]
fn write_then_read_returns_the_value_and_notifies_the_store_port() {
    let (mut client, store) = setup();
    let mut env = serving(&store);
    client.write(&mut env, "device/vbd/51712/state", "3").unwrap();
    let mut value = [0; 16];
    let len = client.read(&mut env, "device/vbd/51712/state", &mut value).unwrap();
    assert_eq!(&value[..len], b"3");
    assert!(env.notified.iter().all(|&port| port == PORT) && !env.notified.is_empty());
    let requests = &store.borrow().requests;
    assert_eq!(requests.iter().map(|header| header.kind).collect::<Vec<_>>(), [XS_WRITE, XS_READ]);
    assert_ne!(requests[0].req_id, requests[1].req_id);
    assert!(requests.iter().all(|header| header.tx_id == 0));
}

#[test]
fn write_payload_is_path_nul_value_without_trailing_nul() {
    let (mut client, store) = setup();
    let mut env = serving(&store);
    client.write(&mut env, "a/b", "xyz").unwrap();
    assert_eq!(store.borrow().requests[0].len, 7);
    assert_eq!(store.borrow().nodes.get("a/b").map(Vec::as_slice), Some(&b"xyz"[..]));
}

#[test]
fn error_reply_carries_the_errno_name() {
    let (mut client, store) = setup();
    let mut env = serving(&store);
    let error = client.read(&mut env, "missing", &mut [0; 8]).unwrap_err();
    assert_eq!(error, XenstoreError::ErrorReply(ErrorName::from_payload(b"ENOENT\0")));
    assert_eq!(format!("{error}"), "error reply ENOENT");
}

#[test]
fn messages_cross_the_ring_wrap_in_small_chunks() {
    let (mut client, store) = setup();
    store.borrow_mut().chunk = 97;
    let long_value: String = "v".repeat(1500);
    let mut env = serving(&store);
    // Several rounds push the indices past 1024 and split every message.
    for round in 0..4 {
        let path = format!("node{round}");
        client.write(&mut env, &path, &long_value).unwrap();
        let mut value = [0; 2048];
        let len = client.read(&mut env, &path, &mut value).unwrap();
        assert_eq!(&value[..len], long_value.as_bytes());
    }
    assert!(client.page().read_u32(REQ_PROD_OFFSET) > 2 * XENSTORE_RING_SIZE);
}

#[test]
fn watch_events_and_stale_replies_are_skipped() {
    let (mut client, store) = setup();
    store.borrow_mut().watch_event_first = true;
    store.borrow_mut().nodes.insert("x".into(), b"1".to_vec());
    // A reply to some other request sits in the ring before ours.
    store.borrow_mut().reply(MessageHeader { kind: XS_READ, req_id: 999, tx_id: 0, len: 0 }, b"stale");
    let mut env = serving(&store);
    assert_eq!(client.read_number(&mut env, "x"), Ok(Some(1)));
}

#[test]
fn reply_of_another_type_is_refused() {
    let (mut client, store) = setup();
    store.borrow_mut().nodes.insert("x".into(), b"1".to_vec());
    store.borrow_mut().answer_kind = Some(XS_DIRECTORY);
    let mut env = serving(&store);
    assert_eq!(client.read(&mut env, "x", &mut [0; 4]), Err(XenstoreError::UnexpectedReply { kind: XS_DIRECTORY }));
}

#[test]
fn no_server_times_out_after_the_deadline() {
    let (mut client, _store) = setup();
    let mut env = FakeEnvironment::new(|| {});
    assert_eq!(client.read(&mut env, "x", &mut [0; 4]), Err(XenstoreError::TimedOut(Waiting::Reply)));
    // 1 ms per pause: about TIMEOUT_NS worth of pauses, not more.
    assert!(env.pauses <= TIMEOUT_NS / 1_000_000 + 1, "{} pauses", env.pauses);
}

#[test]
fn no_clock_still_ends_the_wait_by_the_poll_budget() {
    let page = TestPage::new();
    let mut client = XenstoreClient::new(page, PORT, TIMEOUT_NS).with_max_polls(1000);
    let mut env = FakeEnvironment::new(|| {});
    env.has_clock = false;
    assert_eq!(client.read(&mut env, "x", &mut [0; 4]), Err(XenstoreError::TimedOut(Waiting::Reply)));
    assert_eq!(env.pauses, 1000);
}

#[test]
fn full_request_ring_that_is_never_drained_times_out() {
    let (mut client, _store) = setup();
    let mut env = FakeEnvironment::new(|| {});
    let error = client.write(&mut env, "x", &"y".repeat(2000)).unwrap_err();
    assert_eq!(error, XenstoreError::TimedOut(Waiting::RequestSpace));
    assert_eq!(client.page().read_u32(REQ_PROD_OFFSET), XENSTORE_RING_SIZE);
}

#[test]
fn broken_indices_are_reported_not_followed() {
    let (mut client, _store) = setup();
    let mut page = client.page().clone();
    page.write_u32(RSP_PROD_OFFSET, 5000);
    let mut env = FakeEnvironment::new(|| {});
    assert_eq!(client.read(&mut env, "x", &mut [0; 4]), Err(XenstoreError::ResponseIndices { cons: 0, prod: 5000 }));
    page.write_u32(REQ_CONS_OFFSET, 3000);
    assert!(matches!(client.read(&mut env, "x", &mut [0; 4]), Err(XenstoreError::RequestIndices { .. })));
}

#[test]
fn oversized_reply_and_value_too_long_are_errors() {
    let (mut client, store) = setup();
    store.borrow_mut().nodes.insert("big".into(), vec![b'z'; 100]);
    let mut env = serving(&store);
    assert_eq!(client.read(&mut env, "big", &mut [0; 10]), Err(XenstoreError::ValueTooLong { len: 100 }));
    // The long value was consumed: the next request works.
    client.write(&mut env, "y", "1").unwrap();

    let (mut client, _store) = setup();
    let mut page = client.page().clone();
    let header = MessageHeader { kind: XS_READ, req_id: 1, tx_id: 0, len: 5000 };
    page.write_bytes(RSP_OFFSET, &header.encode());
    page.write_u32(RSP_PROD_OFFSET, HEADER_SIZE as u32);
    let mut env = FakeEnvironment::new(|| {});
    assert_eq!(client.read(&mut env, "x", &mut [0; 4]), Err(XenstoreError::Oversized { len: 5000 }));
}

#[test]
fn request_longer_than_the_payload_limit_is_not_sent() {
    let (mut client, _store) = setup();
    let mut env = FakeEnvironment::new(|| {});
    let path = "p".repeat(5000);
    assert_eq!(client.read(&mut env, &path, &mut [0; 4]), Err(XenstoreError::RequestTooLong { len: 5001 }));
    assert_eq!(client.page().read_u32(REQ_PROD_OFFSET), 0);
}

#[test]
fn decimal_parsing_accepts_digits_only() {
    assert_eq!(parse_decimal(b"32768"), Some(32768));
    assert_eq!(parse_decimal(b"0"), Some(0));
    assert_eq!(parse_decimal(b""), None);
    assert_eq!(parse_decimal(b"12a"), None);
    assert_eq!(parse_decimal(b"-1"), None);
    assert_eq!(parse_decimal(b"99999999999999999999999"), None);
}

#[test]
fn decimal_spells_numbers_like_xenstore_values() {
    assert_eq!(Decimal::new(0).as_str(), "0");
    assert_eq!(Decimal::new(8).as_str(), "8");
    assert_eq!(Decimal::new(51712).as_str(), "51712");
    assert_eq!(Decimal::new(u64::MAX).as_str(), "18446744073709551615");
    assert_eq!(parse_decimal(Decimal::new(4_000_000_007).as_str().as_bytes()), Some(4_000_000_007));
}

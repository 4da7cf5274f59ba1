//! Host tests of the vbd handshake, with the guest's side played through xenstore
//! messages from domain 3 (so its permissions are those a real guest has), and of the
//! virtual device numbers.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use super::*;
use crate::xenstore::nodes::{populate_domain, DomainNodes};
use crate::xenstore::wire::{MessageHeader, XS_ERROR, XS_READ, XS_RM, XS_WATCH_EVENT, XS_WRITE};

const GUEST: u16 = 3;
const OTHER_GUEST: u16 = 4;
const XVDA: u32 = 51712;

fn store_with_guests() -> Xenstore {
    let mut store = Xenstore::new();
    for domid in [GUEST, OTHER_GUEST] {
        store.introduce(domid).unwrap();
        let domain = DomainNodes {
            domid,
            name: format!("guest{domid}"),
            uuid: [domid as u8; 16],
            memory_kib: 524_288,
            vcpus: 1,
            console: None,
        };
        populate_domain(&mut store, &domain).unwrap();
    }
    store
}

/// One request from `domid`; Ok(reply payload) or Err(errno name).
fn guest_request(store: &mut Xenstore, domid: u16, message_type: u32, payload: &[u8]) -> Result<Vec<u8>, String> {
    store.take_output(domid);
    let header = MessageHeader { message_type, req_id: 1, tx_id: 0, len: payload.len() as u32 };
    store.handle_message(domid, header, payload);
    let (header, reply) = store
        .take_output(domid)
        .into_iter()
        .find(|(header, _)| header.message_type != XS_WATCH_EVENT)
        .expect("a reply");
    if header.message_type == XS_ERROR {
        return Err(String::from_utf8_lossy(reply.strip_suffix(b"\0").unwrap_or(&reply)).into_owned());
    }
    Ok(reply)
}

fn guest_write(store: &mut Xenstore, domid: u16, path: &str, value: &[u8]) -> Result<(), String> {
    guest_request(store, domid, XS_WRITE, &[path.as_bytes(), b"\0", value].concat()).map(|_| ())
}

fn guest_read(store: &mut Xenstore, domid: u16, path: &str) -> Result<Vec<u8>, String> {
    guest_request(store, domid, XS_READ, &[path.as_bytes(), b"\0"].concat())
}

/// What blkfront writes in `talk_to_blkback`, as the guest.
fn frontend_publishes(store: &mut Xenstore, ring_ref: &str, event_channel: &str) {
    let frontend = frontend_path(GUEST, XVDA);
    for (key, value) in [
        ("ring-ref", ring_ref),
        ("event-channel", event_channel),
        ("protocol", "x86_64-abi"),
        ("feature-persistent", "1"),
        ("state", "3"),
    ] {
        guest_write(store, GUEST, &format!("{frontend}/{key}"), value.as_bytes()).unwrap();
    }
}

fn frontend_state(store: &mut Xenstore, state: &str) {
    guest_write(store, GUEST, &format!("{}/state", frontend_path(GUEST, XVDA)), state.as_bytes()).unwrap();
}

fn backend_node(store: &Xenstore, key: &str) -> Option<String> {
    store.read(&format!("{}/{key}", backend_path(GUEST, XVDA))).ok().map(|value| String::from_utf8(value).unwrap())
}

fn backend_state(store: &Xenstore) -> XenbusState {
    XenbusState::from_node(backend_node(store, "state").unwrap().as_bytes())
}

const CONFIG: BlkifConfig =
    BlkifConfig { flush: true, barrier: false, discard: true, discard_secure: false, max_indirect_segments: 256 };

fn params(persistent: bool) -> VbdParams<'static> {
    VbdParams {
        vdev: "xvda",
        target: "nvme0n1p2",
        writable: true,
        sectors: 2_097_152,
        sector_size: 512,
        physical_sector_size: 4096,
        config: &CONFIG,
        persistent,
    }
}

fn created(store: &mut Xenstore) -> VbdHandshake {
    VbdHandshake::create(store, GUEST, XVDA, &params(false)).unwrap()
}

/// A device connected over ring-ref 8, event channel 5.
fn connected(store: &mut Xenstore) -> VbdHandshake {
    let mut vbd = created(store);
    frontend_publishes(store, "8", "5");
    assert_eq!(vbd.step(store).unwrap(), HandshakeAction::Connect { ring_ref: 8, event_channel: 5, persistent: false });
    vbd.connected(store).unwrap();
    frontend_state(store, "4");
    assert_eq!(vbd.step(store).unwrap(), HandshakeAction::Wait);
    vbd
}

#[test]
fn virtual_device_numbers_follow_xen() {
    let cases: &[(&str, u32)] = &[
        ("xvda", 202 << 8),
        ("xvdb", (202 << 8) | (1 << 4)),
        ("xvda1", (202 << 8) | 1),
        ("xvdc15", (202 << 8) | (2 << 4) | 15),
        ("xvdp", (202 << 8) | (15 << 4)),
        // Beyond 15 disks or partitions: the extended form.
        ("xvdq", (1 << 28) | (16 << 8)),
        ("xvda16", (1 << 28) | 16),
        ("xvdz", (1 << 28) | (25 << 8)),
        ("xvdaa", (1 << 28) | (26 << 8)),
        ("xvdab3", (1 << 28) | (27 << 8) | 3),
        ("xvdzz", (1 << 28) | (701 << 8)),
        ("xvda255", (1 << 28) | 255),
        ("sda", 8 << 8),
        ("sdb1", (8 << 8) | (1 << 4) | 1),
        ("hda", 3 << 8),
        ("hdb", (3 << 8) | (1 << 6)),
        ("hdc", 22 << 8),
        ("hdd63", (22 << 8) | (1 << 6) | 63),
    ];
    for &(name, number) in cases {
        assert_eq!(virtual_device_number(name), Ok(number), "{name}");
    }
    assert_eq!(virtual_device_number("xvda"), Ok(XVDA));
}

#[test]
fn garbage_is_not_a_virtual_device() {
    let cases: &[(&str, VdevError)] = &[
        ("", VdevError::UnknownScheme),
        ("vda", VdevError::UnknownScheme),
        ("nvme0n1", VdevError::UnknownScheme),
        ("XVDA", VdevError::UnknownScheme),
        ("xvd", VdevError::BadDiskLetters),
        ("xvd1", VdevError::BadDiskLetters),
        ("xvdA", VdevError::BadDiskLetters),
        ("xvda0", VdevError::BadPartition),
        ("xvda01", VdevError::BadPartition),
        ("xvda-1", VdevError::BadPartition),
        ("xvda1x", VdevError::BadPartition),
        ("xvda 1", VdevError::BadPartition),
        ("xvda256", VdevError::PartitionOutOfRange),
        ("xvda99999999999999999999", VdevError::PartitionOutOfRange),
        ("xvdzzzzzz", VdevError::DiskOutOfRange),
        // Five letters parse, but "zzzzz" is past 2^20 disks.
        ("xvdzzzzz", VdevError::DiskOutOfRange),
        ("sdq", VdevError::DiskOutOfRange),
        ("sda16", VdevError::PartitionOutOfRange),
        ("hde", VdevError::DiskOutOfRange),
        ("hda64", VdevError::PartitionOutOfRange),
    ];
    for (name, error) in cases {
        assert_eq!(virtual_device_number(name), Err(*error), "{name}");
    }
}

#[test]
fn xenbus_states_from_nodes() {
    for number in 0..=8u32 {
        assert_eq!(XenbusState::from_node(format!("{number}").as_bytes()).number(), number);
    }
    for garbage in [&b""[..], b"9", b"-1", b" 3", b"3 ", b"0x3", b"banana", b"99999999999999999999999", b"\xff"] {
        assert_eq!(XenbusState::from_node(garbage), XenbusState::Unknown, "{garbage:?}");
    }
}

#[test]
fn create_writes_libxl_nodes_with_permissions() {
    let mut store = store_with_guests();
    let vbd = created(&mut store);
    let backend = backend_path(GUEST, XVDA);
    let frontend = frontend_path(GUEST, XVDA);
    assert_eq!(backend, "/local/domain/0/backend/vbd/3/51712");
    assert_eq!(frontend, "/local/domain/3/device/vbd/51712");
    assert_eq!((vbd.phase(), vbd.domid(), vbd.devid()), (VbdPhase::WaitingForFrontend, GUEST, XVDA));

    let expected_backend = [
        ("frontend", frontend.as_str()),
        ("frontend-id", "3"),
        ("online", "1"),
        ("removable", "0"),
        ("bootable", "1"),
        ("dev", "xvda"),
        ("type", "phy"),
        ("device-type", "disk"),
        ("mode", "w"),
        ("params", "nvme0n1p2"),
        ("feature-flush-cache", "1"),
        ("feature-discard", "1"),
        ("discard-granularity", "4096"),
        ("discard-alignment", "0"),
        ("feature-max-indirect-segments", "256"),
        ("sectors", "2097152"),
        ("info", "0"),
        ("sector-size", "512"),
        ("physical-sector-size", "4096"),
        ("state", "2"),
    ];
    for (key, value) in expected_backend {
        assert_eq!(backend_node(&store, key).as_deref(), Some(value), "{key}");
    }
    for absent in ["feature-persistent", "max-ring-page-order", "multi-queue-max-queues", "feature-barrier"] {
        assert_eq!(backend_node(&store, absent), None, "{absent}");
    }
    let expected_frontend =
        [("backend", backend.as_str()), ("backend-id", "0"), ("virtual-device", "51712"), ("device-type", "disk")];
    for (key, value) in expected_frontend.into_iter().chain([("state", "1")]) {
        assert_eq!(store.read(&format!("{frontend}/{key}")).unwrap(), value.as_bytes(), "{key}");
    }

    // libxl's permissions: the guest owns its frontend (dom0 reads), dom0 owns the
    // backend (the guest reads); nodes below inherit them.
    let guest_owned = [Permission::new(GUEST, Access::None), Permission::new(0, Access::Read)];
    let dom0_owned = [Permission::new(0, Access::None), Permission::new(GUEST, Access::Read)];
    assert_eq!(store.get_perms(&frontend).unwrap(), guest_owned);
    assert_eq!(store.get_perms(&format!("{frontend}/state")).unwrap(), guest_owned);
    assert_eq!(store.get_perms(&backend).unwrap(), dom0_owned);
    assert_eq!(store.get_perms(&format!("{backend}/sectors")).unwrap(), dom0_owned);

    // As the guest sees it.
    assert_eq!(guest_read(&mut store, GUEST, &format!("{backend}/state")), Ok(b"2".to_vec()));
    assert_eq!(guest_write(&mut store, GUEST, &format!("{backend}/state"), b"4"), Err("EACCES".into()));
    assert_eq!(guest_write(&mut store, GUEST, &format!("{backend}/sectors"), b"1"), Err("EACCES".into()));
    assert_eq!(guest_write(&mut store, GUEST, &format!("{frontend}/state"), b"3"), Ok(()));
    assert_eq!(guest_read(&mut store, OTHER_GUEST, &format!("{backend}/state")), Err("EACCES".into()));
    assert_eq!(guest_read(&mut store, OTHER_GUEST, &format!("{frontend}/state")), Err("EACCES".into()));
}

#[test]
fn create_advertises_what_the_params_say() {
    let mut store = store_with_guests();
    let config = BlkifConfig { discard: false, max_indirect_segments: 0, ..CONFIG };
    let params = VbdParams { writable: false, sector_size: 4096, config: &config, persistent: true, ..params(true) };
    VbdHandshake::create(&mut store, GUEST, XVDA, &params).unwrap();
    assert_eq!(backend_node(&store, "mode").as_deref(), Some("r"));
    assert_eq!(backend_node(&store, "info").as_deref(), Some("4"));
    assert_eq!(backend_node(&store, "sector-size").as_deref(), Some("4096"));
    assert_eq!(backend_node(&store, "feature-discard").as_deref(), Some("0"));
    assert_eq!(backend_node(&store, "discard-granularity"), None);
    assert_eq!(backend_node(&store, "feature-max-indirect-segments"), None);
    assert_eq!(backend_node(&store, "feature-persistent").as_deref(), Some("1"));
}

#[test]
fn create_replaces_leftovers_and_refuses_dom0() {
    let mut store = store_with_guests();
    store.write(&format!("{}/stale", backend_path(GUEST, XVDA)), b"x").unwrap();
    store.write(&format!("{}/ring-ref", frontend_path(GUEST, XVDA)), b"77").unwrap();
    created(&mut store);
    assert_eq!(backend_node(&store, "stale"), None);
    assert!(store.read(&format!("{}/ring-ref", frontend_path(GUEST, XVDA))).is_err());
    assert_eq!(VbdHandshake::create(&mut store, 0, XVDA, &params(false)), Err(XsError::Invalid));
}

#[test]
fn handshake_connects() {
    let mut store = store_with_guests();
    let mut vbd = created(&mut store);
    // Nothing until the frontend is Initialised.
    for _ in 0..3 {
        assert_eq!(vbd.step(&mut store).unwrap(), HandshakeAction::Wait);
    }
    assert_eq!(backend_state(&store), XenbusState::InitWait);
    frontend_publishes(&mut store, "8", "5");
    assert_eq!(
        vbd.step(&mut store).unwrap(),
        HandshakeAction::Connect { ring_ref: 8, event_channel: 5, persistent: false }
    );
    assert_eq!(vbd.phase(), VbdPhase::Connecting);
    // The caller owes an answer; more steps change nothing.
    assert_eq!(vbd.step(&mut store).unwrap(), HandshakeAction::Wait);
    assert_eq!(backend_state(&store), XenbusState::InitWait);
    vbd.connected(&mut store).unwrap();
    assert_eq!(backend_state(&store), XenbusState::Connected);
    // Still Initialised with the same ring, then Connected: nothing to do.
    assert_eq!(vbd.step(&mut store).unwrap(), HandshakeAction::Wait);
    frontend_state(&mut store, "4");
    assert_eq!(vbd.step(&mut store).unwrap(), HandshakeAction::Wait);
    assert_eq!(vbd.phase(), VbdPhase::Connected);
}

#[test]
fn a_frontend_already_connected_is_taken_up() {
    // E.g. the frontend jumped to Connected: its ring nodes are read all the same.
    let mut store = store_with_guests();
    let mut vbd = created(&mut store);
    frontend_publishes(&mut store, "12", "7");
    frontend_state(&mut store, "4");
    assert_eq!(
        vbd.step(&mut store).unwrap(),
        HandshakeAction::Connect { ring_ref: 12, event_channel: 7, persistent: false }
    );
}

#[test]
fn persistent_grants_need_both_ends() {
    for (offered, frontend_value, expected) in [
        (true, Some("1"), true),
        (true, Some("0"), false),
        (true, None, false),
        (true, Some("yes"), false),
        (false, Some("1"), false),
    ] {
        let mut store = store_with_guests();
        let mut vbd = VbdHandshake::create(&mut store, GUEST, XVDA, &params(offered)).unwrap();
        frontend_publishes(&mut store, "8", "5");
        let node = format!("{}/feature-persistent", frontend_path(GUEST, XVDA));
        match frontend_value {
            Some(value) => guest_write(&mut store, GUEST, &node, value.as_bytes()).unwrap(),
            None => {
                guest_request(&mut store, GUEST, XS_RM, &[node.as_bytes(), b"\0"].concat()).unwrap();
            }
        }
        assert_eq!(
            vbd.step(&mut store).unwrap(),
            HandshakeAction::Connect { ring_ref: 8, event_channel: 5, persistent: expected },
            "{offered} {frontend_value:?}"
        );
    }
}

#[test]
fn protocol_absent_or_native_is_accepted() {
    let mut store = store_with_guests();
    let mut vbd = created(&mut store);
    frontend_publishes(&mut store, "8", "5");
    let node = format!("{}/protocol", frontend_path(GUEST, XVDA));
    guest_request(&mut store, GUEST, XS_RM, &[node.as_bytes(), b"\0"].concat()).unwrap();
    assert!(matches!(vbd.step(&mut store).unwrap(), HandshakeAction::Connect { .. }));
}

#[test]
fn a_single_page_ring_named_with_order_zero_is_accepted() {
    let mut store = store_with_guests();
    let mut vbd = created(&mut store);
    let frontend = frontend_path(GUEST, XVDA);
    for (key, value) in [("ring-page-order", "0"), ("ring-ref0", "9"), ("event-channel", "4"), ("state", "3")] {
        guest_write(&mut store, GUEST, &format!("{frontend}/{key}"), value.as_bytes()).unwrap();
    }
    assert_eq!(
        vbd.step(&mut store).unwrap(),
        HandshakeAction::Connect { ring_ref: 9, event_channel: 4, persistent: false }
    );
}

#[test]
fn unsupported_or_broken_frontends_are_refused_with_an_error_node() {
    let cases: &[(&str, &str, FrontendRefusal, &str)] = &[
        ("ring-page-order", "2", FrontendRefusal::MultiPageRing { order: 2 }, "ring-page-order 2"),
        ("ring-page-order", "x", FrontendRefusal::BadRingPageOrder, "ring-page-order"),
        ("multi-queue-num-queues", "4", FrontendRefusal::MultiQueue { queues: 4 }, "multi-queue"),
        ("multi-queue-num-queues", "0", FrontendRefusal::BadQueueCount, "multi-queue-num-queues"),
        ("protocol", "x86_32-abi", FrontendRefusal::Protocol32Bit, "x86_32-abi"),
        ("protocol", "arm-abi", FrontendRefusal::UnknownProtocol, "unknown protocol"),
        ("ring-ref", "4294967296", FrontendRefusal::BadRingRef, "ring-ref"),
        ("ring-ref", "-1", FrontendRefusal::BadRingRef, "ring-ref"),
        ("ring-ref", "", FrontendRefusal::BadRingRef, "ring-ref"),
        ("ring-ref", "99999999999999999999999999", FrontendRefusal::BadRingRef, "ring-ref"),
        ("event-channel", "0", FrontendRefusal::BadEventChannel, "event-channel"),
        ("event-channel", "five", FrontendRefusal::BadEventChannel, "event-channel"),
    ];
    for (key, value, refusal, message) in cases {
        let mut store = store_with_guests();
        let mut vbd = created(&mut store);
        frontend_publishes(&mut store, "8", "5");
        let path = format!("{}/{key}", frontend_path(GUEST, XVDA));
        guest_write(&mut store, GUEST, &path, value.as_bytes()).unwrap();
        assert_eq!(vbd.step(&mut store).unwrap(), HandshakeAction::Refused(*refusal), "{key} = {value:?}");
        assert_eq!(backend_state(&store), XenbusState::Closed);
        assert_eq!(vbd.phase(), VbdPhase::Closed);
        let error = backend_node(&store, "error").unwrap();
        assert!(error.contains(message), "{error:?} lacks {message:?}");
        assert_eq!(error, refusal.to_string());
        // Refused once; the guest can read why.
        assert_eq!(vbd.step(&mut store).unwrap(), HandshakeAction::Wait);
        let path = format!("{}/error", backend_path(GUEST, XVDA));
        assert_eq!(guest_read(&mut store, GUEST, &path), Ok(error.into_bytes()));
    }
}

#[test]
fn missing_ring_nodes_are_refused() {
    for missing in ["ring-ref", "event-channel"] {
        let mut store = store_with_guests();
        let mut vbd = created(&mut store);
        frontend_publishes(&mut store, "8", "5");
        let node = format!("{}/{missing}", frontend_path(GUEST, XVDA));
        guest_request(&mut store, GUEST, XS_RM, &[node.as_bytes(), b"\0"].concat()).unwrap();
        let expected =
            if missing == "ring-ref" { FrontendRefusal::MissingRingRef } else { FrontendRefusal::MissingEventChannel };
        assert_eq!(vbd.step(&mut store).unwrap(), HandshakeAction::Refused(expected));
    }
}

#[test]
fn failed_connection_closes_with_the_message_and_a_restart_clears_it() {
    let mut store = store_with_guests();
    let mut vbd = created(&mut store);
    frontend_publishes(&mut store, "8", "5");
    assert!(matches!(vbd.step(&mut store).unwrap(), HandshakeAction::Connect { .. }));
    vbd.failed(&mut store, "mapping ring-ref 8 failed").unwrap();
    assert_eq!(backend_state(&store), XenbusState::Closed);
    assert_eq!(backend_node(&store, "error").as_deref(), Some("mapping ring-ref 8 failed"));
    // blkfront answers a Closed backend by closing, and may start again.
    frontend_state(&mut store, "6");
    assert_eq!(vbd.step(&mut store).unwrap(), HandshakeAction::Wait);
    frontend_state(&mut store, "1");
    assert_eq!(vbd.step(&mut store).unwrap(), HandshakeAction::Wait);
    assert_eq!(backend_state(&store), XenbusState::InitWait);
    assert_eq!(backend_node(&store, "error"), None);
    frontend_publishes(&mut store, "10", "6");
    assert_eq!(
        vbd.step(&mut store).unwrap(),
        HandshakeAction::Connect { ring_ref: 10, event_channel: 6, persistent: false }
    );
}

#[test]
fn a_long_error_message_is_cut_at_a_character_boundary() {
    let mut store = store_with_guests();
    let mut vbd = created(&mut store);
    frontend_publishes(&mut store, "8", "5");
    assert!(matches!(vbd.step(&mut store).unwrap(), HandshakeAction::Connect { .. }));
    let message = "é".repeat(1000);
    vbd.failed(&mut store, &message).unwrap();
    let written = backend_node(&store, "error").unwrap();
    assert!(written.len() <= 1024 && message.starts_with(&written) && !written.is_empty());
}

#[test]
fn guest_shutdown_sees_backend_closing_then_closed() {
    // Linux's xenbus_dev_shutdown writes Closing and waits for the backend to reach
    // exactly Closing.
    let mut store = store_with_guests();
    let mut vbd = connected(&mut store);
    frontend_state(&mut store, "5");
    assert_eq!(vbd.step(&mut store).unwrap(), HandshakeAction::Disconnect);
    assert_eq!(vbd.phase(), VbdPhase::Disconnecting);
    assert_eq!(backend_state(&store), XenbusState::Connected, "not before the caller tore down");
    assert_eq!(vbd.step(&mut store).unwrap(), HandshakeAction::Wait);
    vbd.closed(&mut store).unwrap();
    assert_eq!(backend_state(&store), XenbusState::Closing);
    frontend_state(&mut store, "6");
    assert_eq!(vbd.step(&mut store).unwrap(), HandshakeAction::Wait);
    assert_eq!(backend_state(&store), XenbusState::Closed);
    assert_eq!(vbd.phase(), VbdPhase::Closed);
}

#[test]
fn kexec_reset_reconnects_with_a_new_ring() {
    // xenbus_reset_frontend: Closing (wait for Closing), Closed (wait for Closed),
    // Initialising (wait for InitWait), then blkfront connects again.
    let mut store = store_with_guests();
    let mut vbd = connected(&mut store);
    frontend_state(&mut store, "5");
    assert_eq!(vbd.step(&mut store).unwrap(), HandshakeAction::Disconnect);
    vbd.closed(&mut store).unwrap();
    assert_eq!(backend_state(&store), XenbusState::Closing);
    frontend_state(&mut store, "6");
    assert_eq!(vbd.step(&mut store).unwrap(), HandshakeAction::Wait);
    assert_eq!(backend_state(&store), XenbusState::Closed);
    frontend_state(&mut store, "1");
    assert_eq!(vbd.step(&mut store).unwrap(), HandshakeAction::Wait);
    assert_eq!(backend_state(&store), XenbusState::InitWait);
    assert_eq!(vbd.phase(), VbdPhase::WaitingForFrontend);
    frontend_publishes(&mut store, "20", "9");
    assert_eq!(
        vbd.step(&mut store).unwrap(),
        HandshakeAction::Connect { ring_ref: 20, event_channel: 9, persistent: false }
    );
    vbd.connected(&mut store).unwrap();
    assert_eq!(backend_state(&store), XenbusState::Connected);
}

#[test]
fn frontend_closed_at_once_closes_the_backend() {
    let mut store = store_with_guests();
    let mut vbd = connected(&mut store);
    frontend_state(&mut store, "6");
    assert_eq!(vbd.step(&mut store).unwrap(), HandshakeAction::Disconnect);
    vbd.closed(&mut store).unwrap();
    assert_eq!(backend_state(&store), XenbusState::Closed);
}

#[test]
fn a_restart_missed_between_rounds_still_disconnects() {
    // The frontend went Closed → Initialising → Initialised with a new ring between
    // two rounds: the changed ring gives it away.
    let mut store = store_with_guests();
    let mut vbd = connected(&mut store);
    frontend_publishes(&mut store, "9", "5");
    assert_eq!(vbd.step(&mut store).unwrap(), HandshakeAction::Disconnect);
    // So does a frontend seen Initialising.
    let mut store = store_with_guests();
    let mut vbd = connected(&mut store);
    frontend_state(&mut store, "1");
    assert_eq!(vbd.step(&mut store).unwrap(), HandshakeAction::Disconnect);
    vbd.closed(&mut store).unwrap();
    assert_eq!(backend_state(&store), XenbusState::Closed);
    assert_eq!(vbd.step(&mut store).unwrap(), HandshakeAction::Wait);
    assert_eq!(backend_state(&store), XenbusState::InitWait);
}

#[test]
fn a_vanished_or_garbled_frontend_disconnects() {
    for garbage in [None, Some(&b"banana"[..]), Some(b""), Some(b"99"), Some(b"4 "), Some(b"\xff\xfe")] {
        let mut store = store_with_guests();
        let mut vbd = connected(&mut store);
        let frontend = frontend_path(GUEST, XVDA);
        match garbage {
            None => {
                guest_request(&mut store, GUEST, XS_RM, &[frontend.as_bytes(), b"\0"].concat()).unwrap();
            }
            Some(value) => guest_write(&mut store, GUEST, &format!("{frontend}/state"), value).unwrap(),
        }
        assert_eq!(vbd.step(&mut store).unwrap(), HandshakeAction::Disconnect, "{garbage:?}");
        vbd.closed(&mut store).unwrap();
        assert_eq!(backend_state(&store), XenbusState::Closed);
    }
}

#[test]
fn garbage_state_before_connecting_is_waited_out() {
    let mut store = store_with_guests();
    let mut vbd = created(&mut store);
    for garbage in ["", "banana", "-3", "33", "0x3", "3\n"] {
        frontend_state(&mut store, garbage);
        assert_eq!(vbd.step(&mut store).unwrap(), HandshakeAction::Wait, "{garbage:?}");
        assert_eq!(backend_state(&store), XenbusState::InitWait);
    }
}

#[test]
fn block_detach_of_a_connected_device() {
    let mut store = store_with_guests();
    let mut vbd = connected(&mut store);
    vbd.detach(&mut store).unwrap();
    assert!(vbd.detaching());
    assert_eq!(backend_state(&store), XenbusState::Closing);
    // Still served while the frontend is connected (it may be flushing).
    assert_eq!(vbd.step(&mut store).unwrap(), HandshakeAction::Wait);
    assert_eq!(vbd.phase(), VbdPhase::Connected);
    // blkfront_closing: straight to Closed.
    frontend_state(&mut store, "6");
    assert_eq!(vbd.step(&mut store).unwrap(), HandshakeAction::Disconnect);
    vbd.closed(&mut store).unwrap();
    assert_eq!(backend_state(&store), XenbusState::Closed);
    assert_eq!(vbd.step(&mut store).unwrap(), HandshakeAction::ReadyToRemove);
    assert_eq!(vbd.step(&mut store).unwrap(), HandshakeAction::ReadyToRemove);
    // A detaching device does not restart, whatever the frontend does.
    frontend_state(&mut store, "1");
    assert_eq!(vbd.step(&mut store).unwrap(), HandshakeAction::Wait);
    assert_eq!(backend_state(&store), XenbusState::Closed);
    frontend_state(&mut store, "6");
    assert_eq!(vbd.step(&mut store).unwrap(), HandshakeAction::ReadyToRemove);
    vbd.remove(&mut store).unwrap();
    assert!(store.read(&frontend_path(GUEST, XVDA)).is_err());
    assert!(store.read(&backend_path(GUEST, XVDA)).is_err());
    assert!(store.read("/local/domain/0/backend/vbd/3").is_err(), "the empty domain directory goes too");
    assert!(store.read("/local/domain/3/device/vbd").is_ok());
}

#[test]
fn block_detach_while_the_frontend_is_closing() {
    let mut store = store_with_guests();
    let mut vbd = connected(&mut store);
    vbd.detach(&mut store).unwrap();
    frontend_state(&mut store, "5");
    assert_eq!(vbd.step(&mut store).unwrap(), HandshakeAction::Disconnect);
    vbd.closed(&mut store).unwrap();
    assert_eq!(backend_state(&store), XenbusState::Closing);
    assert_eq!(vbd.step(&mut store).unwrap(), HandshakeAction::Wait);
    frontend_state(&mut store, "6");
    assert_eq!(vbd.step(&mut store).unwrap(), HandshakeAction::ReadyToRemove);
    assert_eq!(backend_state(&store), XenbusState::Closed);
}

#[test]
fn block_detach_without_a_frontend_driver_waits_for_the_caller() {
    let mut store = store_with_guests();
    let mut vbd = created(&mut store);
    // A second device of the same guest stays when the first is removed.
    let second = virtual_device_number("xvdb").unwrap();
    VbdHandshake::create(&mut store, GUEST, second, &VbdParams { vdev: "xvdb", ..params(false) }).unwrap();
    vbd.detach(&mut store).unwrap();
    assert_eq!(vbd.phase(), VbdPhase::Closing);
    for _ in 0..3 {
        assert_eq!(vbd.step(&mut store).unwrap(), HandshakeAction::Wait);
    }
    // Frontend still Initialising: never "ready"; the caller's timeout removes.
    vbd.remove(&mut store).unwrap();
    assert!(store.read(&backend_path(GUEST, XVDA)).is_err());
    assert!(store.read(&backend_path(GUEST, second)).is_ok());
    assert!(store.read(&frontend_path(GUEST, second)).is_ok());
}

#[test]
fn calls_out_of_order_are_errors() {
    let mut store = store_with_guests();
    let mut vbd = created(&mut store);
    let out_of_order = |call, phase| Err(HandshakeError::OutOfOrder { call, phase });
    assert_eq!(vbd.connected(&mut store), out_of_order("connected", VbdPhase::WaitingForFrontend));
    assert_eq!(vbd.failed(&mut store, "x"), out_of_order("failed", VbdPhase::WaitingForFrontend));
    assert_eq!(vbd.closed(&mut store), out_of_order("closed", VbdPhase::WaitingForFrontend));
    assert_eq!(backend_state(&store), XenbusState::InitWait);
    frontend_publishes(&mut store, "8", "5");
    assert!(matches!(vbd.step(&mut store).unwrap(), HandshakeAction::Connect { .. }));
    assert_eq!(vbd.detach(&mut store), out_of_order("detach", VbdPhase::Connecting));
    vbd.connected(&mut store).unwrap();
    assert_eq!(vbd.connected(&mut store), out_of_order("connected", VbdPhase::Connected));
    assert_eq!(vbd.closed(&mut store), out_of_order("closed", VbdPhase::Connected));
    assert_eq!(
        HandshakeError::OutOfOrder { call: "closed", phase: VbdPhase::Connected }.to_string(),
        "closed called while Connected"
    );
    assert_eq!(HandshakeError::from(XsError::NoSpace).to_string(), "xenstore: ENOSPC");
}

/// xorshift64: a deterministic stream for the fuzz-like test.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a>(&mut self, items: &[&'a [u8]]) -> &'a [u8] {
        items[(self.next() % items.len() as u64) as usize]
    }
}

#[test]
fn whatever_the_guest_writes_nothing_panics_and_the_states_stay_consistent() {
    let keys: &[&[u8]] = &[
        b"state",
        b"ring-ref",
        b"event-channel",
        b"protocol",
        b"feature-persistent",
        b"ring-page-order",
        b"ring-ref0",
        b"multi-queue-num-queues",
    ];
    let values: &[&[u8]] = &[
        b"0",
        b"1",
        b"2",
        b"3",
        b"4",
        b"5",
        b"6",
        b"7",
        b"8",
        b"9",
        b"",
        b"-1",
        b"4294967295",
        b"4294967296",
        b"18446744073709551616",
        b"x86_64-abi",
        b"x86_32-abi",
        b"\xff\x00garbage",
        b"3\n",
    ];
    // Connect, Disconnect, Refused, ReadyToRemove seen over all seeds.
    let mut seen = [0usize; 4];
    for seed in 1..=40u64 {
        let mut random = Random(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let mut store = store_with_guests();
        let mut vbd = VbdHandshake::create(&mut store, GUEST, XVDA, &params(seed % 2 == 0)).unwrap();
        let frontend = frontend_path(GUEST, XVDA);
        let mut detached = false;
        for round in 0..200 {
            // Mostly what a frontend would write, sometimes garbage anywhere.
            let (key, value): (&[u8], &[u8]) = match random.next() % 16 {
                0 => {
                    let node = format!("{frontend}/{}", String::from_utf8_lossy(random.pick(keys)));
                    let _ = guest_request(&mut store, GUEST, XS_RM, &[node.as_bytes(), b"\0"].concat());
                    (b"", b"")
                }
                1 if !detached && round > 150 && vbd.detach(&mut store).is_ok() => {
                    detached = true;
                    (b"", b"")
                }
                2..=7 => (b"state", random.pick(&[b"1", b"3", b"4", b"5", b"6"])),
                8 | 9 => (b"ring-ref", random.pick(&[b"8", b"9", b"4294967295"])),
                10 | 11 => (b"event-channel", random.pick(&[b"5", b"6"])),
                12 => (b"protocol", b"x86_64-abi"),
                _ => (random.pick(keys), random.pick(values)),
            };
            if !key.is_empty() {
                let node = format!("{frontend}/{}", String::from_utf8_lossy(key));
                let _ = guest_write(&mut store, GUEST, &node, value);
            }
            let phase_before = vbd.phase();
            match vbd.step(&mut store).unwrap() {
                HandshakeAction::Connect { event_channel, .. } => {
                    assert_eq!(phase_before, VbdPhase::WaitingForFrontend);
                    assert!(event_channel != 0);
                    assert!(!vbd.detaching());
                    seen[0] += 1;
                    if random.next().is_multiple_of(3) {
                        vbd.failed(&mut store, "no").unwrap();
                        assert_eq!(backend_state(&store), XenbusState::Closed);
                    } else {
                        vbd.connected(&mut store).unwrap();
                        assert_eq!(backend_state(&store), XenbusState::Connected);
                    }
                }
                HandshakeAction::Disconnect => {
                    assert_eq!(phase_before, VbdPhase::Connected);
                    seen[1] += 1;
                    vbd.closed(&mut store).unwrap();
                }
                HandshakeAction::Refused(_) => {
                    seen[2] += 1;
                    assert_eq!(backend_state(&store), XenbusState::Closed);
                    assert!(backend_node(&store, "error").is_some());
                }
                HandshakeAction::ReadyToRemove => {
                    assert!(vbd.detaching());
                    seen[3] += 1;
                }
                HandshakeAction::Wait => {}
            }
            let expected = match vbd.phase() {
                VbdPhase::WaitingForFrontend => XenbusState::InitWait,
                VbdPhase::Connected if vbd.detaching() => XenbusState::Closing,
                VbdPhase::Connected => XenbusState::Connected,
                VbdPhase::Closing => XenbusState::Closing,
                VbdPhase::Closed => XenbusState::Closed,
                VbdPhase::Connecting | VbdPhase::Disconnecting => unreachable!("answered above"),
            };
            assert_eq!(backend_state(&store), expected, "seed {seed} round {round}");
        }
        vbd.remove(&mut store).unwrap();
        assert!(store.read(&frontend).is_err());
    }
    assert!(seen.iter().all(|&count| count > 0), "every outcome is exercised: {seen:?}");
}

#[test]
fn the_fuzz_body_survives_sample_inputs() {
    let mut random = Random(0x5eed);
    for length in [0usize, 1, 2, 7, 64, 600, 4096] {
        for _ in 0..20 {
            let data: Vec<u8> = (0..length).map(|_| random.next() as u8).collect();
            fuzz_one(&data);
        }
    }
    // A frontend that connects properly, then closes.
    let mut script = alloc::vec![0u8];
    for (key, value) in [(1u8, &b"8"[..]), (2, b"5"), (3, b"x86_64-abi"), (0, b"3"), (0, b"4"), (0, b"6")] {
        script.extend_from_slice(&[(2 << 3) | key, value.len() as u8]);
        script.extend_from_slice(value);
    }
    fuzz_one(&script);
}

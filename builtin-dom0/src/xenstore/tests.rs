//! Host tests: permissions (a domU cannot reach another's nodes), watches,
//! transactions, quotas, ring framing, and malformed requests — each driven the way a
//! guest drives it, through messages or through a [`TestPage`] ring.

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use super::nodes::{populate_domain, remove_domain, request_shutdown, uuid_string, DomainNodes, ShutdownRequest};
use super::wire::*;
use super::*;
use crate::shared_page::{SharedPage, TestPage};

type Message = (MessageHeader, Vec<u8>);

fn domain(domid: u16) -> DomainNodes {
    DomainNodes {
        domid,
        name: format!("guest{domid}"),
        uuid: [domid as u8; 16],
        memory_kib: 524_288,
        vcpus: 2,
        console: Some(nodes::ConsoleNodes { ring_ref: 0xfeffc, port: 2 }),
    }
}

/// A store with domUs 3 and 4 introduced and populated, output drained.
fn store_with_guests() -> Xenstore {
    let mut store = Xenstore::new();
    for domid in [3, 4] {
        store.introduce(domid).unwrap();
        populate_domain(&mut store, &domain(domid)).unwrap();
    }
    for domid in [0, 3, 4] {
        store.take_output(domid);
    }
    store
}

/// Sends one request and returns everything queued for the sender.
fn send(store: &mut Xenstore, domid: u16, message_type: u32, tx_id: u32, payload: &[u8]) -> Vec<Message> {
    let header = MessageHeader { message_type, req_id: 77, tx_id, len: payload.len() as u32 };
    store.handle_message(domid, header, payload);
    store.take_output(domid)
}

/// Sends one request; returns its reply as Ok(payload) or Err(errno name), checking
/// the echoed fields.
fn request(store: &mut Xenstore, domid: u16, message_type: u32, tx_id: u32, payload: &[u8]) -> Result<Vec<u8>, String> {
    let messages = send(store, domid, message_type, tx_id, payload);
    let (header, reply) = messages.into_iter().find(|(header, _)| header.message_type != XS_WATCH_EVENT).unwrap();
    assert_eq!((header.req_id, header.tx_id, header.len as usize), (77, tx_id, reply.len()));
    if header.message_type == XS_ERROR {
        assert_eq!(reply.last(), Some(&0));
        return Err(String::from_utf8(reply[..reply.len() - 1].to_vec()).unwrap());
    }
    assert_eq!(header.message_type, message_type);
    Ok(reply)
}

fn read(store: &mut Xenstore, domid: u16, path: &str) -> Result<Vec<u8>, String> {
    request(store, domid, XS_READ, 0, &nul(path))
}

fn write(store: &mut Xenstore, domid: u16, tx_id: u32, path: &str, value: &str) -> Result<Vec<u8>, String> {
    request(store, domid, XS_WRITE, tx_id, &[path.as_bytes(), b"\0", value.as_bytes()].concat())
}

fn nul(text: &str) -> Vec<u8> {
    [text.as_bytes(), b"\0"].concat()
}

fn strings(texts: &[&str]) -> Vec<u8> {
    texts.iter().flat_map(|text| nul(text)).collect()
}

fn watch(store: &mut Xenstore, domid: u16, path: &str, token: &str) -> Vec<Message> {
    send(store, domid, XS_WATCH, 0, &strings(&[path, token]))
}

/// The watch events among `messages`, as (path, token).
fn events(messages: &[Message]) -> Vec<(String, String)> {
    messages
        .iter()
        .filter(|(header, _)| header.message_type == XS_WATCH_EVENT)
        .map(|(header, payload)| {
            assert_eq!((header.req_id, header.tx_id), (0, 0));
            let parts: Vec<&[u8]> = payload.split(|&byte| byte == 0).collect();
            assert_eq!(parts.len(), 3, "event payload must be exactly path NUL token NUL");
            assert!(parts[2].is_empty());
            (String::from_utf8(parts[0].to_vec()).unwrap(), String::from_utf8(parts[1].to_vec()).unwrap())
        })
        .collect()
}

fn pending_events(store: &mut Xenstore, domid: u16) -> Vec<(String, String)> {
    events(&store.take_output(domid))
}

fn event(path: &str, token: &str) -> (String, String) {
    (String::from(path), String::from(token))
}

/// Every node with its value, depth first, via dom0's API.
fn dump(store: &Xenstore) -> Vec<(String, Vec<u8>, Vec<Permission>)> {
    let mut nodes = Vec::new();
    let mut stack = vec![String::from("/")];
    while let Some(path) = stack.pop() {
        nodes.push((path.clone(), store.read(&path).unwrap(), store.get_perms(&path).unwrap()));
        for child in store.directory(&path).unwrap() {
            stack.push(if path == "/" { format!("/{child}") } else { format!("{path}/{child}") });
        }
    }
    nodes
}

// ---- basics -------------------------------------------------------------------------

#[test]
fn a_new_store_has_xens_top_nodes_owned_by_dom0() {
    let store = Xenstore::new();
    assert_eq!(store.directory("/").unwrap(), ["local", "vm", "tool"]);
    assert_eq!(store.directory("/local").unwrap(), ["domain"]);
    assert_eq!(store.get_perms("/local/domain").unwrap(), [Permission::new(0, Access::None)]);
    assert_eq!(store.read("/nope"), Err(XsError::NotFound));
}

#[test]
fn reply_formats() {
    let mut store = store_with_guests();
    // READ: raw value, no NUL; relative and absolute paths.
    assert_eq!(read(&mut store, 3, "name").unwrap(), b"guest3");
    assert_eq!(read(&mut store, 3, "/local/domain/3/name").unwrap(), b"guest3");
    // WRITE: "OK" NUL.
    assert_eq!(write(&mut store, 3, 0, "data/x", "1").unwrap(), b"OK\0");
    // DIRECTORY: each child NUL-terminated.
    assert_eq!(request(&mut store, 3, XS_DIRECTORY, 0, &nul("memory")).unwrap(), b"static-max\0target\0");
    assert_eq!(request(&mut store, 3, XS_DIRECTORY, 0, &nul("data/x")).unwrap(), b"");
    // GET_PERMS.
    assert_eq!(request(&mut store, 3, XS_GET_PERMS, 0, &nul("name")).unwrap(), b"n0\0r3\0");
    // GET_DOMAIN_PATH.
    assert_eq!(request(&mut store, 3, XS_GET_DOMAIN_PATH, 0, &nul("7")).unwrap(), b"/local/domain/7\0");
    // TRANSACTION_START: decimal id NUL.
    let id = request(&mut store, 3, XS_TRANSACTION_START, 0, b"\0").unwrap();
    assert_eq!(id.last(), Some(&0));
    assert!(core::str::from_utf8(&id[..id.len() - 1]).unwrap().parse::<u32>().unwrap() > 0);
    // DIRECTORY_PART: generation NUL, children, final NUL.
    let part = request(&mut store, 3, XS_DIRECTORY_PART, 0, &strings(&["memory", "0"])).unwrap();
    assert!(part.ends_with(b"\0static-max\0target\0\0"));
    let part = request(&mut store, 3, XS_DIRECTORY_PART, 0, &strings(&["memory", "11"])).unwrap();
    assert!(part.ends_with(b"\0target\0\0"));
    // RM of a missing node whose parent exists is fine.
    assert_eq!(request(&mut store, 3, XS_RM, 0, &nul("data/none")).unwrap(), b"OK\0");
    assert_eq!(request(&mut store, 3, XS_RM, 0, &nul("data/none/deeper")), Err("ENOENT".into()));
}

#[test]
fn errno_names_and_messages() {
    for error in XsError::ALL {
        let name = error.errno_name();
        assert!(name.starts_with('E') && name.bytes().all(|byte| byte.is_ascii_uppercase() || byte.is_ascii_digit()));
        let text = format!("{error}");
        assert!(text.contains(name) && !text.contains('\n'));
    }
}

// ---- permissions --------------------------------------------------------------------

#[test]
fn a_domu_cannot_reach_another_domus_nodes() {
    let mut store = store_with_guests();
    assert_eq!(read(&mut store, 3, "/local/domain/4/name"), Err("EACCES".into()));
    assert_eq!(read(&mut store, 3, "/local/domain/4/does-not-exist"), Err("EACCES".into()));
    assert_eq!(write(&mut store, 3, 0, "/local/domain/4/name", "evil"), Err("EACCES".into()));
    assert_eq!(write(&mut store, 3, 0, "/local/domain/4/data/x", "evil"), Err("EACCES".into()));
    assert_eq!(write(&mut store, 3, 0, "/local/domain/4/new", "evil"), Err("EACCES".into()));
    assert_eq!(request(&mut store, 3, XS_RM, 0, &nul("/local/domain/4")), Err("EACCES".into()));
    assert_eq!(request(&mut store, 3, XS_DIRECTORY, 0, &nul("/local/domain/4")), Err("EACCES".into()));
    assert_eq!(request(&mut store, 3, XS_DIRECTORY, 0, &nul("/local/domain")), Err("EACCES".into()));
    assert_eq!(request(&mut store, 3, XS_MKDIR, 0, &nul("/local/domain/4/x")), Err("EACCES".into()));
    assert_eq!(store.read("/local/domain/4/name").unwrap(), b"guest4");

    // Watching is allowed, but only the initial event arrives.
    let messages = watch(&mut store, 3, "/local/domain/4", "spy");
    assert_eq!(events(&messages), [event("/local/domain/4", "spy")]);
    store.write("/local/domain/4/name", b"renamed").unwrap();
    write(&mut store, 4, 0, "data/secret", "42").unwrap();
    assert_eq!(pending_events(&mut store, 3), []);
}

#[test]
fn a_domu_writes_only_where_libxl_lets_it() {
    let mut store = store_with_guests();
    assert_eq!(write(&mut store, 3, 0, "name", "x"), Err("EACCES".into()));
    assert_eq!(write(&mut store, 3, 0, "memory/target", "1"), Err("EACCES".into()));
    assert_eq!(write(&mut store, 3, 0, "newnode", "1"), Err("EACCES".into()));
    assert_eq!(write(&mut store, 3, 0, "control/shutdown", ""), Ok(b"OK\0".to_vec()));
    assert_eq!(write(&mut store, 3, 0, "control/feature-poweroff", "1"), Ok(b"OK\0".to_vec()));
    // A node a domU creates is its own (inherits the parent's list, owner replaced).
    write(&mut store, 3, 0, "data/a/b", "v").unwrap();
    assert_eq!(store.get_perms("/local/domain/3/data/a/b").unwrap(), [Permission::new(3, Access::None)]);
    assert_eq!(store.get_perms("/local/domain/3/data/a").unwrap(), [Permission::new(3, Access::None)]);
    // It may share it, but not give it away.
    let share = strings(&["data/a/b", "n3", "r4"]);
    assert_eq!(request(&mut store, 3, XS_SET_PERMS, 0, &share), Ok(b"OK\0".to_vec()));
    assert_eq!(read(&mut store, 4, "/local/domain/3/data/a/b").unwrap(), b"v");
    assert_eq!(read(&mut store, 4, "/local/domain/3/data/a"), Err("EACCES".into()));
    let give = strings(&["data/a/b", "n4"]);
    assert_eq!(request(&mut store, 3, XS_SET_PERMS, 0, &give), Err("EPERM".into()));
    assert_eq!(request(&mut store, 3, XS_SET_PERMS, 0, &strings(&["name", "b3"])), Err("EACCES".into()));
    // Missing node in its own home: ENOENT, not EACCES.
    assert_eq!(read(&mut store, 3, "data/none"), Err("ENOENT".into()));
}

#[test]
fn dom0_bypasses_permissions() {
    let mut store = store_with_guests();
    assert_eq!(read(&mut store, 0, "/local/domain/3/data"), Ok(Vec::new()));
    assert_eq!(write(&mut store, 0, 0, "/local/domain/3/data/x", "y"), Ok(b"OK\0".to_vec()));
    // Dom0's writes inherit the parent's list unchanged (the domU still owns it).
    assert_eq!(store.get_perms("/local/domain/3/data/x").unwrap(), [Permission::new(3, Access::None)]);
    assert_eq!(read(&mut store, 3, "data/x").unwrap(), b"y");
}

#[test]
fn privileged_requests_are_refused_to_a_domu() {
    let mut store = store_with_guests();
    for message_type in [XS_INTRODUCE, XS_RELEASE, XS_IS_DOMAIN_INTRODUCED, XS_SET_TARGET, XS_RESUME, XS_CONTROL] {
        assert_eq!(request(&mut store, 3, message_type, 0, &strings(&["4", "1", "2"])), Err("EACCES".into()));
    }
    assert!(store.is_introduced(4));
    assert_eq!(request(&mut store, 0, XS_IS_DOMAIN_INTRODUCED, 0, &nul("4")).unwrap(), b"T\0");
    assert_eq!(request(&mut store, 0, XS_IS_DOMAIN_INTRODUCED, 0, &nul("9")).unwrap(), b"F\0");
    assert_eq!(request(&mut store, 0, XS_RELEASE, 0, &nul("4")).unwrap(), b"OK\0");
    assert!(!store.is_introduced(4));
}

// ---- standard nodes -----------------------------------------------------------------

#[test]
fn populate_domain_writes_libxls_nodes() {
    let store = store_with_guests();
    let home = "/local/domain/3";
    let uuid = uuid_string(&[3; 16]);
    assert_eq!(uuid, "03030303-0303-0303-0303-030303030303");
    let value = |path: &str| String::from_utf8(store.read(path).unwrap()).unwrap();
    assert_eq!(value(&format!("{home}/name")), "guest3");
    assert_eq!(value(&format!("{home}/domid")), "3");
    assert_eq!(value(&format!("{home}/vm")), format!("/vm/{uuid}"));
    assert_eq!(value(&format!("/vm/{uuid}/uuid")), uuid);
    assert_eq!(value(&format!("/vm/{uuid}/name")), "guest3");
    assert_eq!(value(&format!("{home}/memory/static-max")), "524288");
    assert_eq!(value(&format!("{home}/memory/target")), "524288");
    assert_eq!(value(&format!("{home}/cpu/1/availability")), "online");
    assert_eq!(value(&format!("{home}/control/platform-feature-xs_reset_watches")), "1");
    assert_eq!(value(&format!("{home}/control/platform-feature-multiprocessor-suspend")), "1");
    assert_eq!(value(&format!("{home}/console/type")), "xenconsoled");
    assert_eq!(value(&format!("{home}/console/port")), "2");
    assert_eq!(value(&format!("{home}/control/shutdown")), "");
    let read_only = [Permission::new(0, Access::None), Permission::new(3, Access::Read)];
    assert_eq!(store.get_perms(home).unwrap(), read_only);
    assert_eq!(store.get_perms(&format!("{home}/device")).unwrap(), read_only);
    assert_eq!(store.get_perms(&format!("{home}/memory/target")).unwrap(), read_only);
    for writable in ["control/shutdown", "control/sysrq", "control/feature-suspend", "data", "error", "attr"] {
        assert_eq!(store.get_perms(&format!("{home}/{writable}")).unwrap(), [Permission::new(3, Access::None)]);
    }
    assert!(store.directory("/local/domain/0/backend").unwrap().is_empty());
}

#[test]
fn remove_domain_and_request_shutdown() {
    let mut store = store_with_guests();
    store.write("/local/domain/0/backend/vbd/3/51712/state", b"1").unwrap();
    store.write("/local/domain/0/backend/vbd/4/51712/state", b"1").unwrap();
    watch(&mut store, 3, "control/shutdown", "shutdown");
    request_shutdown(&mut store, 3, ShutdownRequest::Poweroff).unwrap();
    assert_eq!(store.read("/local/domain/3/control/shutdown").unwrap(), b"poweroff");
    assert_eq!(pending_events(&mut store, 3), [event("control/shutdown", "shutdown")]);
    remove_domain(&mut store, 3).unwrap();
    assert_eq!(store.read("/local/domain/3"), Err(XsError::NotFound));
    assert_eq!(store.read(&format!("/vm/{}", uuid_string(&[3; 16]))), Err(XsError::NotFound));
    assert_eq!(store.directory("/local/domain/0/backend/vbd").unwrap(), ["4"]);
    assert_eq!(store.read("/local/domain/4/name").unwrap(), b"guest4");
}

// ---- watches ------------------------------------------------------------------------

#[test]
fn a_watch_fires_at_once_and_for_changes_at_or_below() {
    let mut store = store_with_guests();
    let messages = watch(&mut store, 3, "device", "tok");
    assert_eq!(messages[0].0.message_type, XS_WATCH);
    assert_eq!(messages[0].1, b"OK\0");
    assert_eq!(events(&messages), [event("device", "tok")]);

    store.write("/local/domain/3/device/vbd/51712/state", b"1").unwrap();
    assert_eq!(pending_events(&mut store, 3), [event("device/vbd/51712/state", "tok")]);
    store.write("/local/domain/3/devices", b"sibling with a common prefix").unwrap();
    store.write("/local/domain/3/name", b"not below").unwrap();
    assert_eq!(pending_events(&mut store, 3), []);

    // Absolute watches get absolute paths; the watcher's own changes fire too.
    watch(&mut store, 3, "/local/domain/3/data", "abs");
    let messages = send(&mut store, 3, XS_WRITE, 0, b"data/k\0v");
    assert_eq!(messages[0].1, b"OK\0");
    assert_eq!(events(&messages), [event("/local/domain/3/data/k", "abs")]);
    // set_perms and mkdir fire; mkdir of an existing node does not.
    store.set_perms("/local/domain/3/data/k", &[Permission::new(3, Access::Read)]).unwrap();
    assert_eq!(pending_events(&mut store, 3), [event("/local/domain/3/data/k", "abs")]);
    assert_eq!(events(&send(&mut store, 3, XS_MKDIR, 0, &nul("data/dir"))), [event("/local/domain/3/data/dir", "abs")]);
    assert_eq!(events(&send(&mut store, 3, XS_MKDIR, 0, &nul("data/dir"))), []);
}

#[test]
fn rm_fires_for_the_removed_path_and_watched_descendants() {
    let mut store = store_with_guests();
    store.write("/local/domain/3/device/vif/0/state", b"4").unwrap();
    watch(&mut store, 3, "device", "parent");
    watch(&mut store, 3, "device/vif/0/state", "child");
    watch(&mut store, 3, "device/vif/0/state/never-existed", "ghost");
    store.take_output(3);
    store.rm("/local/domain/3/device/vif").unwrap();
    let mut got = pending_events(&mut store, 3);
    got.sort();
    assert_eq!(got, [event("device/vif", "parent"), event("device/vif/0/state", "child")]);
    assert_eq!(store.directory("/local/domain/3/device").unwrap(), Vec::<String>::new());
}

#[test]
fn unwatch_and_reset_watches() {
    let mut store = store_with_guests();
    watch(&mut store, 3, "data", "a");
    assert_eq!(events(&watch(&mut store, 3, "data", "a")), []);
    assert_eq!(request(&mut store, 3, XS_WATCH, 0, &strings(&["data", "a"])), Err("EEXIST".into()));
    assert_eq!(request(&mut store, 3, XS_UNWATCH, 0, &strings(&["data", "a"])), Ok(b"OK\0".to_vec()));
    assert_eq!(request(&mut store, 3, XS_UNWATCH, 0, &strings(&["data", "a"])), Err("ENOENT".into()));
    store.write("/local/domain/3/data/x", b"1").unwrap();
    assert_eq!(pending_events(&mut store, 3), []);

    watch(&mut store, 3, "data", "b");
    watch(&mut store, 3, "/local/domain/3/control", "c");
    store.take_output(3);
    assert_eq!(request(&mut store, 3, XS_RESET_WATCHES, 0, b"\0"), Ok(b"OK\0".to_vec()));
    store.write("/local/domain/3/data/x", b"2").unwrap();
    store.write("/local/domain/3/control/shutdown", b"reboot").unwrap();
    assert_eq!(pending_events(&mut store, 3), []);
}

#[test]
fn special_watches_fire_on_introduce_and_release() {
    let mut store = store_with_guests();
    store.watch("@introduceDomain", "in").unwrap();
    store.watch("@releaseDomain", "out").unwrap();
    assert_eq!(pending_events(&mut store, 0), [event("@introduceDomain", "in"), event("@releaseDomain", "out")]);
    // A domU may watch them but (by their default permissions) gets only the first event.
    assert_eq!(events(&watch(&mut store, 3, "@releaseDomain", "r")), [event("@releaseDomain", "r")]);
    store.introduce(5).unwrap();
    assert_eq!(store.introduce(5), Err(XsError::IsConnected));
    store.release(5);
    assert_eq!(pending_events(&mut store, 0), [event("@introduceDomain", "in"), event("@releaseDomain", "out")]);
    assert_eq!(pending_events(&mut store, 3), []);
    // Dom0 may open them up.
    assert_eq!(request(&mut store, 3, XS_SET_PERMS, 0, &strings(&["@releaseDomain", "n3"])), Err("EACCES".into()));
    request(&mut store, 0, XS_SET_PERMS, 0, &strings(&["@releaseDomain", "n0", "r3"])).unwrap();
    store.introduce(5).unwrap();
    store.release(5);
    assert_eq!(pending_events(&mut store, 3), [event("@releaseDomain", "r")]);
    // Other @ paths are not watchable.
    assert_eq!(request(&mut store, 3, XS_WATCH, 0, &strings(&["@other", "t"])), Err("EINVAL".into()));
}

#[test]
fn release_drops_the_connection_state() {
    let mut store = store_with_guests();
    watch(&mut store, 4, "data", "t");
    request(&mut store, 4, XS_TRANSACTION_START, 0, b"\0").unwrap();
    store.release(4);
    assert!(!store.is_introduced(4));
    store.write("/local/domain/4/data/x", b"1").unwrap();
    assert!(store.take_output(4).is_empty());
    // Requests from a released domain are dropped; its nodes stay until removed.
    assert!(send(&mut store, 4, XS_READ, 0, &nul("name")).is_empty());
    assert_eq!(store.read("/local/domain/4/name").unwrap(), b"guest4");
}

// ---- transactions -------------------------------------------------------------------

/// A frontend directory as the toolstack makes it (libxl_device.c: owned by the domU,
/// readable by the backend, dom0).
fn make_frontend(store: &mut Xenstore, domid: u16) {
    let frontend = format!("/local/domain/{domid}/device/vbd/51712");
    store.write(&format!("{frontend}/state"), b"1").unwrap();
    let perms = [Permission::new(domid, Access::None), Permission::new(0, Access::Read)];
    store.set_perms(&frontend, &perms).unwrap();
    store.set_perms(&format!("{frontend}/state"), &perms).unwrap();
    store.take_output(domid);
    store.take_output(0);
}

fn start(store: &mut Xenstore, domid: u16) -> u32 {
    let reply = request(store, domid, XS_TRANSACTION_START, 0, b"\0").unwrap();
    core::str::from_utf8(&reply[..reply.len() - 1]).unwrap().parse().unwrap()
}

fn end(store: &mut Xenstore, domid: u16, tx_id: u32, commit: bool) -> Result<Vec<u8>, String> {
    request(store, domid, XS_TRANSACTION_END, tx_id, &nul(if commit { "T" } else { "F" }))
}

#[test]
fn a_transaction_commits_with_events_at_commit() {
    let mut store = store_with_guests();
    make_frontend(&mut store, 3);
    store.rm("/local/domain/3/device/vbd/51712/state").unwrap();
    watch(&mut store, 3, "device", "dev");
    watch(&mut store, 0, "/local/domain/3/device", "backend");
    store.take_output(3);
    store.take_output(0);
    let tx = start(&mut store, 3);
    assert_eq!(write(&mut store, 3, tx, "device/vbd/51712/state", "3").unwrap(), b"OK\0");
    // Hidden outside, visible inside; no event yet.
    assert_eq!(read(&mut store, 3, "device/vbd/51712/state"), Err("ENOENT".into()));
    assert_eq!(request(&mut store, 3, XS_READ, tx, &nul("device/vbd/51712/state")).unwrap(), b"3");
    assert_eq!(pending_events(&mut store, 3), []);
    assert_eq!(pending_events(&mut store, 0), []);
    let messages = send(&mut store, 3, XS_TRANSACTION_END, tx, &nul("T"));
    assert_eq!(messages[0].0.message_type, XS_TRANSACTION_END);
    assert_eq!(events(&messages), [event("device/vbd/51712/state", "dev")]);
    assert_eq!(pending_events(&mut store, 0), [event("/local/domain/3/device/vbd/51712/state", "backend")]);
    assert_eq!(store.read("/local/domain/3/device/vbd/51712/state").unwrap(), b"3");
    // The transaction is gone.
    assert_eq!(end(&mut store, 3, tx, true), Err("ENOENT".into()));
}

#[test]
fn an_aborted_transaction_leaves_nothing() {
    let mut store = store_with_guests();
    let before = dump(&store);
    watch(&mut store, 3, "data", "t");
    store.take_output(3);
    let tx = start(&mut store, 3);
    write(&mut store, 3, tx, "data/a/b/c", "1").unwrap();
    request(&mut store, 3, XS_RM, tx, &nul("control/sysrq")).unwrap();
    assert_eq!(end(&mut store, 3, tx, false).unwrap(), b"OK\0");
    assert_eq!(pending_events(&mut store, 3), []);
    assert_eq!(dump(&store), before);
}

#[test]
fn a_conflicting_transaction_gets_eagain_and_a_retry_succeeds() {
    let mut store = store_with_guests();
    make_frontend(&mut store, 3);
    let state = "device/vbd/51712/state";
    let tx = start(&mut store, 3);
    assert_eq!(request(&mut store, 3, XS_READ, tx, &nul(state)).unwrap(), b"1");
    store.write("/local/domain/3/device/vbd/51712/state", b"5").unwrap();
    write(&mut store, 3, tx, state, "3").unwrap();
    assert_eq!(end(&mut store, 3, tx, true), Err("EAGAIN".into()));
    assert_eq!(store.read("/local/domain/3/device/vbd/51712/state").unwrap(), b"5");

    let tx = start(&mut store, 3);
    assert_eq!(request(&mut store, 3, XS_READ, tx, &nul(state)).unwrap(), b"5");
    write(&mut store, 3, tx, state, "6").unwrap();
    assert_eq!(end(&mut store, 3, tx, true).unwrap(), b"OK\0");
    assert_eq!(store.read("/local/domain/3/device/vbd/51712/state").unwrap(), b"6");

    // A node that did not exist when read, created meanwhile, conflicts too.
    let tx = start(&mut store, 3);
    assert_eq!(request(&mut store, 3, XS_READ, tx, &nul("data/flag")), Err("ENOENT".into()));
    store.write("/local/domain/3/data/flag", b"1").unwrap();
    assert_eq!(end(&mut store, 3, tx, true), Err("EAGAIN".into()));
    // Unrelated changes do not.
    let tx = start(&mut store, 3);
    write(&mut store, 3, tx, "data/mine", "1").unwrap();
    store.write("/local/domain/4/data/other", b"1").unwrap();
    assert_eq!(end(&mut store, 3, tx, true).unwrap(), b"OK\0");
}

#[test]
fn transaction_errors_and_limit() {
    let mut store = store_with_guests();
    assert_eq!(read(&mut store, 3, "name").unwrap(), b"guest3");
    assert_eq!(request(&mut store, 3, XS_READ, 999, &nul("name")), Err("ENOENT".into()));
    assert_eq!(end(&mut store, 3, 999, true), Err("ENOENT".into()));
    assert_eq!(end(&mut store, 3, 0, true), Err("ENOENT".into()));
    let tx = start(&mut store, 3);
    assert_eq!(request(&mut store, 3, XS_TRANSACTION_START, tx, b"\0"), Err("EBUSY".into()));
    assert_eq!(request(&mut store, 3, XS_TRANSACTION_END, tx, &nul("X")), Err("EINVAL".into()));
    // Another domain cannot use it.
    assert_eq!(request(&mut store, 4, XS_READ, tx, &nul("name")), Err("ENOENT".into()));
    for _ in 1..store.quotas().max_transactions {
        start(&mut store, 3);
    }
    assert_eq!(request(&mut store, 3, XS_TRANSACTION_START, 0, b"\0"), Err("ENOSPC".into()));
    end(&mut store, 3, tx, false).unwrap();
    start(&mut store, 3);
}

// ---- quotas -------------------------------------------------------------------------

#[test]
fn quotas_bound_a_domu_but_not_dom0() {
    let quotas = Quotas { max_nodes_per_domain: 20, max_watches: 3, ..Quotas::default() };
    let mut store = Xenstore::with_quotas(quotas);
    store.introduce(3).unwrap();
    populate_domain(&mut store, &domain(3)).unwrap();
    // populate_domain gave domU 3 ten nodes; the rest of its quota it may create.
    let mut created = 0;
    while write(&mut store, 3, 0, &format!("data/n{created}"), "v").is_ok() {
        created += 1;
    }
    assert_eq!(created, 10);
    assert_eq!(write(&mut store, 3, 0, "data/more", "v"), Err("ENOSPC".into()));
    assert_eq!(request(&mut store, 3, XS_MKDIR, 0, &nul("data/more")), Err("ENOSPC".into()));
    // Removing frees quota.
    request(&mut store, 3, XS_RM, 0, &nul("data/n0")).unwrap();
    write(&mut store, 3, 0, "data/again", "v").unwrap();

    let big = "x".repeat(2049);
    assert_eq!(write(&mut store, 3, 0, "data/again", &big), Err("ENOSPC".into()));
    write(&mut store, 3, 0, "data/again", &big[..2048]).unwrap();
    store.write("/local/domain/3/data/again", big.as_bytes()).unwrap();

    for token in ["a", "b", "c"] {
        watch(&mut store, 3, "data", token);
    }
    assert_eq!(request(&mut store, 3, XS_WATCH, 0, &strings(&["data", "d"])), Err("E2BIG".into()));
    let too_many = strings(&["data/again", "n3", "r1", "r2", "r4", "r5", "r6"]);
    assert_eq!(request(&mut store, 3, XS_SET_PERMS, 0, &too_many), Err("ENOSPC".into()));
}

#[test]
fn a_domu_that_does_not_read_loses_events_not_host_memory() {
    let quotas = Quotas { max_pending_output_bytes: 1024, ..Quotas::default() };
    let mut store = Xenstore::with_quotas(quotas);
    store.introduce(3).unwrap();
    populate_domain(&mut store, &domain(3)).unwrap();
    watch(&mut store, 3, "/local/domain/3", "t");
    for round in 0..200 {
        store.write("/local/domain/3/data/x", format!("{round}").as_bytes()).unwrap();
    }
    assert!(store.dropped_events(3) > 0);
    assert_eq!(store.domains_with_output(), [3]);
    let queued: usize = store.take_output(3).iter().map(|(_, payload)| HEADER_SIZE + payload.len()).sum();
    assert!(queued <= 1024, "{queued} bytes queued");
}

// ---- malformed requests -------------------------------------------------------------

#[test]
fn malformed_requests_get_errors_and_change_nothing() {
    let mut store = store_with_guests();
    let before = dump(&store);
    let long_path = format!("/{}", "a".repeat(XENSTORE_ABS_PATH_MAX));
    let long_relative = "a".repeat(XENSTORE_REL_PATH_MAX + 1);
    let cases: Vec<(u32, Vec<u8>, &str)> = vec![
        (XS_READ, b"name".to_vec(), "EINVAL"),          // no NUL
        (XS_READ, Vec::new(), "EINVAL"),                // empty payload
        (XS_READ, b"\0".to_vec(), "EINVAL"),            // empty path
        (XS_READ, b"name\0extra\0".to_vec(), "EINVAL"), // two strings
        (XS_READ, nul("/local//domain"), "EINVAL"),
        (XS_READ, nul("/local/domain/"), "EINVAL"),
        (XS_READ, nul("data/a b"), "EINVAL"),
        (XS_READ, nul("data/ä"), "EINVAL"),
        (XS_READ, b"data/\xff\xfe\0".to_vec(), "EINVAL"), // not UTF-8
        (XS_READ, nul(&long_path), "EINVAL"),
        (XS_READ, nul(&long_relative), "EINVAL"),
        (XS_WRITE, b"data/x".to_vec(), "EINVAL"), // no NUL after the path
        (XS_WRITE, b"data/x/\0v".to_vec(), "EINVAL"),
        (XS_MKDIR, b"data/y".to_vec(), "EINVAL"),
        (XS_RM, nul("/"), "EINVAL"),
        (XS_RM, b"data".to_vec(), "EINVAL"),
        (XS_SET_PERMS, nul("data"), "EINVAL"), // no permissions
        (XS_SET_PERMS, strings(&["data", "x3"]), "EINVAL"),
        (XS_SET_PERMS, strings(&["data", "r"]), "EINVAL"),
        (XS_SET_PERMS, strings(&["data", "r99999"]), "EINVAL"),
        (XS_WATCH, nul("data"), "EINVAL"), // no token
        (XS_WATCH, strings(&["data", "t", "extra"]), "EINVAL"),
        (XS_WATCH, strings(&["da ta", "t"]), "EINVAL"),
        (XS_UNWATCH, b"data\0t".to_vec(), "EINVAL"),
        (XS_GET_DOMAIN_PATH, nul("x"), "EINVAL"),
        (XS_GET_DOMAIN_PATH, nul("70000"), "EINVAL"),
        (XS_DIRECTORY_PART, strings(&["data", "-1"]), "EINVAL"),
        (XS_WATCH_EVENT, strings(&["data", "t"]), "ENOSYS"),
        (XS_ERROR, nul("EINVAL"), "ENOSYS"),
        (20, Vec::new(), "ENOSYS"),
        (99, nul("data"), "ENOSYS"),
        (u32::MAX, Vec::new(), "ENOSYS"),
    ];
    for (message_type, payload, errno) in cases {
        let messages = send(&mut store, 3, message_type, 0, &payload);
        assert_eq!(messages.len(), 1, "type {message_type} payload {payload:?}");
        let (header, reply) = &messages[0];
        assert_eq!(header.message_type, XS_ERROR, "type {message_type} payload {payload:?}");
        assert_eq!(reply, &nul(errno), "type {message_type} payload {payload:?}");
        assert_eq!(header.req_id, 77);
    }
    assert_eq!(dump(&store), before);
}

#[test]
fn an_oversized_reply_becomes_e2big() {
    let mut store = store_with_guests();
    for index in 0..200 {
        store.write(&format!("/local/domain/3/data/a-rather-long-child-name-{index:04}"), b"").unwrap();
    }
    assert_eq!(request(&mut store, 3, XS_DIRECTORY, 0, &nul("data")), Err("E2BIG".into()));
    // DIRECTORY_PART pages through it.
    let mut names = Vec::new();
    loop {
        let offset = names.iter().map(|name: &Vec<u8>| name.len() + 1).sum::<usize>();
        let part = request(&mut store, 3, XS_DIRECTORY_PART, 0, &strings(&["data", &format!("{offset}")])).unwrap();
        assert!(part.len() <= XENSTORE_PAYLOAD_MAX);
        let body = &part[part.iter().position(|&byte| byte == 0).unwrap() + 1..];
        let finished = body.ends_with(b"\0\0") || body == b"\0";
        names.extend(body.split(|&byte| byte == 0).filter(|name| !name.is_empty()).map(<[u8]>::to_vec));
        if finished {
            break;
        }
    }
    assert_eq!(names.len(), 200);
}

// ---- the ring -----------------------------------------------------------------------

/// The guest side of a xenstore ring page.
struct Guest {
    page: TestPage,
    received: Vec<u8>,
}

impl Guest {
    fn new() -> Guest {
        Guest { page: TestPage::default(), received: Vec::new() }
    }

    /// Starts all four indices at `index` (to test the ring's and u32's wrap).
    fn at_index(index: u32) -> Guest {
        let mut guest = Guest::new();
        for offset in [RING_REQ_CONS_OFFSET, RING_REQ_PROD_OFFSET, RING_RSP_CONS_OFFSET, RING_RSP_PROD_OFFSET] {
            guest.page.write_u32(offset, index);
        }
        guest
    }

    /// Puts raw bytes into the request ring (they must fit) and moves req_prod.
    fn put(&mut self, bytes: &[u8]) {
        let prod = self.page.read_u32(RING_REQ_PROD_OFFSET);
        let cons = self.page.read_u32(RING_REQ_CONS_OFFSET);
        assert!(prod.wrapping_sub(cons) as usize + bytes.len() <= XENSTORE_RING_SIZE as usize);
        for (index, &byte) in bytes.iter().enumerate() {
            let at = (prod.wrapping_add(index as u32) % XENSTORE_RING_SIZE) as usize;
            self.page.bytes[RING_REQ_OFFSET + at] = byte;
        }
        self.page.write_u32(RING_REQ_PROD_OFFSET, prod.wrapping_add(bytes.len() as u32));
    }

    fn message(message_type: u32, req_id: u32, payload: &[u8]) -> Vec<u8> {
        let header = MessageHeader { message_type, req_id, tx_id: 0, len: payload.len() as u32 };
        [&header.to_bytes()[..], payload].concat()
    }

    /// Takes everything in the response ring; returns the complete messages so far.
    fn take(&mut self) -> Vec<Message> {
        let cons = self.page.read_u32(RING_RSP_CONS_OFFSET);
        let prod = self.page.read_u32(RING_RSP_PROD_OFFSET);
        for index in 0..prod.wrapping_sub(cons) {
            let at = (cons.wrapping_add(index) % XENSTORE_RING_SIZE) as usize;
            self.received.push(self.page.bytes[RING_RSP_OFFSET + at]);
        }
        self.page.write_u32(RING_RSP_CONS_OFFSET, prod);
        let mut messages = Vec::new();
        while let Some((header, rest)) = self.received.split_first_chunk::<HEADER_SIZE>() {
            let header = MessageHeader::from_bytes(header);
            if rest.len() < header.len as usize {
                break;
            }
            let payload = rest[..header.len as usize].to_vec();
            self.received.drain(..HEADER_SIZE + header.len as usize);
            messages.push((header, payload));
        }
        messages
    }
}

#[test]
fn requests_split_across_the_wrap_and_across_calls() {
    let mut store = store_with_guests();
    // Indices just below u32's wrap and not aligned to the ring: the header straddles
    // the ring's end.
    let mut guest = Guest::at_index(u32::MAX - 5);
    guest.put(&Guest::message(XS_READ, 1, &nul("name")));
    let service = store.service_ring(3, &mut guest.page);
    assert!(service.notify && service.broken.is_none());
    assert_eq!(
        guest.take(),
        [(MessageHeader { message_type: XS_READ, req_id: 1, tx_id: 0, len: 6 }, b"guest3".to_vec())]
    );

    // A message delivered in three pieces over three calls.
    let message = Guest::message(XS_WRITE, 2, b"data/x\0value");
    guest.put(&message[..7]);
    let _ = store.service_ring(3, &mut guest.page);
    guest.put(&message[7..20]);
    let _ = store.service_ring(3, &mut guest.page);
    assert!(guest.take().is_empty());
    assert_eq!(store.read("/local/domain/3/data/x"), Err(XsError::NotFound));
    guest.put(&message[20..]);
    let _ = store.service_ring(3, &mut guest.page);
    assert_eq!(guest.take()[0].1, b"OK\0");
    assert_eq!(store.read("/local/domain/3/data/x").unwrap(), b"value");

    // Several messages in one go, around the ring many times.
    for round in 0..100u32 {
        let batch: Vec<u8> =
            (0..5).flat_map(|index| Guest::message(XS_READ, round * 5 + index, &nul("domid"))).collect();
        guest.put(&batch);
        let _ = store.service_ring(3, &mut guest.page);
        let replies = guest.take();
        assert_eq!(replies.len(), 5);
        for (index, (header, payload)) in replies.iter().enumerate() {
            assert_eq!((header.req_id, payload.as_slice()), (round * 5 + index as u32, &b"3"[..]));
        }
    }
}

#[test]
fn replies_wait_in_the_queue_while_the_response_ring_is_full() {
    let mut store = store_with_guests();
    store.write("/local/domain/3/data/big", &[b'z'; 2000]).unwrap();
    let mut guest = Guest::new();
    for req_id in 0..3 {
        guest.put(&Guest::message(XS_READ, req_id, &nul("data/big")));
    }
    let service = store.service_ring(3, &mut guest.page);
    assert!(service.notify);
    // Only 1024 bytes fit; the rest waits, and the domain is listed for service.
    assert_eq!(guest.page.read_u32(RING_RSP_PROD_OFFSET), 1024);
    assert_eq!(store.domains_with_output(), [3]);
    let mut replies = guest.take();
    while !store.domains_with_output().is_empty() {
        let service = store.service_ring(3, &mut guest.page);
        assert!(service.notify);
        replies.extend(guest.take());
    }
    assert_eq!(replies.len(), 3);
    for (req_id, (header, payload)) in replies.iter().enumerate() {
        assert_eq!(header.req_id, req_id as u32);
        assert_eq!(payload.len(), 2000);
    }
    // Watch events for changes by others are queued and listed too.
    guest.put(&Guest::message(XS_WATCH, 9, &strings(&["control/shutdown", "s"])));
    let _ = store.service_ring(3, &mut guest.page);
    assert_eq!(guest.take().len(), 2);
    store.write("/local/domain/3/control/shutdown", b"reboot").unwrap();
    assert_eq!(store.domains_with_output(), [3]);
    let _ = store.service_ring(3, &mut guest.page);
    assert_eq!(events(&guest.take()), [event("control/shutdown", "s")]);
}

#[test]
fn an_oversized_header_breaks_only_that_connection() {
    let mut store = store_with_guests();
    let mut guest = Guest::new();
    let header = MessageHeader { message_type: XS_READ, req_id: 1, tx_id: 0, len: 4097 };
    guest.put(&header.to_bytes());
    let service = store.service_ring(3, &mut guest.page);
    assert_eq!(service.broken, Some(BrokenReason::OversizedMessage { len: 4097 }));
    assert!(format!("{}", service.broken.unwrap()).contains("4097"));
    assert_eq!(store.broken_reason(3), Some(BrokenReason::OversizedMessage { len: 4097 }));
    // Not served any more; no output; the other domain is unaffected.
    guest.put(&Guest::message(XS_READ, 2, &nul("name")));
    assert_eq!(store.service_ring(3, &mut guest.page), RingService::default());
    assert!(guest.take().is_empty());
    store.write("/local/domain/3/name", b"x").unwrap();
    assert!(store.domains_with_output().is_empty());
    let mut other = Guest::new();
    other.put(&Guest::message(XS_READ, 3, &nul("name")));
    let _ = store.service_ring(4, &mut other.page);
    assert_eq!(other.take()[0].1, b"guest4");
}

#[test]
fn bad_ring_indices_break_the_connection() {
    let mut store = store_with_guests();
    let mut guest = Guest::new();
    guest.page.write_u32(RING_REQ_PROD_OFFSET, 1025);
    let service = store.service_ring(3, &mut guest.page);
    assert_eq!(service.broken, Some(BrokenReason::RequestIndices { cons: 0, prod: 1025 }));

    let mut guest = Guest::new();
    guest.page.write_u32(RING_RSP_CONS_OFFSET, 5000);
    guest.put(&Guest::message(XS_READ, 1, &nul("name")));
    let service = store.service_ring(4, &mut guest.page);
    assert_eq!(service.broken, Some(BrokenReason::ResponseIndices { cons: 5000, prod: 0 }));
    // Unknown domains are simply not served.
    assert_eq!(store.service_ring(9, &mut guest.page), RingService::default());
}

#[test]
fn a_guest_that_does_not_read_replies_is_throttled() {
    let quotas = Quotas { max_pending_output_bytes: 4096, ..Quotas::default() };
    let mut store = Xenstore::with_quotas(quotas);
    store.introduce(3).unwrap();
    populate_domain(&mut store, &domain(3)).unwrap();
    store.write("/local/domain/3/data/big", &[b'z'; 1500]).unwrap();
    let mut guest = Guest::new();
    let request = Guest::message(XS_READ, 1, &nul("data/big"));
    // The guest keeps sending without ever reading rsp.
    let mut sent = 0;
    for _ in 0..100 {
        let prod = guest.page.read_u32(RING_REQ_PROD_OFFSET);
        let cons = guest.page.read_u32(RING_REQ_CONS_OFFSET);
        if prod.wrapping_sub(cons) as usize + request.len() <= XENSTORE_RING_SIZE as usize {
            guest.put(&request);
            sent += 1;
        }
        let _ = store.service_ring(3, &mut guest.page);
    }
    // It read a few (until 4 KiB of replies were queued), then only filled the ring.
    assert!(sent <= 4 + XENSTORE_RING_SIZE as usize / request.len(), "the store must stop reading requests");
    assert!(store.take_output(3).len() <= 5);
}

#[test]
fn random_and_mutated_streams_never_panic() {
    let mut state: u64 = 0x1234_5678_9abc_def0;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let seeds: Vec<Vec<u8>> = vec![
        Guest::message(XS_WRITE, 1, b"data/x\0v"),
        Guest::message(XS_TRANSACTION_START, 2, b"\0"),
        Guest::message(XS_WATCH, 3, &strings(&["data", "t"])),
        Guest::message(XS_SET_PERMS, 4, &strings(&["data/x", "n3", "r4"])),
        Guest::message(XS_RM, 5, &nul("data")),
        Guest::message(XS_DIRECTORY_PART, 6, &strings(&["/local/domain/3", "0"])),
    ];
    for _ in 0..400 {
        let mut data = Vec::new();
        for _ in 0..(next() % 6) {
            data.extend_from_slice(&seeds[(next() % seeds.len() as u64) as usize]);
        }
        for _ in 0..(next() % 8) {
            if data.is_empty() {
                break;
            }
            let at = (next() % data.len() as u64) as usize;
            data[at] = next() as u8;
        }
        if next() % 4 == 0 {
            data.extend((0..next() % 64).map(|_| next() as u8));
        }
        fuzz_one(&data);
    }
}

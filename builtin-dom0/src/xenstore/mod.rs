//! xenstored, built into dom0: the tree of nodes guests and the toolstack share, with
//! permissions, watches, transactions and per-domain quotas, served over each guest's
//! xenstore ring page.
//!
//! Why here and portable: xenstore is the first service a PV-aware guest talks to
//! (pvh-abi.md §6), and all of it is protocol logic over bytes, so it runs and is
//! tested on the host. The hypervisor side (image/) owns the ring page (through
//! [`SharedPage`]) and the event channel; it calls [`Xenstore::service_ring`] when the
//! guest signals and for every domain in [`Xenstore::domains_with_output`], and sends
//! the event when [`RingService::notify`] says so.
//!
//! Facts implemented (Xen's `docs/misc/xenstore.txt`, `docs/misc/xenstore-ring.txt`,
//! `xen/include/public/io/xs_wire.h`, and the behaviour of C xenstored):
//! - [`wire`]: message types, header, errno names; [`path`]: path rules;
//!   [`tree`]: nodes, permissions, operations; [`transaction`]: overlays and the commit
//!   check; [`connection`]: ring framing and output queues; [`nodes`]: the nodes the
//!   toolstack creates for a domU (libxl's layout).
//! - One request in, one reply out, with the request's type, `req_id` and `tx_id`, or
//!   type ERROR with an errno name. Replies longer than 4096 bytes become E2BIG.
//! - Watches fire once when registered (no permission check, as in Xen), then for every
//!   change at or below their path that the watcher may read (under the node's new or
//!   old permissions). RM fires the removed path for watches on it and above, and each
//!   removed descendant's own path for watches exactly on it. Changes inside a
//!   transaction fire at commit. Events are `path NUL token NUL`, req_id 0, tx_id 0;
//!   a relative watch gets relative paths.
//! - Domain 0 is privileged: no permission checks, no quotas. Requests Xen reserves for
//!   privileged domains (CONTROL, INTRODUCE, RELEASE, IS_DOMAIN_INTRODUCED, RESUME,
//!   SET_TARGET) answer EACCES to a domU.
//! - Quotas ([`Quotas`]) follow xenstored's defaults and errnos: nodes owned and node
//!   size → ENOSPC, open transactions → ENOSPC, permissions per node → ENOSPC, watches →
//!   E2BIG. A domU's output queue is bounded: over the bound, requests wait and watch
//!   events for it are dropped (counted in [`Xenstore::dropped_events`]) rather than
//!   grow memory — a guest that does not read its ring loses events, not the host.
//!
//! Not implemented: DIRECTORY_PART's generation semantics beyond Xen's reply format,
//! GET/SET_FEATURE and GET/SET_QUOTA (ENOSYS), the ring's reconnection feature
//! (`server_features` stays 0), SET_TARGET (stub domains), and RESUME.
//!
//! Invariant: no input from a guest or the operator can panic here; every failure is an
//! [`XsError`] that becomes an ERROR reply, or a [`BrokenReason`] for a broken ring.

pub mod connection;
pub mod nodes;
pub mod path;
pub mod transaction;
pub mod tree;
pub mod wire;

#[cfg(test)]
mod tests;

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use crate::shared_page::SharedPage;
pub use connection::BrokenReason;
use connection::Connection;
use connection::Watch;
use path::{as_seen_by, canonicalize, home_path, is_at_or_below, special_path, INTRODUCE_DOMAIN, RELEASE_DOMAIN};
use transaction::{Transaction, TransactionView};
use tree::{allows, Change, Need, Store, Tree};
pub use tree::{Access, Permission};
use wire::{nul_strings, one_argument, *};
pub use wire::{MessageHeader, XsError};

/// Per-domU limits (domain 0 has none). Defaults are C xenstored's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quotas {
    /// Nodes a domain may own (`quota_nb_entry_per_domain`, 1000).
    pub max_nodes_per_domain: usize,
    /// Largest node value a domain may write, bytes (2048).
    pub max_value_bytes: usize,
    /// Watches per domain (`quota_nb_watch_per_domain`, 128).
    pub max_watches: usize,
    /// Open transactions per domain (`quota_max_transaction`, 10).
    pub max_transactions: usize,
    /// Entries in a permission list a domain sets (`quota_nb_perms_per_node`, 5).
    pub max_permissions_per_node: usize,
    /// Distinct nodes one transaction may touch (`quota_trans_nodes`, 1024).
    pub max_transaction_nodes: usize,
    /// Queued output bytes per domain before requests wait and events drop (64 KiB).
    pub max_pending_output_bytes: usize,
}

impl Default for Quotas {
    fn default() -> Self {
        Quotas {
            max_nodes_per_domain: 1000,
            max_value_bytes: 2048,
            max_watches: 128,
            max_transactions: 10,
            max_permissions_per_node: 5,
            max_transaction_nodes: 1024,
            max_pending_output_bytes: 64 * 1024,
        }
    }
}

/// Requests [`Xenstore::service_ring`] handles per call at most.
pub const MESSAGES_PER_SERVICE: usize = 64;

/// What one [`Xenstore::service_ring`] call did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[must_use = "the guest must be notified when `notify` is set"]
pub struct RingService {
    /// Request bytes were consumed or response bytes produced: signal the guest's
    /// xenstore event channel.
    pub notify: bool,
    /// Requests are still waiting in the ring (the per-call bound was reached):
    /// call again.
    pub more_requests: bool,
    /// The connection broke during this call (reported once; later calls do nothing).
    pub broken: Option<BrokenReason>,
}

/// The store: tree, connections (with their watches, transactions and queues), and the
/// permissions of the special watch paths.
#[derive(Debug)]
pub struct Xenstore {
    tree: Tree,
    connections: BTreeMap<u16, Connection>,
    special_perms: BTreeMap<&'static str, Vec<Permission>>,
    quotas: Quotas,
    next_transaction_id: u32,
}

impl Default for Xenstore {
    fn default() -> Self {
        Self::new()
    }
}

/// Result of one request before it is put on the wire.
#[derive(Default)]
struct Outcome {
    reply: Vec<u8>,
    changes: Vec<Change>,
    /// A new watch's initial event: (path as the watcher sees it, token).
    initial_event: Option<(String, Vec<u8>)>,
}

impl Outcome {
    fn ok() -> Outcome {
        Outcome { reply: Vec::from(&b"OK\0"[..]), ..Outcome::default() }
    }
    fn reply(reply: Vec<u8>) -> Outcome {
        Outcome { reply, ..Outcome::default() }
    }
}

impl Xenstore {
    /// A store with the default quotas.
    pub fn new() -> Xenstore {
        Self::with_quotas(Quotas::default())
    }

    /// A store holding "/", "/local", "/local/domain", "/vm" and "/tool", owned by dom0
    /// and closed to everyone else, and dom0's own connection.
    pub fn with_quotas(quotas: Quotas) -> Xenstore {
        let mut connections = BTreeMap::new();
        connections.insert(0, Connection::default());
        let mut special_perms = BTreeMap::new();
        for special in [INTRODUCE_DOMAIN, RELEASE_DOMAIN] {
            special_perms.insert(special, vec![Permission::new(0, Access::None)]);
        }
        let mut store = Xenstore { tree: Tree::new(), connections, special_perms, quotas, next_transaction_id: 1 };
        for path in ["/local", "/local/domain", "/vm", "/tool"] {
            // Cannot fail: fixed valid paths, dom0, no quota.
            let _ = tree::mkdir(&mut store.tree, 0, path, &store.quotas);
        }
        store
    }

    /// The quotas in force.
    pub fn quotas(&self) -> &Quotas {
        &self.quotas
    }

    /// Creates `domid`'s connection and fires `@introduceDomain`.
    pub fn introduce(&mut self, domid: u16) -> Result<(), XsError> {
        if domid == 0 {
            return Err(XsError::Invalid);
        }
        if self.connections.contains_key(&domid) {
            return Err(XsError::IsConnected);
        }
        self.connections.insert(domid, Connection::default());
        self.fire_special(INTRODUCE_DOMAIN);
        Ok(())
    }

    /// Drops `domid`'s connection with its watches, transactions and queued output,
    /// and fires `@releaseDomain`. Leaves its nodes (see [`nodes::remove_domain`]).
    pub fn release(&mut self, domid: u16) {
        if domid != 0 && self.connections.remove(&domid).is_some() {
            self.fire_special(RELEASE_DOMAIN);
        }
    }

    /// Whether `domid` has a connection (dom0 always has).
    pub fn is_introduced(&self, domid: u16) -> bool {
        self.connections.contains_key(&domid)
    }

    /// Why `domid`'s connection broke, if it did.
    pub fn broken_reason(&self, domid: u16) -> Option<BrokenReason> {
        self.connections.get(&domid).and_then(|connection| connection.broken)
    }

    /// Watch events dropped for `domid` because its output queue was full.
    pub fn dropped_events(&self, domid: u16) -> u64 {
        self.connections.get(&domid).map_or(0, |connection| connection.dropped_events)
    }

    /// Serves `domid`'s ring: writes queued output, handles up to
    /// [`MESSAGES_PER_SERVICE`] complete requests (fewer while the output queue is over
    /// its bound), writes what they produced. Unknown or broken connections: nothing.
    pub fn service_ring(&mut self, domid: u16, ring: &mut dyn SharedPage) -> RingService {
        let mut service = RingService::default();
        let limit = self.output_limit(domid);
        let mut handled = 0;
        loop {
            let Some(connection) = self.connections.get_mut(&domid).filter(|connection| connection.broken.is_none())
            else {
                return service;
            };
            match connection.write_output(ring) {
                Ok(wrote) => service.notify |= wrote,
                Err(reason) => return self.break_connection(domid, reason, service),
            }
            if handled == MESSAGES_PER_SERVICE || limit.is_some_and(|limit| connection.pending_bytes() >= limit) {
                let more = ring.read_u32(wire::RING_REQ_PROD_OFFSET) != ring.read_u32(wire::RING_REQ_CONS_OFFSET);
                service.more_requests = more && handled == MESSAGES_PER_SERVICE;
                return service;
            }
            let read = match connection.read_request(ring) {
                Ok(read) => read,
                Err(reason) => return self.break_connection(domid, reason, service),
            };
            service.notify |= read.consumed;
            match read.message {
                Some((header, payload)) => {
                    self.handle_message(domid, header, &payload);
                    handled += 1;
                }
                None => {
                    // Ring drained; flush what the last request produced.
                    if let Some(connection) = self.connections.get_mut(&domid) {
                        match connection.write_output(ring) {
                            Ok(wrote) => service.notify |= wrote,
                            Err(reason) => return self.break_connection(domid, reason, service),
                        }
                    }
                    return service;
                }
            }
        }
    }

    fn break_connection(&mut self, domid: u16, reason: BrokenReason, mut service: RingService) -> RingService {
        if let Some(connection) = self.connections.get_mut(&domid) {
            connection.break_with(reason);
        }
        service.broken = Some(reason);
        service.more_requests = false;
        service
    }

    /// DomUs with queued output (replies not yet written, watch events caused by
    /// others): call [`Xenstore::service_ring`] for each.
    pub fn domains_with_output(&self) -> Vec<u16> {
        self.connections
            .iter()
            .filter(|(&domid, connection)| domid != 0 && connection.broken.is_none() && connection.has_output())
            .map(|(&domid, _)| domid)
            .collect()
    }

    /// Takes every message queued for `domid` (dom0's replies and watch events, or a
    /// domU's when no ring is used, as in tests).
    pub fn take_output(&mut self, domid: u16) -> Vec<(MessageHeader, Vec<u8>)> {
        self.connections.get_mut(&domid).map(Connection::take_output).unwrap_or_default()
    }

    /// Handles one request from `domid` (`header.len` is ignored; `payload` is the
    /// whole payload) and queues the reply and any watch events it causes.
    /// Requests from a domain without a connection, or a broken one, are dropped.
    pub fn handle_message(&mut self, domid: u16, header: MessageHeader, payload: &[u8]) {
        if self.connections.get(&domid).is_none_or(|connection| connection.broken.is_some()) {
            return;
        }
        let (message_type, outcome) = match self.dispatch(domid, &header, payload) {
            Ok(outcome) if outcome.reply.len() <= XENSTORE_PAYLOAD_MAX => (header.message_type, outcome),
            Ok(_) => (XS_ERROR, error_outcome(XsError::TooBig)),
            Err(error) => (XS_ERROR, error_outcome(error)),
        };
        if let Some(connection) = self.connections.get_mut(&domid) {
            let reply_header = MessageHeader {
                message_type,
                req_id: header.req_id,
                tx_id: header.tx_id,
                len: outcome.reply.len() as u32,
            };
            connection.queue(reply_header, &outcome.reply);
            if let Some((path, token)) = &outcome.initial_event {
                connection.queue_event(path, token, None);
            }
        }
        for change in &outcome.changes {
            self.fire(change);
        }
    }

    fn output_limit(&self, domid: u16) -> Option<usize> {
        (domid != 0).then_some(self.quotas.max_pending_output_bytes)
    }

    fn dispatch(&mut self, domid: u16, header: &MessageHeader, payload: &[u8]) -> Result<Outcome, XsError> {
        let privileged = domid == 0;
        let message_type = header.message_type;
        let privileged_only = [XS_CONTROL, XS_INTRODUCE, XS_RELEASE, XS_IS_DOMAIN_INTRODUCED, XS_RESUME, XS_SET_TARGET];
        if privileged_only.contains(&message_type) && !privileged {
            return Err(XsError::AccessDenied);
        }
        match message_type {
            XS_WATCH => return self.do_watch(domid, payload),
            XS_UNWATCH => return self.do_unwatch(domid, payload),
            _ => {}
        }
        // Every other request names a transaction or none (tx_id 0).
        if header.tx_id != 0
            && !self
                .connections
                .get(&domid)
                .is_some_and(|connection| connection.transactions.contains_key(&header.tx_id))
        {
            return Err(XsError::NotFound);
        }
        match message_type {
            XS_READ | XS_DIRECTORY | XS_DIRECTORY_PART | XS_GET_PERMS | XS_WRITE | XS_MKDIR | XS_RM | XS_SET_PERMS => {
                self.node_request(domid, header.tx_id, message_type, payload)
            }
            XS_GET_DOMAIN_PATH => {
                let target = parse_domid(one_argument(payload)?)?;
                Ok(Outcome::reply(nul_terminated(home_path(target).as_bytes())))
            }
            XS_TRANSACTION_START => self.do_transaction_start(domid, header.tx_id),
            XS_TRANSACTION_END => self.do_transaction_end(domid, header.tx_id, payload),
            XS_RESET_WATCHES => {
                if let Some(connection) = self.connections.get_mut(&domid) {
                    connection.watches.clear();
                    connection.transactions.clear();
                }
                Ok(Outcome::ok())
            }
            XS_IS_DOMAIN_INTRODUCED => {
                let target = parse_domid(one_argument(payload)?)?;
                let answer: &[u8] = if self.is_introduced(target) { b"T\0" } else { b"F\0" };
                Ok(Outcome::reply(Vec::from(answer)))
            }
            XS_INTRODUCE => {
                let arguments: Vec<&[u8]> = nul_strings(payload).collect();
                let target = parse_domid(arguments.first().ok_or(XsError::Invalid)?)?;
                if arguments.len() < 3 {
                    return Err(XsError::Invalid);
                }
                self.introduce(target)?;
                Ok(Outcome::ok())
            }
            XS_RELEASE => {
                let target = parse_domid(one_argument(payload)?)?;
                if target == 0 {
                    return Err(XsError::Invalid);
                }
                if !self.is_introduced(target) {
                    return Err(XsError::NotFound);
                }
                self.release(target);
                Ok(Outcome::ok())
            }
            _ => Err(XsError::NotImplemented),
        }
    }

    /// The requests that operate on nodes, in a transaction if `tx_id` names one.
    fn node_request(&mut self, domid: u16, tx_id: u32, message_type: u32, payload: &[u8]) -> Result<Outcome, XsError> {
        if message_type == XS_SET_PERMS {
            if let Some(special) = nul_strings(payload).next().and_then(special_path) {
                return self.set_special_perms(domid, special, payload);
            }
        }
        let Xenstore { tree, connections, quotas, .. } = self;
        let mut view;
        let store: &mut dyn Store = if tx_id == 0 {
            tree
        } else {
            let transaction = connections
                .get_mut(&domid)
                .and_then(|connection| connection.transactions.get_mut(&tx_id))
                .ok_or(XsError::NotFound)?;
            if domid != 0 && transaction.accessed_count() >= quotas.max_transaction_nodes {
                return Err(XsError::NoSpace);
            }
            view = TransactionView { tree: &*tree, transaction };
            &mut view
        };
        let mut outcome = node_operation(store, domid, message_type, payload, quotas)?;
        outcome.changes = store.defer(outcome.changes);
        Ok(outcome)
    }

    fn set_special_perms(&mut self, domid: u16, special: &'static str, payload: &[u8]) -> Result<Outcome, XsError> {
        let perms = parse_perms(payload)?;
        let current = self.special_perms.get(special).ok_or(XsError::Invalid)?;
        if !allows(current, domid, Need::WriteAndOwner) {
            return Err(XsError::AccessDenied);
        }
        self.special_perms.insert(special, perms);
        Ok(Outcome::ok())
    }

    fn do_watch(&mut self, domid: u16, payload: &[u8]) -> Result<Outcome, XsError> {
        let (raw_path, token) = two_strings(payload)?;
        let (path, relative) = match special_path(raw_path) {
            Some(special) => (String::from(special), false),
            None => {
                let checked = canonicalize(domid, raw_path)?;
                (checked.absolute, checked.relative)
            }
        };
        let max_watches = self.quotas.max_watches;
        let connection = self.connections.get_mut(&domid).ok_or(XsError::NotFound)?;
        if connection.watches.iter().any(|watch| watch.path == path && watch.token == token) {
            return Err(XsError::AlreadyExists);
        }
        if domid != 0 && connection.watches.len() >= max_watches {
            return Err(XsError::TooBig);
        }
        let seen = as_seen_by(&path, domid, relative);
        connection.watches.push(Watch { path, token: Vec::from(token), relative });
        Ok(Outcome { initial_event: Some((seen, Vec::from(token))), ..Outcome::ok() })
    }

    fn do_unwatch(&mut self, domid: u16, payload: &[u8]) -> Result<Outcome, XsError> {
        let (raw_path, token) = two_strings(payload)?;
        let path = match special_path(raw_path) {
            Some(special) => String::from(special),
            None => canonicalize(domid, raw_path)?.absolute,
        };
        let connection = self.connections.get_mut(&domid).ok_or(XsError::NotFound)?;
        let index = connection
            .watches
            .iter()
            .position(|watch| watch.path == path && watch.token == token)
            .ok_or(XsError::NotFound)?;
        connection.watches.remove(index);
        Ok(Outcome::ok())
    }

    fn do_transaction_start(&mut self, domid: u16, tx_id: u32) -> Result<Outcome, XsError> {
        if tx_id != 0 {
            return Err(XsError::Busy);
        }
        let max_transactions = self.quotas.max_transactions;
        let connection = self.connections.get_mut(&domid).ok_or(XsError::NotFound)?;
        if domid != 0 && connection.transactions.len() >= max_transactions {
            return Err(XsError::NoSpace);
        }
        let mut id = self.next_transaction_id;
        while id == 0 || connection.transactions.contains_key(&id) {
            id = id.wrapping_add(1);
        }
        self.next_transaction_id = id.wrapping_add(1);
        connection.transactions.insert(id, Transaction::default());
        Ok(Outcome::reply(nul_terminated(format!("{id}").as_bytes())))
    }

    fn do_transaction_end(&mut self, domid: u16, tx_id: u32, payload: &[u8]) -> Result<Outcome, XsError> {
        let commit = match one_argument(payload)? {
            b"T" => true,
            b"F" => false,
            _ => return Err(XsError::Invalid),
        };
        let connection = self.connections.get_mut(&domid).ok_or(XsError::NotFound)?;
        let transaction = connection.transactions.remove(&tx_id).ok_or(XsError::NotFound)?;
        if !commit {
            return Ok(Outcome::ok());
        }
        if transaction.conflicts_with(&self.tree) {
            return Err(XsError::Again);
        }
        let changes = transaction.commit(&mut self.tree);
        Ok(Outcome { changes, ..Outcome::ok() })
    }

    /// Queues the events `change` causes on every connection whose watches match and
    /// which may read the node.
    fn fire(&mut self, change: &Change) {
        let special = self.special_perms.get(change.path.as_str());
        for (&watcher, connection) in self.connections.iter_mut() {
            if connection.broken.is_some() {
                continue;
            }
            let visible = match special {
                Some(perms) => allows(perms, watcher, Need::Read),
                None => {
                    allows(&change.perms, watcher, Need::Read)
                        || (!change.old_perms.is_empty() && allows(&change.old_perms, watcher, Need::Read))
                }
            };
            if !visible {
                continue;
            }
            let events: Vec<(String, Vec<u8>)> = connection
                .watches
                .iter()
                .filter(|watch| {
                    if change.exact {
                        watch.path == change.path
                    } else {
                        !watch.path.starts_with('@') && is_at_or_below(&change.path, &watch.path)
                    }
                })
                .map(|watch| (as_seen_by(&change.path, watcher, watch.relative), watch.token.clone()))
                .collect();
            let limit = (watcher != 0).then_some(self.quotas.max_pending_output_bytes);
            for (path, token) in events {
                connection.queue_event(&path, &token, limit);
            }
        }
    }

    fn fire_special(&mut self, special: &'static str) {
        let change = Change { path: String::from(special), exact: true, perms: Vec::new(), old_perms: Vec::new() };
        self.fire(&change);
    }

    fn fire_all(&mut self, changes: &[Change]) {
        for change in changes {
            self.fire(change);
        }
    }

    // ---- dom0's (privileged) operations, for the toolstack, backends and shell. ----
    // Paths may be absolute or relative to /local/domain/0. Each fires watches.

    /// The value of a node.
    pub fn read(&self, path: &str) -> Result<Vec<u8>, XsError> {
        let path = canonicalize(0, path.as_bytes())?;
        self.tree.get(&path.absolute).map(|node| node.value.clone()).ok_or(XsError::NotFound)
    }

    /// Sets a node's value, creating it and missing parents (inheriting permissions).
    pub fn write(&mut self, path: &str, value: &[u8]) -> Result<(), XsError> {
        let path = canonicalize(0, path.as_bytes())?;
        let change = tree::write(&mut self.tree, 0, &path.absolute, value, &self.quotas)?;
        self.fire(&change);
        Ok(())
    }

    /// Creates an empty node (and missing parents) unless it exists.
    pub fn mkdir(&mut self, path: &str) -> Result<(), XsError> {
        let path = canonicalize(0, path.as_bytes())?;
        let change = tree::mkdir(&mut self.tree, 0, &path.absolute, &self.quotas)?;
        self.fire_all(change.as_slice());
        Ok(())
    }

    /// Removes a node and everything below it. A missing node whose parent exists is
    /// not an error.
    pub fn rm(&mut self, path: &str) -> Result<(), XsError> {
        let path = canonicalize(0, path.as_bytes())?;
        let changes = tree::rm(&mut self.tree, 0, &path.absolute)?;
        self.fire_all(&changes);
        Ok(())
    }

    /// The names of a node's children, in creation order.
    pub fn directory(&self, path: &str) -> Result<Vec<String>, XsError> {
        let path = canonicalize(0, path.as_bytes())?;
        self.tree.get(&path.absolute).map(|node| node.children.clone()).ok_or(XsError::NotFound)
    }

    /// Replaces a node's permission list (first entry: owner and default).
    pub fn set_perms(&mut self, path: &str, perms: &[Permission]) -> Result<(), XsError> {
        let path = canonicalize(0, path.as_bytes())?;
        let change = tree::set_perms(&mut self.tree, 0, &path.absolute, perms, &self.quotas)?;
        self.fire(&change);
        Ok(())
    }

    /// A node's permission list.
    pub fn get_perms(&self, path: &str) -> Result<Vec<Permission>, XsError> {
        let path = canonicalize(0, path.as_bytes())?;
        self.tree.get(&path.absolute).map(|node| node.perms.clone()).ok_or(XsError::NotFound)
    }

    /// Registers a dom0 watch; its events are queued for dom0 ([`Xenstore::take_output`]
    /// with domid 0), the first one at once.
    pub fn watch(&mut self, path: &str, token: &str) -> Result<(), XsError> {
        let payload = [path.as_bytes(), b"\0", token.as_bytes(), b"\0"].concat();
        let outcome = self.do_watch(0, &payload)?;
        if let (Some((path, token)), Some(connection)) = (outcome.initial_event, self.connections.get_mut(&0)) {
            connection.queue_event(&path, &token, None);
        }
        Ok(())
    }

    /// Removes a dom0 watch.
    pub fn unwatch(&mut self, path: &str, token: &str) -> Result<(), XsError> {
        let payload = [path.as_bytes(), b"\0", token.as_bytes(), b"\0"].concat();
        self.do_unwatch(0, &payload).map(|_| ())
    }

    /// Number of nodes in the tree.
    pub fn node_count(&self) -> usize {
        self.tree.len()
    }
}

/// The node requests, on the live tree or a transaction's view.
fn node_operation(
    store: &mut dyn Store,
    domid: u16,
    message_type: u32,
    payload: &[u8],
    quotas: &Quotas,
) -> Result<Outcome, XsError> {
    let single_path = |payload: &[u8]| canonicalize(domid, one_argument(payload)?).map(|path| path.absolute);
    match message_type {
        XS_READ => Ok(Outcome::reply(tree::read(store, domid, &single_path(payload)?)?)),
        XS_DIRECTORY => {
            let (children, _) = tree::directory(store, domid, &single_path(payload)?)?;
            Ok(Outcome::reply(children_bytes(&children)))
        }
        XS_DIRECTORY_PART => {
            let (raw_path, offset) = two_strings(payload)?;
            let path = canonicalize(domid, raw_path)?;
            let offset = parse_decimal(offset).ok_or(XsError::Invalid)?;
            let (children, generation) = tree::directory(store, domid, &path.absolute)?;
            Ok(Outcome::reply(directory_part(&children_bytes(&children), generation, offset)))
        }
        XS_GET_PERMS => {
            let perms = tree::get_perms(store, domid, &single_path(payload)?)?;
            let mut reply = Vec::new();
            for entry in perms {
                reply.extend_from_slice(format!("{entry}").as_bytes());
                reply.push(0);
            }
            Ok(Outcome::reply(reply))
        }
        XS_WRITE => {
            let split = payload.iter().position(|&byte| byte == 0).ok_or(XsError::Invalid)?;
            let (raw_path, value) = (payload.get(..split).unwrap_or(&[]), payload.get(split + 1..).unwrap_or(&[]));
            let path = canonicalize(domid, raw_path)?;
            let change = tree::write(store, domid, &path.absolute, value, quotas)?;
            Ok(Outcome { changes: vec![change], ..Outcome::ok() })
        }
        XS_MKDIR => {
            let change = tree::mkdir(store, domid, &single_path(payload)?, quotas)?;
            Ok(Outcome { changes: change.into_iter().collect(), ..Outcome::ok() })
        }
        XS_RM => {
            let path = single_path(payload)?;
            if path == "/" {
                return Err(XsError::Invalid);
            }
            let changes = tree::rm(store, domid, &path)?;
            Ok(Outcome { changes, ..Outcome::ok() })
        }
        XS_SET_PERMS => {
            let raw_path = nul_strings(payload).next().ok_or(XsError::Invalid)?;
            let path = canonicalize(domid, raw_path)?;
            let perms = parse_perms(payload)?;
            let change = tree::set_perms(store, domid, &path.absolute, &perms, quotas)?;
            Ok(Outcome { changes: vec![change], ..Outcome::ok() })
        }
        _ => Err(XsError::NotImplemented),
    }
}

/// DIRECTORY_PART's reply (Xen's `send_directory_part`): the node's generation as
/// decimal + NUL, then whole child entries from byte `offset` of the child list that
/// fit, then one more NUL if the list ends there.
fn directory_part(children: &[u8], generation: u64, offset: usize) -> Vec<u8> {
    let mut reply = nul_terminated(format!("{generation}").as_bytes());
    let rest = children.get(offset..).unwrap_or(&[]);
    if rest.is_empty() {
        reply.push(0);
        return reply;
    }
    let room = XENSTORE_PAYLOAD_MAX - reply.len() - 1;
    let mut taken = 0;
    for entry in rest.split_inclusive(|&byte| byte == 0) {
        if taken + entry.len() > room {
            break;
        }
        taken += entry.len();
    }
    reply.extend_from_slice(rest.get(..taken).unwrap_or(&[]));
    if taken == rest.len() {
        reply.push(0);
    }
    reply
}

fn children_bytes(children: &[String]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for child in children {
        bytes.extend_from_slice(child.as_bytes());
        bytes.push(0);
    }
    bytes
}

fn error_outcome(error: XsError) -> Outcome {
    Outcome::reply(nul_terminated(error.errno_name().as_bytes()))
}

fn nul_terminated(text: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(text.len() + 1);
    bytes.extend_from_slice(text);
    bytes.push(0);
    bytes
}

/// A payload of exactly two NUL-terminated strings.
fn two_strings(payload: &[u8]) -> Result<(&[u8], &[u8]), XsError> {
    if payload.last() != Some(&0) {
        return Err(XsError::Invalid);
    }
    let mut strings = nul_strings(payload);
    match (strings.next(), strings.next(), strings.next()) {
        (Some(first), Some(second), None) => Ok((first, second)),
        _ => Err(XsError::Invalid),
    }
}

/// The permission entries of a SET_PERMS payload (after the path); at least one.
fn parse_perms(payload: &[u8]) -> Result<Vec<Permission>, XsError> {
    let perms: Vec<Permission> = nul_strings(payload).skip(1).map(Permission::parse).collect::<Result<_, _>>()?;
    if perms.is_empty() {
        return Err(XsError::Invalid);
    }
    Ok(perms)
}

fn parse_decimal(text: &[u8]) -> Option<usize> {
    if text.is_empty() || text.len() > 9 || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(text.iter().fold(0usize, |value, &digit| value * 10 + usize::from(digit - b'0')))
}

fn parse_domid(text: &[u8]) -> Result<u16, XsError> {
    parse_decimal(text).and_then(|value| u16::try_from(value).ok()).ok_or(XsError::Invalid)
}

/// The fuzz target's body (builtin-dom0/fuzz/fuzz_targets/xenstore_wire.rs), shared
/// with a host test. `data` is a stream of messages (16-byte header, then up to `len`
/// payload bytes, `len` clamped to what is left) from domU 3; the first byte picks the
/// chunk size with which the same bytes are then fed to domU 4 through a ring. Nothing
/// may panic, every reply must have the request's type or ERROR and fit the payload
/// limit, and a broken ring must leave the other domain served.
/// Panics (by `assert!`) only when an invariant is broken — for fuzzing and tests.
#[doc(hidden)]
pub fn fuzz_one(data: &[u8]) {
    use crate::shared_page::TestPage;

    let mut store = Xenstore::new();
    for domid in [3u16, 4] {
        let _ = store.introduce(domid);
        let domain = nodes::DomainNodes {
            domid,
            name: format!("guest{domid}"),
            uuid: [domid as u8; 16],
            memory_kib: 524_288,
            vcpus: 2,
            console: None,
        };
        assert!(nodes::populate_domain(&mut store, &domain).is_ok());
    }
    let _ = store.take_output(3);

    // 1. Message level.
    let mut rest = data;
    while let Some((header_bytes, after)) = rest.split_first_chunk::<HEADER_SIZE>() {
        let header = MessageHeader::from_bytes(header_bytes);
        let length = (header.len as usize).min(after.len()).min(XENSTORE_PAYLOAD_MAX);
        let (payload, after) = after.split_at(length);
        store.handle_message(3, header, payload);
        for (reply, reply_payload) in store.take_output(3) {
            assert!(reply_payload.len() <= XENSTORE_PAYLOAD_MAX);
            assert_eq!(reply.len as usize, reply_payload.len());
            let expected = [header.message_type, XS_ERROR, XS_WATCH_EVENT];
            assert!(
                expected.contains(&reply.message_type),
                "reply type {} to {}",
                reply.message_type,
                header.message_type
            );
        }
        rest = after;
    }

    // 2. Ring level: the same bytes in chunks, the guest consuming every reply.
    let chunk = usize::from(data.first().copied().unwrap_or(1)).max(1);
    let mut page = TestPage::default();
    for piece in data.chunks(chunk) {
        let mut offset = 0;
        while offset < piece.len() {
            let prod = page.read_u32(wire::RING_REQ_PROD_OFFSET);
            let cons = page.read_u32(wire::RING_REQ_CONS_OFFSET);
            let room = (XENSTORE_RING_SIZE - prod.wrapping_sub(cons).min(XENSTORE_RING_SIZE)) as usize;
            let count = room.min(piece.len() - offset);
            for (index, &byte) in piece.iter().skip(offset).take(count).enumerate() {
                let at = (prod.wrapping_add(index as u32) % XENSTORE_RING_SIZE) as usize;
                page.write(wire::RING_REQ_OFFSET + at, &[byte]);
            }
            page.write_u32(wire::RING_REQ_PROD_OFFSET, prod.wrapping_add(count as u32));
            offset += count;
            let service = store.service_ring(4, &mut page);
            let rsp_prod = page.read_u32(wire::RING_RSP_PROD_OFFSET);
            page.write_u32(wire::RING_RSP_CONS_OFFSET, rsp_prod);
            if service.broken.is_some() || store.broken_reason(4).is_some() {
                // Another domain keeps working.
                let reply = store.read("/local/domain/3/name");
                assert_eq!(reply.as_deref(), Ok(&b"guest3"[..]));
                return;
            }
            if count == 0 && !service.notify {
                // The guest sent something the store keeps waiting on (backpressure).
                return;
            }
        }
    }
}

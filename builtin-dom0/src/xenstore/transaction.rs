//! Transactions: an overlay of changed nodes over the live tree, plus the generation
//! of every live node the transaction looked at, checked at commit.
//!
//! Why this shape (Xen's `xenstored_transaction.c` does the same): a transaction never
//! copies the tree. Reads fall through to the live tree and record the node's
//! generation (or its absence); writes go to the overlay. At TRANSACTION_END "T" the
//! transaction commits only if every recorded node is still exactly as it was seen —
//! otherwise some other connection changed something it depended on, and the guest
//! gets EAGAIN and retries (Linux's xenbus loops on EAGAIN). Watch events of the
//! transaction's changes are held until commit and dropped on abort.
//!
//! Invariant: every path in the overlay is also in the access record, so the commit
//! check covers everything the overlay would overwrite.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;

use super::tree::{Change, Node, Store, Tree};

/// One open transaction of a connection.
#[derive(Debug, Clone, Default)]
pub(crate) struct Transaction {
    /// Changed nodes: `Some` = written, `None` = removed.
    overlay: BTreeMap<String, Option<Node>>,
    /// Live generation of each node looked at (`None`: it did not exist).
    accessed: BTreeMap<String, Option<u64>>,
    /// Change of each domain's owned-node count the overlay would make.
    owned_delta: BTreeMap<u16, isize>,
    /// Watch events to fire at commit.
    changes: Vec<Change>,
}

impl Transaction {
    /// Number of distinct nodes touched (bounded by a quota).
    pub fn accessed_count(&self) -> usize {
        self.accessed.len()
    }

    /// Whether a node the transaction depends on changed since it looked.
    pub fn conflicts_with(&self, tree: &Tree) -> bool {
        self.accessed.iter().any(|(path, generation)| tree.get(path).map(|node| node.generation) != *generation)
    }

    /// Applies the overlay to the live tree; returns the changes to report.
    pub fn commit(self, tree: &mut Tree) -> Vec<Change> {
        for (path, entry) in self.overlay {
            match entry {
                Some(node) => tree.put(&path, node),
                None => tree.delete(&path),
            }
        }
        self.changes
    }

    fn record(&mut self, tree: &Tree, path: &str) {
        if !self.accessed.contains_key(path) {
            self.accessed.insert(String::from(path), tree.get(path).map(|node| node.generation));
        }
    }

    fn current_owner(&self, tree: &Tree, path: &str) -> Option<u16> {
        let current = match self.overlay.get(path) {
            Some(entry) => entry.as_ref(),
            None => tree.get(path),
        };
        current.and_then(|node| node.perms.first()).map(|entry| entry.domid)
    }

    fn adjust(&mut self, owner: Option<u16>, delta: isize) {
        if let Some(owner) = owner {
            *self.owned_delta.entry(owner).or_insert(0) += delta;
        }
    }
}

/// A transaction's view of the tree, for the node operations.
pub(crate) struct TransactionView<'a> {
    pub tree: &'a Tree,
    pub transaction: &'a mut Transaction,
}

impl Store for TransactionView<'_> {
    fn node(&mut self, path: &str) -> Option<Node> {
        if let Some(entry) = self.transaction.overlay.get(path) {
            return entry.clone();
        }
        self.transaction.record(self.tree, path);
        self.tree.get(path).cloned()
    }

    fn put(&mut self, path: &str, node: Node) {
        self.transaction.record(self.tree, path);
        let old_owner = self.transaction.current_owner(self.tree, path);
        self.transaction.adjust(old_owner, -1);
        self.transaction.adjust(node.perms.first().map(|entry| entry.domid), 1);
        self.transaction.overlay.insert(String::from(path), Some(node));
    }

    fn delete(&mut self, path: &str) {
        self.transaction.record(self.tree, path);
        let old_owner = self.transaction.current_owner(self.tree, path);
        self.transaction.adjust(old_owner, -1);
        self.transaction.overlay.insert(String::from(path), None);
    }

    fn owned_by(&self, domid: u16) -> usize {
        let delta = self.transaction.owned_delta.get(&domid).copied().unwrap_or(0);
        self.tree.owned_by(domid).saturating_add_signed(delta)
    }

    fn defer(&mut self, changes: Vec<Change>) -> Vec<Change> {
        self.transaction.changes.extend(changes);
        Vec::new()
    }
}

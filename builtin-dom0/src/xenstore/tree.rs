//! The node tree, node permissions, and the node operations (read, write, mkdir, rm,
//! directory, get/set permissions) with Xen's permission and quota rules.
//!
//! Why a [`Store`] trait: the same operation code runs on the live [`Tree`] and on a
//! transaction's overlay (`transaction.rs`), so a change inside a transaction is checked
//! exactly as one outside it.
//!
//! Permission semantics (`docs/misc/xenstore.txt`, xenstored's `perm_for_conn`): a
//! node's permission list is never empty; its first entry names the owner (who has all
//! rights) and gives the access of every domain not listed; later entries give the
//! access of one domain each. Domain 0 is privileged and bypasses every check. A node a
//! caller may not reach answers EACCES, and a missing node answers EACCES instead of
//! ENOENT when the closest existing ancestor does not grant the access asked for, so
//! errors reveal nothing about unreadable parts of the tree (`errno_from_parents`).
//! New nodes inherit their parent's list; when an unprivileged domain creates them it
//! becomes their owner (`construct_node`).
//!
//! Invariants: "/" always exists; every node but "/" has its parent, and appears once
//! in that parent's child list; [`Tree`]'s per-domain owned-node counts match the
//! owners in the tree.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use super::path::{base_name, child_path, parent};
use super::wire::XsError;
use super::Quotas;

/// The access a [`Permission`] entry grants (`XS_PERM_*`; wire letters n, r, w, b).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// `n`: nothing.
    None,
    /// `r`: read.
    Read,
    /// `w`: write.
    Write,
    /// `b`: read and write.
    ReadWrite,
}

impl Access {
    /// The wire letter.
    pub const fn letter(self) -> char {
        match self {
            Access::None => 'n',
            Access::Read => 'r',
            Access::Write => 'w',
            Access::ReadWrite => 'b',
        }
    }

    fn from_letter(letter: u8) -> Option<Access> {
        match letter {
            b'n' => Some(Access::None),
            b'r' => Some(Access::Read),
            b'w' => Some(Access::Write),
            b'b' => Some(Access::ReadWrite),
            _ => None,
        }
    }

    fn reads(self) -> bool {
        matches!(self, Access::Read | Access::ReadWrite)
    }

    fn writes(self) -> bool {
        matches!(self, Access::Write | Access::ReadWrite)
    }
}

/// One entry of a node's permission list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Permission {
    /// The domain the entry is about (for the first entry: the owner).
    pub domid: u16,
    /// What it grants (for the first entry: to every domain not listed).
    pub access: Access,
}

impl Permission {
    /// An entry.
    pub const fn new(domid: u16, access: Access) -> Permission {
        Permission { domid, access }
    }

    /// Parses the wire form, a letter and a decimal domain id: `r3`, `n0`.
    pub fn parse(text: &[u8]) -> Result<Permission, XsError> {
        let (&letter, digits) = text.split_first().ok_or(XsError::Invalid)?;
        let access = Access::from_letter(letter).ok_or(XsError::Invalid)?;
        if digits.is_empty() || digits.len() > 5 || !digits.iter().all(u8::is_ascii_digit) {
            return Err(XsError::Invalid);
        }
        let domid = digits.iter().try_fold(0u32, |value, &digit| Some(value * 10 + u32::from(digit - b'0')));
        let domid = domid.and_then(|value| u16::try_from(value).ok()).ok_or(XsError::Invalid)?;
        Ok(Permission { domid, access })
    }
}

/// The wire form: `r3`.
impl fmt::Display for Permission {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}{}", self.access.letter(), self.domid)
    }
}

/// What an operation needs on a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Need {
    Read,
    Write,
    /// Write access and ownership (SET_PERMS).
    WriteAndOwner,
}

/// Whether `domid` has `need` on a node with `perms`.
pub(crate) fn allows(perms: &[Permission], domid: u16, need: Need) -> bool {
    let Some(first) = perms.first() else {
        return domid == 0;
    };
    if domid == 0 || first.domid == domid {
        return true;
    }
    let access = perms.get(1..).unwrap_or(&[]).iter().find(|entry| entry.domid == domid).unwrap_or(first).access;
    match need {
        Need::Read => access.reads(),
        Need::Write => access.writes(),
        Need::WriteAndOwner => false,
    }
}

/// One node: value bytes, permission list, child names in creation order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Node {
    pub value: Vec<u8>,
    pub perms: Vec<Permission>,
    pub children: Vec<String>,
    /// Bumped on every change of the live node; transactions compare it at commit.
    pub generation: u64,
}

impl Node {
    fn owner(&self) -> Option<u16> {
        self.perms.first().map(|entry| entry.domid)
    }
}

/// A change to report to watches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Change {
    /// Absolute path of the changed node (or a special `@` path).
    pub path: String,
    /// Fire only watches on exactly this path (a removed descendant, a special path);
    /// otherwise fire watches on this path and its ancestors.
    pub exact: bool,
    /// Permissions deciding who may see the event; for SET_PERMS also the old ones.
    pub perms: Vec<Permission>,
    pub old_perms: Vec<Permission>,
}

/// Node access for the operations: the live tree, or a transaction's view of it.
pub(crate) trait Store {
    /// A copy of the node at `path` (transactions record the access).
    fn node(&mut self, path: &str) -> Option<Node>;
    /// Stores `node` at `path` (creating or replacing).
    fn put(&mut self, path: &str, node: Node);
    /// Removes the node at `path` (only the node; the caller fixes the parent).
    fn delete(&mut self, path: &str);
    /// How many nodes `domid` owns.
    fn owned_by(&self, domid: u16) -> usize;
    /// Takes the watch events of a finished operation: the live tree hands them back
    /// to be fired now, a transaction keeps them until commit.
    fn defer(&mut self, changes: Vec<Change>) -> Vec<Change>;
}

/// The live tree.
#[derive(Debug, Clone)]
pub(crate) struct Tree {
    nodes: BTreeMap<String, Node>,
    owned: BTreeMap<u16, usize>,
    next_generation: u64,
}

impl Tree {
    /// A tree holding only "/", owned by dom0, no access for others.
    pub fn new() -> Tree {
        let mut tree = Tree { nodes: BTreeMap::new(), owned: BTreeMap::new(), next_generation: 1 };
        tree.put(
            "/",
            Node {
                value: Vec::new(),
                perms: vec![Permission::new(0, Access::None)],
                children: Vec::new(),
                generation: 0,
            },
        );
        tree
    }

    /// The live node at `path`.
    pub fn get(&self, path: &str) -> Option<&Node> {
        self.nodes.get(path)
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    fn count(&mut self, owner: Option<u16>, delta: isize) {
        if let Some(owner) = owner {
            let count = self.owned.entry(owner).or_insert(0);
            *count = count.saturating_add_signed(delta);
            // A domain that owns nothing has no entry: ids are not reused for long, so
            // keeping zeros would grow the map with every domain ever created.
            if *count == 0 {
                self.owned.remove(&owner);
            }
        }
    }
}

impl Store for Tree {
    fn node(&mut self, path: &str) -> Option<Node> {
        self.nodes.get(path).cloned()
    }

    fn put(&mut self, path: &str, mut node: Node) {
        node.generation = self.next_generation;
        self.next_generation += 1;
        let new_owner = node.owner();
        let old_owner = self.nodes.insert(String::from(path), node).map(|old| old.owner());
        if let Some(old_owner) = old_owner {
            self.count(old_owner, -1);
        }
        self.count(new_owner, 1);
    }

    fn delete(&mut self, path: &str) {
        if let Some(old) = self.nodes.remove(path) {
            self.count(old.owner(), -1);
        }
    }

    fn owned_by(&self, domid: u16) -> usize {
        self.owned.get(&domid).copied().unwrap_or(0)
    }

    fn defer(&mut self, changes: Vec<Change>) -> Vec<Change> {
        changes
    }
}

/// The node at `path` if `caller` has `need` on it; else EACCES, or ENOENT/EACCES for
/// a missing node depending on the closest existing ancestor.
pub(crate) fn get_node(store: &mut dyn Store, caller: u16, path: &str, need: Need) -> Result<Node, XsError> {
    match store.node(path) {
        Some(node) if allows(&node.perms, caller, need) => Ok(node),
        Some(_) => Err(XsError::AccessDenied),
        None => {
            let mut ancestor = parent(path);
            while let Some(candidate) = ancestor {
                if let Some(node) = store.node(candidate) {
                    let need = if need == Need::WriteAndOwner { Need::Write } else { need };
                    return Err(if allows(&node.perms, caller, need) {
                        XsError::NotFound
                    } else {
                        XsError::AccessDenied
                    });
                }
                ancestor = parent(candidate);
            }
            Err(XsError::NotFound)
        }
    }
}

/// READ.
pub(crate) fn read(store: &mut dyn Store, caller: u16, path: &str) -> Result<Vec<u8>, XsError> {
    get_node(store, caller, path, Need::Read).map(|node| node.value)
}

/// DIRECTORY.
pub(crate) fn directory(store: &mut dyn Store, caller: u16, path: &str) -> Result<(Vec<String>, u64), XsError> {
    get_node(store, caller, path, Need::Read).map(|node| (node.children, node.generation))
}

/// GET_PERMS.
pub(crate) fn get_perms(store: &mut dyn Store, caller: u16, path: &str) -> Result<Vec<Permission>, XsError> {
    get_node(store, caller, path, Need::Read).map(|node| node.perms)
}

/// WRITE: replaces the value, creating the node and missing parents.
pub(crate) fn write(
    store: &mut dyn Store,
    caller: u16,
    path: &str,
    value: &[u8],
    quotas: &Quotas,
) -> Result<Change, XsError> {
    if caller != 0 && value.len() > quotas.max_value_bytes {
        return Err(XsError::NoSpace);
    }
    match get_node(store, caller, path, Need::Write) {
        Ok(mut node) => {
            node.value = Vec::from(value);
            let perms = node.perms.clone();
            store.put(path, node);
            Ok(Change { path: String::from(path), exact: false, perms, old_perms: Vec::new() })
        }
        Err(XsError::NotFound) => create(store, caller, path, value, quotas),
        Err(error) => Err(error),
    }
}

/// MKDIR: creates an empty node (and missing parents); nothing if it exists.
pub(crate) fn mkdir(
    store: &mut dyn Store,
    caller: u16,
    path: &str,
    quotas: &Quotas,
) -> Result<Option<Change>, XsError> {
    match get_node(store, caller, path, Need::Write) {
        Ok(_) => Ok(None),
        Err(XsError::NotFound) => create(store, caller, path, &[], quotas).map(Some),
        Err(error) => Err(error),
    }
}

/// Creates `path` and its missing ancestors. The caller has checked write access on
/// the closest existing ancestor (that is what made [`get_node`] answer ENOENT).
fn create(store: &mut dyn Store, caller: u16, path: &str, value: &[u8], quotas: &Quotas) -> Result<Change, XsError> {
    let mut missing: Vec<&str> = vec![path];
    let mut existing = None;
    let mut cursor = parent(path);
    while let Some(candidate) = cursor {
        if let Some(node) = store.node(candidate) {
            existing = Some((candidate, node));
            break;
        }
        missing.push(candidate);
        cursor = parent(candidate);
    }
    let (mut parent_path, mut parent_node) = existing.ok_or(XsError::NotFound)?;
    if caller != 0 && store.owned_by(caller).saturating_add(missing.len()) > quotas.max_nodes_per_domain {
        return Err(XsError::NoSpace);
    }
    for &new_path in missing.iter().rev() {
        let mut perms = parent_node.perms.clone();
        if caller != 0 {
            if let Some(first) = perms.first_mut() {
                first.domid = caller;
            }
        }
        parent_node.children.push(String::from(base_name(new_path)));
        store.put(parent_path, parent_node);
        let node_value = if new_path == path { Vec::from(value) } else { Vec::new() };
        parent_node = Node { value: node_value, perms, children: Vec::new(), generation: 0 };
        parent_path = new_path;
    }
    let perms = parent_node.perms.clone();
    store.put(path, parent_node);
    Ok(Change { path: String::from(path), exact: false, perms, old_perms: Vec::new() })
}

/// RM: removes the node and everything below it. Removing a missing node whose parent
/// exists succeeds with no change (Xen's `do_rm`).
pub(crate) fn rm(store: &mut dyn Store, caller: u16, path: &str) -> Result<Vec<Change>, XsError> {
    let node = match get_node(store, caller, path, Need::Write) {
        Ok(node) => node,
        Err(XsError::NotFound) => {
            return match parent(path).and_then(|parent_path| store.node(parent_path)) {
                Some(_) => Ok(Vec::new()),
                None => Err(XsError::NotFound),
            };
        }
        Err(error) => return Err(error),
    };
    let parent_path = parent(path).ok_or(XsError::Invalid)?;
    let mut parent_node = store.node(parent_path).ok_or(XsError::Invalid)?;
    let mut changes =
        vec![Change { path: String::from(path), exact: false, perms: node.perms.clone(), old_perms: Vec::new() }];
    // Depth-first over the subtree with an explicit stack (no recursion on guest data).
    let mut stack: Vec<(String, Node)> = vec![(String::from(path), node)];
    let mut removed: Vec<String> = Vec::new();
    while let Some((node_path, node)) = stack.pop() {
        for child in &node.children {
            let child_path = child_path(&node_path, child);
            if let Some(child_node) = store.node(&child_path) {
                changes.push(Change {
                    path: child_path.clone(),
                    exact: true,
                    perms: child_node.perms.clone(),
                    old_perms: Vec::new(),
                });
                stack.push((child_path, child_node));
            }
        }
        removed.push(node_path);
    }
    for removed_path in &removed {
        store.delete(removed_path);
    }
    let name = base_name(path);
    parent_node.children.retain(|child| child != name);
    store.put(parent_path, parent_node);
    Ok(changes)
}

/// SET_PERMS on a node.
pub(crate) fn set_perms(
    store: &mut dyn Store,
    caller: u16,
    path: &str,
    perms: &[Permission],
    quotas: &Quotas,
) -> Result<Change, XsError> {
    if perms.is_empty() {
        return Err(XsError::Invalid);
    }
    if caller != 0 && perms.len() > quotas.max_permissions_per_node {
        return Err(XsError::NoSpace);
    }
    let mut node = get_node(store, caller, path, Need::WriteAndOwner)?;
    if caller != 0 && perms.first().map(|entry| entry.domid) != node.owner() {
        return Err(XsError::NotPermitted);
    }
    let old_perms = core::mem::replace(&mut node.perms, Vec::from(perms));
    store.put(path, node);
    Ok(Change { path: String::from(path), exact: false, perms: Vec::from(perms), old_perms })
}

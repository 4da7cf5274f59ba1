//! Node paths: the one place a path from a guest or the operator is checked and made
//! absolute.
//!
//! Rules (Xen's `is_valid_nodename` and `canonicalize`, `docs/misc/xenstore.txt`):
//! an absolute path starts with `/`, is at most [`XENSTORE_ABS_PATH_MAX`] bytes, has
//! no `//` and no trailing `/` (except the root `/`), and uses only `A-Z a-z 0-9 - / _ @`.
//! A relative path (no leading `/`, at most [`XENSTORE_REL_PATH_MAX`] bytes) is relative
//! to the connection's home, `/local/domain/<domid>`. The special watch paths
//! `@introduceDomain` and `@releaseDomain` are not nodes; only WATCH, UNWATCH and
//! SET_PERMS accept them ([`special_path`]).
//!
//! Invariant: a [`NodePath`] only exists for a valid absolute path.

use alloc::format;
use alloc::string::String;

use super::wire::{XsError, XENSTORE_ABS_PATH_MAX, XENSTORE_REL_PATH_MAX};

/// The watch path fired when a domain is introduced.
pub const INTRODUCE_DOMAIN: &str = "@introduceDomain";
/// The watch path fired when a domain is released.
pub const RELEASE_DOMAIN: &str = "@releaseDomain";

/// A checked path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NodePath {
    /// The valid absolute path.
    pub absolute: String,
    /// Whether the caller spelled it relative to its home.
    pub relative: bool,
}

/// `/local/domain/<domid>`, the home relative paths are resolved against.
pub(crate) fn home_path(domid: u16) -> String {
    format!("/local/domain/{domid}")
}

/// Checks `raw` (from a message or the operator) and resolves it against `domid`'s home.
pub(crate) fn canonicalize(domid: u16, raw: &[u8]) -> Result<NodePath, XsError> {
    let text = core::str::from_utf8(raw).map_err(|_| XsError::Invalid)?;
    if text.starts_with('@') {
        // Xen leaves `@...` alone and it then fails the absolute-path check.
        return Err(XsError::Invalid);
    }
    if text.starts_with('/') {
        if !is_valid_absolute(text) {
            return Err(XsError::Invalid);
        }
        return Ok(NodePath { absolute: String::from(text), relative: false });
    }
    if text.len() > XENSTORE_REL_PATH_MAX {
        return Err(XsError::Invalid);
    }
    let absolute = format!("{}/{text}", home_path(domid));
    if !is_valid_absolute(&absolute) {
        return Err(XsError::Invalid);
    }
    Ok(NodePath { absolute, relative: true })
}

/// The special watch path `raw` names, if it is one.
pub(crate) fn special_path(raw: &[u8]) -> Option<&'static str> {
    [INTRODUCE_DOMAIN, RELEASE_DOMAIN].into_iter().find(|special| special.as_bytes() == raw)
}

/// Xen's `is_valid_nodename`.
pub(crate) fn is_valid_absolute(path: &str) -> bool {
    path.starts_with('/')
        && (path == "/" || !path.ends_with('/'))
        && !path.contains("//")
        && path.len() <= XENSTORE_ABS_PATH_MAX
        && path.bytes().all(|byte| byte.is_ascii_alphanumeric() || b"-/_@".contains(&byte))
}

/// The parent of a valid absolute path; `None` for the root.
pub(crate) fn parent(path: &str) -> Option<&str> {
    if path == "/" {
        return None;
    }
    match path.rfind('/') {
        Some(0) => Some("/"),
        Some(slash) => path.get(..slash),
        None => None,
    }
}

/// The last component of a valid absolute path (`""` for the root).
pub(crate) fn base_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or("")
}

/// `parent`'s child `name`.
pub(crate) fn child_path(parent: &str, name: &str) -> String {
    if parent == "/" {
        format!("/{name}")
    } else {
        format!("{parent}/{name}")
    }
}

/// Whether `path` is `ancestor` or below it.
pub(crate) fn is_at_or_below(path: &str, ancestor: &str) -> bool {
    ancestor == "/"
        || path == ancestor
        || (path.len() > ancestor.len()
            && path.starts_with(ancestor)
            && path.as_bytes().get(ancestor.len()) == Some(&b'/'))
}

/// How `watcher` (whose watch was given relative if `relative`) sees an absolute
/// `path`: relative to its home when the watch was relative and the path is below the
/// home, else absolute (Xen's `add_event`).
pub(crate) fn as_seen_by(path: &str, watcher: u16, relative: bool) -> String {
    if relative && !path.starts_with('@') {
        let home = home_path(watcher);
        if let Some(rest) = path.strip_prefix(home.as_str()).and_then(|rest| rest.strip_prefix('/')) {
            return String::from(rest);
        }
    }
    String::from(path)
}

//! The xenstore wire format: message types, the 16-byte header, the errno names sent
//! in ERROR replies, the ring page layout, and [`XsError`], the one error type every
//! operation returns.
//!
//! Facts from Xen's `xen/include/public/io/xs_wire.h` and `docs/misc/xenstore.txt`
//! (pvh-abi.md §6.1–6.2). Names keep the header's spelling (`XS_READ`, `XENSTORE_RING_SIZE`)
//! so they can be grepped against it. Invariant: every `XsError` maps to one of the
//! errno names Linux's xenbus knows (`xsd_errors[]`), so an ERROR reply is always one
//! the guest can decode.

use core::fmt;

/// `struct xsd_sockmsg`: the header in front of every message, all fields
/// little-endian `u32` (x86 byte order), 16 bytes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MessageHeader {
    /// `XS_*` message type. Replies carry the request's type, or [`XS_ERROR`].
    pub message_type: u32,
    /// Chosen by the requester, echoed in the reply. 0 in watch events.
    pub req_id: u32,
    /// Transaction the request belongs to; 0 = none. Echoed in the reply.
    pub tx_id: u32,
    /// Payload length in bytes, at most [`XENSTORE_PAYLOAD_MAX`].
    pub len: u32,
}

/// Size of [`MessageHeader`] on the wire.
pub const HEADER_SIZE: usize = 16;

impl MessageHeader {
    /// Decodes the 16 header bytes.
    pub fn from_bytes(bytes: &[u8; HEADER_SIZE]) -> MessageHeader {
        let word = |index: usize| {
            let mut value = [0u8; 4];
            value.copy_from_slice(&bytes[index * 4..index * 4 + 4]);
            u32::from_le_bytes(value)
        };
        MessageHeader { message_type: word(0), req_id: word(1), tx_id: word(2), len: word(3) }
    }

    /// Encodes the header.
    pub fn to_bytes(&self) -> [u8; HEADER_SIZE] {
        let mut bytes = [0u8; HEADER_SIZE];
        for (index, value) in [self.message_type, self.req_id, self.tx_id, self.len].into_iter().enumerate() {
            bytes[index * 4..index * 4 + 4].copy_from_slice(&value.to_le_bytes());
        }
        bytes
    }
}

// Message types (`enum xsd_sockmsg_type`).
pub const XS_CONTROL: u32 = 0;
pub const XS_DIRECTORY: u32 = 1;
pub const XS_READ: u32 = 2;
pub const XS_GET_PERMS: u32 = 3;
pub const XS_WATCH: u32 = 4;
pub const XS_UNWATCH: u32 = 5;
pub const XS_TRANSACTION_START: u32 = 6;
pub const XS_TRANSACTION_END: u32 = 7;
pub const XS_INTRODUCE: u32 = 8;
pub const XS_RELEASE: u32 = 9;
pub const XS_GET_DOMAIN_PATH: u32 = 10;
pub const XS_WRITE: u32 = 11;
pub const XS_MKDIR: u32 = 12;
pub const XS_RM: u32 = 13;
pub const XS_SET_PERMS: u32 = 14;
pub const XS_WATCH_EVENT: u32 = 15;
pub const XS_ERROR: u32 = 16;
pub const XS_IS_DOMAIN_INTRODUCED: u32 = 17;
pub const XS_RESUME: u32 = 18;
pub const XS_SET_TARGET: u32 = 19;
pub const XS_RESET_WATCHES: u32 = 21;
pub const XS_DIRECTORY_PART: u32 = 22;

/// Largest payload of one message (`XENSTORE_PAYLOAD_MAX`).
pub const XENSTORE_PAYLOAD_MAX: usize = 4096;
/// Longest absolute path (`XENSTORE_ABS_PATH_MAX`).
pub const XENSTORE_ABS_PATH_MAX: usize = 3072;
/// Longest relative path (`XENSTORE_REL_PATH_MAX`).
pub const XENSTORE_REL_PATH_MAX: usize = 2048;

// `struct xenstore_domain_interface` (the ring page), byte offsets.
/// Size of each of the two byte rings (`XENSTORE_RING_SIZE`).
pub const XENSTORE_RING_SIZE: u32 = 1024;
/// `char req[1024]`: guest → server.
pub const RING_REQ_OFFSET: usize = 0;
/// `char rsp[1024]`: server → guest.
pub const RING_RSP_OFFSET: usize = 1024;
/// `XENSTORE_RING_IDX req_cons`, written by the server.
pub const RING_REQ_CONS_OFFSET: usize = 2048;
/// `XENSTORE_RING_IDX req_prod`, written by the guest.
pub const RING_REQ_PROD_OFFSET: usize = 2052;
/// `XENSTORE_RING_IDX rsp_cons`, written by the guest.
pub const RING_RSP_CONS_OFFSET: usize = 2056;
/// `XENSTORE_RING_IDX rsp_prod`, written by the server.
pub const RING_RSP_PROD_OFFSET: usize = 2060;
/// `uint32_t server_features` (left 0: no reconnection, no error field).
pub const RING_SERVER_FEATURES_OFFSET: usize = 2064;
/// `uint32_t connection` (0 = XENSTORE_CONNECTED).
pub const RING_CONNECTION_OFFSET: usize = 2068;
/// `uint32_t error`.
pub const RING_ERROR_OFFSET: usize = 2072;

/// Why an operation failed; sent to a guest as an ERROR reply carrying
/// [`XsError::errno_name`] + NUL. One variant per errno of Xen's `xsd_errors[]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XsError {
    /// `EINVAL`: malformed request, bad path, bad argument.
    Invalid,
    /// `EACCES`: the caller may not see or change the node.
    AccessDenied,
    /// `EEXIST`: already there (a duplicate watch).
    AlreadyExists,
    /// `EISDIR`.
    IsDirectory,
    /// `ENOENT`: no such node, watch or transaction.
    NotFound,
    /// `ENOMEM`.
    OutOfMemory,
    /// `ENOSPC`: a quota is exhausted (nodes, node size, transactions, permissions).
    NoSpace,
    /// `EIO`.
    Io,
    /// `ENOTEMPTY`.
    NotEmpty,
    /// `ENOSYS`: unknown or unsupported message type.
    NotImplemented,
    /// `EROFS`.
    ReadOnly,
    /// `EBUSY`: e.g. TRANSACTION_START inside a transaction.
    Busy,
    /// `EAGAIN`: a transaction conflicted; the guest retries it.
    Again,
    /// `EISCONN`: the domain is already introduced.
    IsConnected,
    /// `E2BIG`: a reply would exceed the payload limit, or too many watches.
    TooBig,
    /// `EPERM`: e.g. an unprivileged domain changing a node's owner.
    NotPermitted,
}

impl XsError {
    /// The errno name sent in an ERROR reply, e.g. `"EACCES"`.
    pub const fn errno_name(self) -> &'static str {
        match self {
            XsError::Invalid => "EINVAL",
            XsError::AccessDenied => "EACCES",
            XsError::AlreadyExists => "EEXIST",
            XsError::IsDirectory => "EISDIR",
            XsError::NotFound => "ENOENT",
            XsError::OutOfMemory => "ENOMEM",
            XsError::NoSpace => "ENOSPC",
            XsError::Io => "EIO",
            XsError::NotEmpty => "ENOTEMPTY",
            XsError::NotImplemented => "ENOSYS",
            XsError::ReadOnly => "EROFS",
            XsError::Busy => "EBUSY",
            XsError::Again => "EAGAIN",
            XsError::IsConnected => "EISCONN",
            XsError::TooBig => "E2BIG",
            XsError::NotPermitted => "EPERM",
        }
    }

    /// Every variant, for tests.
    pub const ALL: [XsError; 16] = [
        XsError::Invalid,
        XsError::AccessDenied,
        XsError::AlreadyExists,
        XsError::IsDirectory,
        XsError::NotFound,
        XsError::OutOfMemory,
        XsError::NoSpace,
        XsError::Io,
        XsError::NotEmpty,
        XsError::NotImplemented,
        XsError::ReadOnly,
        XsError::Busy,
        XsError::Again,
        XsError::IsConnected,
        XsError::TooBig,
        XsError::NotPermitted,
    ];
}

impl fmt::Display for XsError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            XsError::Invalid => "invalid argument or path",
            XsError::AccessDenied => "permission denied",
            XsError::AlreadyExists => "already exists",
            XsError::IsDirectory => "is a directory",
            XsError::NotFound => "no such node",
            XsError::OutOfMemory => "out of memory",
            XsError::NoSpace => "quota exceeded",
            XsError::Io => "input/output error",
            XsError::NotEmpty => "not empty",
            XsError::NotImplemented => "operation not supported",
            XsError::ReadOnly => "read-only",
            XsError::Busy => "busy",
            XsError::Again => "transaction conflicted, try again",
            XsError::IsConnected => "domain already introduced",
            XsError::TooBig => "too big",
            XsError::NotPermitted => "operation not permitted",
        };
        write!(formatter, "{text} ({})", self.errno_name())
    }
}

/// Splits a payload into its NUL-terminated strings. Bytes after the last NUL are
/// ignored (Xen's `get_strings`).
pub(crate) fn nul_strings(payload: &[u8]) -> impl Iterator<Item = &[u8]> {
    let terminated = match payload.iter().rposition(|&byte| byte == 0) {
        Some(last) => payload.get(..last).unwrap_or(&[]),
        None => &[],
    };
    let count_any = payload.contains(&0);
    terminated.split(|&byte| byte == 0).take(if count_any { usize::MAX } else { 0 })
}

/// The single argument of a request whose payload must be exactly one string and
/// its NUL (Xen's `onearg`).
pub(crate) fn one_argument(payload: &[u8]) -> Result<&[u8], XsError> {
    match payload.split_last() {
        Some((0, text)) if !text.contains(&0) => Ok(text),
        _ => Err(XsError::Invalid),
    }
}

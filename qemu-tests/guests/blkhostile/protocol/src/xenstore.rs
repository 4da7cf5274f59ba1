//! A xenstore client over the domain's store ring: READ and WRITE, one request at a
//! time, each bounded by a timeout.
//!
//! Ring (`xen/include/public/io/xs_wire.h`, `struct xenstore_domain_interface`;
//! `docs/misc/xenstore-ring.txt`; pvh-abi.md §6.1): `req[1024]` at 0 (guest → dom0),
//! `rsp[1024]` at 1024 (dom0 → guest), then free-running u32 indices `req_cons`,
//! `req_prod`, `rsp_cons`, `rsp_prod` at 2048, 2052, 2056, 2060. Byte `i` of a stream
//! lives at `i % 1024`. The producer writes data, then (after a barrier) moves its
//! index; messages may be split anywhere, across the wrap and across notifications.
//!
//! Messages (`docs/misc/xenstore.txt`, pvh-abi.md §6.2): a 16-byte header (`type`,
//! `req_id`, `tx_id`, `len`, u32 each) and `len` ≤ 4096 payload bytes. READ sends
//! `path NUL` and gets the raw value (no NUL); WRITE sends `path NUL value` and gets
//! `OK NUL`. A failed request is answered with type ERROR and an errno name. Replies
//! echo `req_id`; unsolicited WATCH_EVENTs (none are asked for) and replies to an
//! earlier request that timed out are read and dropped.
//!
//! dom0's indices are checked before use (`prod − cons ≤ 1024`); a reply longer than
//! 4096 bytes is refused; every wait is bounded by a [`Deadline`]. Requests use no
//! transaction (`tx_id` 0): each write is atomic on its own.

use core::fmt;

use crate::{Deadline, Environment, SharedPage};

pub const XS_DIRECTORY: u32 = 1;
pub const XS_READ: u32 = 2;
pub const XS_WRITE: u32 = 11;
pub const XS_WATCH_EVENT: u32 = 15;
pub const XS_ERROR: u32 = 16;

/// Size of each of the two byte rings.
pub const XENSTORE_RING_SIZE: u32 = 1024;
/// Largest payload of one message.
pub const XENSTORE_PAYLOAD_MAX: u32 = 4096;
/// Size of `struct xsd_sockmsg`.
pub const HEADER_SIZE: usize = 16;

pub const REQ_OFFSET: usize = 0;
pub const RSP_OFFSET: usize = 1024;
pub const REQ_CONS_OFFSET: usize = 2048;
pub const REQ_PROD_OFFSET: usize = 2052;
pub const RSP_CONS_OFFSET: usize = 2056;
pub const RSP_PROD_OFFSET: usize = 2060;

/// `struct xsd_sockmsg`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageHeader {
    /// `XS_*` message type.
    pub kind: u32,
    /// Chosen by the requester, echoed in the reply.
    pub req_id: u32,
    /// Transaction id, 0 for none.
    pub tx_id: u32,
    /// Payload bytes that follow.
    pub len: u32,
}

impl MessageHeader {
    pub fn encode(&self) -> [u8; HEADER_SIZE] {
        let mut bytes = [0; HEADER_SIZE];
        for (at, value) in [self.kind, self.req_id, self.tx_id, self.len].into_iter().enumerate() {
            bytes[at * 4..at * 4 + 4].copy_from_slice(&value.to_le_bytes());
        }
        bytes
    }

    pub fn decode(bytes: &[u8; HEADER_SIZE]) -> Self {
        let word = |at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
        Self { kind: word(0), req_id: word(4), tx_id: word(8), len: word(12) }
    }
}

/// Longest errno name kept from an ERROR reply ("ENOTEMPTY" is the longest defined).
pub const ERROR_NAME_MAX: usize = 16;

/// The errno name of an ERROR reply (e.g. `ENOENT`), truncated to [`ERROR_NAME_MAX`].
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ErrorName {
    bytes: [u8; ERROR_NAME_MAX],
    len: usize,
}

impl ErrorName {
    fn from_payload(payload: &[u8]) -> Self {
        let text = payload.split(|&byte| byte == 0).next().unwrap_or(&[]);
        let len = text.len().min(ERROR_NAME_MAX);
        let mut bytes = [0; ERROR_NAME_MAX];
        bytes[..len].copy_from_slice(&text[..len]);
        Self { bytes, len }
    }

    pub fn as_str(&self) -> &str {
        core::str::from_utf8(&self.bytes[..self.len]).unwrap_or("?")
    }
}

impl fmt::Debug for ErrorName {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// Which part of an exchange a timeout hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waiting {
    /// Room in the request ring.
    RequestSpace,
    /// The reply.
    Reply,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XenstoreError {
    /// dom0 did not make progress before the deadline.
    TimedOut(Waiting),
    /// `req_prod − req_cons` exceeded the ring: dom0 moved `req_cons` past our data.
    RequestIndices { cons: u32, prod: u32 },
    /// `rsp_prod − rsp_cons` exceeded the ring.
    ResponseIndices { cons: u32, prod: u32 },
    /// A reply header announced more than [`XENSTORE_PAYLOAD_MAX`] bytes.
    Oversized { len: u32 },
    /// dom0 answered with an error.
    ErrorReply(ErrorName),
    /// The reply's type is neither the request's nor ERROR.
    UnexpectedReply { kind: u32 },
    /// The request's payload exceeds [`XENSTORE_PAYLOAD_MAX`].
    RequestTooLong { len: usize },
    /// The value read is longer than the caller's buffer (it was consumed and dropped).
    ValueTooLong { len: u32 },
}

impl fmt::Display for XenstoreError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TimedOut(Waiting::RequestSpace) => {
                write!(formatter, "timed out waiting for room in the request ring")
            }
            Self::TimedOut(Waiting::Reply) => write!(formatter, "timed out waiting for the reply"),
            Self::RequestIndices { cons, prod } => {
                write!(formatter, "bad request ring indices cons={cons} prod={prod}")
            }
            Self::ResponseIndices { cons, prod } => {
                write!(formatter, "bad response ring indices cons={cons} prod={prod}")
            }
            Self::Oversized { len } => write!(formatter, "reply of {len} bytes announced"),
            Self::ErrorReply(name) => write!(formatter, "error reply {}", name.as_str()),
            Self::UnexpectedReply { kind } => write!(formatter, "reply of unexpected type {kind}"),
            Self::RequestTooLong { len } => write!(formatter, "request of {len} bytes is too long"),
            Self::ValueTooLong { len } => write!(formatter, "value of {len} bytes does not fit"),
        }
    }
}

/// The guest's end of the store ring.
pub struct XenstoreClient<P: SharedPage> {
    page: P,
    port: u32,
    timeout_ns: u64,
    max_polls: u64,
    next_req_id: u32,
}

impl<P: SharedPage> XenstoreClient<P> {
    /// A client on the ring `page` whose event channel is `port` (HVM params 1 and 2);
    /// each request may take `timeout_ns` in all.
    pub fn new(page: P, port: u32, timeout_ns: u64) -> Self {
        Self { page, port, timeout_ns, max_polls: crate::MAX_POLLS, next_req_id: 1 }
    }

    /// Bounds each request to `polls` polls as well (the bound that holds without a
    /// clock; [`crate::MAX_POLLS`] by default).
    pub fn with_max_polls(mut self, polls: u64) -> Self {
        self.max_polls = polls;
        self
    }

    pub fn page(&self) -> &P {
        &self.page
    }

    /// Reads the node `path` into `value`; returns the value's length.
    pub fn read(&mut self, env: &mut dyn Environment, path: &str, value: &mut [u8]) -> Result<usize, XenstoreError> {
        self.request(env, XS_READ, &[path.as_bytes(), &[0]], value)
    }

    /// Reads the node `path` as a decimal number; `Ok(None)` if it is not one.
    pub fn read_number(&mut self, env: &mut dyn Environment, path: &str) -> Result<Option<u64>, XenstoreError> {
        let mut value = [0; 24];
        let len = self.read(env, path, &mut value)?;
        Ok(parse_decimal(value.get(..len).unwrap_or(&[])))
    }

    /// Writes `value` to the node `path` (creating it and missing parents).
    pub fn write(&mut self, env: &mut dyn Environment, path: &str, value: &str) -> Result<(), XenstoreError> {
        let mut reply = [0; 4];
        self.request(env, XS_WRITE, &[path.as_bytes(), &[0], value.as_bytes()], &mut reply).map(|_| ())
    }

    /// Sends one request made of `parts` and waits for its reply, whose payload goes
    /// to `reply` (its length is returned).
    pub fn request(
        &mut self,
        env: &mut dyn Environment,
        kind: u32,
        parts: &[&[u8]],
        reply: &mut [u8],
    ) -> Result<usize, XenstoreError> {
        let len: usize = parts.iter().map(|part| part.len()).sum();
        let announced = u32::try_from(len).ok().filter(|&len| len <= XENSTORE_PAYLOAD_MAX);
        let Some(announced) = announced else { return Err(XenstoreError::RequestTooLong { len }) };
        let req_id = self.next_req_id;
        self.next_req_id = self.next_req_id.wrapping_add(1);
        let mut deadline = Deadline::with_polls(env, self.timeout_ns, self.max_polls);
        let header = MessageHeader { kind, req_id, tx_id: 0, len: announced };
        self.send(env, &mut deadline, &header.encode())?;
        for part in parts {
            self.send(env, &mut deadline, part)?;
        }
        env.notify(self.port);
        loop {
            let mut raw = [0; HEADER_SIZE];
            self.receive(env, &mut deadline, HEADER_SIZE, |at, byte| raw[at] = byte)?;
            let header = MessageHeader::decode(&raw);
            if header.len > XENSTORE_PAYLOAD_MAX {
                return Err(XenstoreError::Oversized { len: header.len });
            }
            let mut error_name = [0; ERROR_NAME_MAX];
            self.receive(env, &mut deadline, header.len as usize, |at, byte| {
                if let Some(slot) = reply.get_mut(at) {
                    *slot = byte;
                }
                if let Some(slot) = error_name.get_mut(at) {
                    *slot = byte;
                }
            })?;
            if header.kind == XS_WATCH_EVENT || header.req_id != req_id {
                continue;
            }
            return match header.kind {
                XS_ERROR => Err(XenstoreError::ErrorReply(ErrorName::from_payload(&error_name))),
                reply_kind if reply_kind != kind => Err(XenstoreError::UnexpectedReply { kind: reply_kind }),
                _ if header.len as usize > reply.len() => Err(XenstoreError::ValueTooLong { len: header.len }),
                _ => Ok(header.len as usize),
            };
        }
    }

    /// Appends `bytes` to the request ring as room appears.
    fn send(&mut self, env: &mut dyn Environment, deadline: &mut Deadline, bytes: &[u8]) -> Result<(), XenstoreError> {
        let mut sent = 0;
        while sent < bytes.len() {
            let cons = self.page.read_u32(REQ_CONS_OFFSET);
            let prod = self.page.read_u32(REQ_PROD_OFFSET);
            let used = prod.wrapping_sub(cons);
            if used > XENSTORE_RING_SIZE {
                return Err(XenstoreError::RequestIndices { cons, prod });
            }
            let room = (XENSTORE_RING_SIZE - used) as usize;
            if room == 0 {
                env.notify(self.port);
                if !deadline.pause(env) {
                    return Err(XenstoreError::TimedOut(Waiting::RequestSpace));
                }
                continue;
            }
            // dom0 has finished reading what it consumed before we overwrite it.
            self.page.fence();
            let count = room.min(bytes.len() - sent);
            for (at, &byte) in bytes[sent..sent + count].iter().enumerate() {
                self.page.write_u8(REQ_OFFSET + ring_offset(prod, at), byte);
            }
            // The data is visible before the index that publishes it.
            self.page.fence();
            self.page.write_u32(REQ_PROD_OFFSET, prod.wrapping_add(count as u32));
            sent += count;
        }
        Ok(())
    }

    /// Takes `count` bytes from the response ring as they arrive, handing each to
    /// `store(index, byte)`.
    fn receive(
        &mut self,
        env: &mut dyn Environment,
        deadline: &mut Deadline,
        count: usize,
        mut store: impl FnMut(usize, u8),
    ) -> Result<(), XenstoreError> {
        let mut received = 0;
        while received < count {
            let cons = self.page.read_u32(RSP_CONS_OFFSET);
            let prod = self.page.read_u32(RSP_PROD_OFFSET);
            let available = prod.wrapping_sub(cons);
            if available > XENSTORE_RING_SIZE {
                return Err(XenstoreError::ResponseIndices { cons, prod });
            }
            if available == 0 {
                if !deadline.pause(env) {
                    return Err(XenstoreError::TimedOut(Waiting::Reply));
                }
                continue;
            }
            // The index is read before the data it publishes.
            self.page.fence();
            let take = (available as usize).min(count - received);
            for at in 0..take {
                store(received + at, self.page.read_u8(RSP_OFFSET + ring_offset(cons, at)));
            }
            // The data is read before the room is handed back.
            self.page.fence();
            self.page.write_u32(RSP_CONS_OFFSET, cons.wrapping_add(take as u32));
            if available == XENSTORE_RING_SIZE {
                // dom0 may be waiting for room to write the rest.
                env.notify(self.port);
            }
            received += take;
        }
        Ok(())
    }
}

/// Offset inside a 1024-byte ring of byte `at` of a stream position `index`.
pub fn ring_offset(index: u32, at: usize) -> usize {
    (index.wrapping_add(at as u32) % XENSTORE_RING_SIZE) as usize
}

/// A decimal number of at most 20 digits, nothing else (xenstore values have no NUL).
pub fn parse_decimal(text: &[u8]) -> Option<u64> {
    if text.is_empty() {
        return None;
    }
    text.iter().try_fold(0u64, |value, &byte| {
        let digit = byte.checked_sub(b'0').filter(|&digit| digit <= 9)?;
        value.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

/// A number as xenstore values spell it.
pub struct Decimal {
    digits: [u8; 20],
    start: usize,
}

impl Decimal {
    pub fn new(mut value: u64) -> Self {
        let mut decimal = Self { digits: [b'0'; 20], start: 20 };
        loop {
            decimal.start -= 1;
            decimal.digits[decimal.start] = b'0' + (value % 10) as u8;
            value /= 10;
            if value == 0 {
                return decimal;
            }
        }
    }

    pub fn as_str(&self) -> &str {
        core::str::from_utf8(&self.digits[self.start..]).unwrap_or("0")
    }
}

#[cfg(test)]
mod tests;

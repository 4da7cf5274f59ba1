//! The primary console backend: the ring page a guest's hvc0 writes into and reads
//! from (xen/include/public/io/console.h; pvh-abi.md §7.1).
//!
//! Layout: `in[1024]` @0 (dom0 → guest), `out[2048]` @1024 (guest → dom0),
//! `in_cons` @3072, `in_prod` @3076, `out_cons` @3080, `out_prod` @3084. Indices are
//! free-running u32; a byte lives at `index & (size − 1)`.
//!
//! The guest owns `out_prod` and `in_cons` and can write anything there. A producer
//! index more than a ring's size ahead of the consumer is a broken ring: the backend
//! then takes only what fits (never more than the ring size per call) and resynchronises
//! `out_cons` to `out_prod`, so a hostile guest costs at most one ring of work per
//! call and corrupts nothing but its own console output.

use crate::shared_page::SharedPage;
use alloc::collections::VecDeque;
use alloc::vec::Vec;

pub const IN_OFFSET: usize = 0;
pub const IN_SIZE: u32 = 1024;
pub const OUT_OFFSET: usize = 1024;
pub const OUT_SIZE: u32 = 2048;
pub const IN_CONS: usize = 3072;
pub const IN_PROD: usize = 3076;
pub const OUT_CONS: usize = 3080;
pub const OUT_PROD: usize = 3084;

/// What one service call did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ConsoleService {
    /// Bytes taken from the guest's output ring.
    pub output_bytes: usize,
    /// Bytes put into the guest's input ring.
    pub input_bytes: usize,
    /// The guest must be notified (its ring indices moved).
    pub notify: bool,
    /// The guest's indices were inconsistent and were resynchronised.
    pub resynchronised: bool,
}

/// Moves the guest's pending output into `output` (at most one ring's worth) and as
/// much of `input` as fits into the guest's input ring.
pub fn service(page: &mut dyn SharedPage, output: &mut Vec<u8>, input: &mut VecDeque<u8>) -> ConsoleService {
    let mut result = ConsoleService::default();
    drain_output(page, output, &mut result);
    fill_input(page, input, &mut result);
    result
}

fn drain_output(page: &mut dyn SharedPage, output: &mut Vec<u8>, result: &mut ConsoleService) {
    let consumer = page.read_u32(OUT_CONS);
    let producer = page.read_u32(OUT_PROD);
    let mut pending = producer.wrapping_sub(consumer);
    if pending == 0 {
        return;
    }
    if pending > OUT_SIZE {
        // Not a state a correct frontend can reach: take the newest ring's worth.
        result.resynchronised = true;
        pending = OUT_SIZE;
    }
    let start = producer.wrapping_sub(pending);
    let mut index = start;
    let mut chunk = [0u8; OUT_SIZE as usize];
    let mut taken = 0usize;
    while index != producer {
        let offset = index & (OUT_SIZE - 1);
        let run = (OUT_SIZE - offset).min(producer.wrapping_sub(index)) as usize;
        page.read(OUT_OFFSET + offset as usize, &mut chunk[taken..taken + run]);
        taken += run;
        index = index.wrapping_add(run as u32);
    }
    output.extend_from_slice(&chunk[..taken]);
    page.write_u32(OUT_CONS, producer);
    result.output_bytes = taken;
    result.notify = true;
}

fn fill_input(page: &mut dyn SharedPage, input: &mut VecDeque<u8>, result: &mut ConsoleService) {
    if input.is_empty() {
        return;
    }
    let consumer = page.read_u32(IN_CONS);
    let producer = page.read_u32(IN_PROD);
    let used = producer.wrapping_sub(consumer);
    if used > IN_SIZE {
        // The guest moved in_cons past our producer: start over from its consumer.
        result.resynchronised = true;
        page.write_u32(IN_PROD, consumer);
        return;
    }
    let mut free = (IN_SIZE - used) as usize;
    let mut index = producer;
    let mut written = 0usize;
    while free > 0 {
        let Some(byte) = input.pop_front() else { break };
        page.write(IN_OFFSET + (index & (IN_SIZE - 1)) as usize, &[byte]);
        index = index.wrapping_add(1);
        free -= 1;
        written += 1;
    }
    if written > 0 {
        page.write_u32(IN_PROD, index);
        result.input_bytes = written;
        result.notify = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared_page::TestPage;

    fn guest_write(page: &mut TestPage, bytes: &[u8]) {
        let mut producer = page.read_u32(OUT_PROD);
        for &byte in bytes {
            page.write(OUT_OFFSET + (producer & (OUT_SIZE - 1)) as usize, &[byte]);
            producer = producer.wrapping_add(1);
        }
        page.write_u32(OUT_PROD, producer);
    }

    fn guest_read(page: &mut TestPage) -> Vec<u8> {
        let mut consumer = page.read_u32(IN_CONS);
        let producer = page.read_u32(IN_PROD);
        let mut bytes = Vec::new();
        while consumer != producer {
            let mut byte = [0u8];
            page.read(IN_OFFSET + (consumer & (IN_SIZE - 1)) as usize, &mut byte);
            bytes.push(byte[0]);
            consumer = consumer.wrapping_add(1);
        }
        page.write_u32(IN_CONS, consumer);
        bytes
    }

    #[test]
    fn output_is_drained_across_the_wrap() {
        let mut page = TestPage::default();
        page.write_u32(OUT_CONS, u32::MAX - 5);
        page.write_u32(OUT_PROD, u32::MAX - 5);
        guest_write(&mut page, b"hello, world");
        let mut output = Vec::new();
        let done = service(&mut page, &mut output, &mut VecDeque::new());
        assert_eq!(output, b"hello, world");
        assert_eq!(done.output_bytes, 12);
        assert!(done.notify);
        assert_eq!(page.read_u32(OUT_CONS), page.read_u32(OUT_PROD));
        // Nothing new: nothing to do.
        let again = service(&mut page, &mut output, &mut VecDeque::new());
        assert_eq!(again, ConsoleService::default());
    }

    #[test]
    fn a_full_ring_is_taken_whole() {
        let mut page = TestPage::default();
        let text: Vec<u8> = (0..OUT_SIZE).map(|i| b'a' + (i % 26) as u8).collect();
        guest_write(&mut page, &text);
        let mut output = Vec::new();
        service(&mut page, &mut output, &mut VecDeque::new());
        assert_eq!(output, text);
    }

    #[test]
    fn a_lying_producer_costs_one_ring_and_is_resynchronised() {
        let mut page = TestPage::default();
        page.write_u32(OUT_PROD, 1_000_000);
        let mut output = Vec::new();
        let done = service(&mut page, &mut output, &mut VecDeque::new());
        assert!(done.resynchronised);
        assert_eq!(output.len(), OUT_SIZE as usize);
        assert_eq!(page.read_u32(OUT_CONS), 1_000_000);
    }

    #[test]
    fn input_fills_what_is_free_and_keeps_the_rest() {
        let mut page = TestPage::default();
        let mut input: VecDeque<u8> = (0..1500u32).map(|i| (i % 251) as u8).collect();
        let mut output = Vec::new();
        let done = service(&mut page, &mut output, &mut input);
        assert_eq!(done.input_bytes, IN_SIZE as usize);
        assert_eq!(input.len(), 1500 - IN_SIZE as usize);
        let first = guest_read(&mut page);
        assert_eq!(first.len(), IN_SIZE as usize);
        let done = service(&mut page, &mut output, &mut input);
        assert_eq!(done.input_bytes, 1500 - IN_SIZE as usize);
        let second = guest_read(&mut page);
        let all: Vec<u8> = first.into_iter().chain(second).collect();
        let expected: Vec<u8> = (0..1500u32).map(|i| (i % 251) as u8).collect();
        assert_eq!(all, expected);
    }

    #[test]
    fn a_consumer_past_the_producer_is_resynchronised() {
        let mut page = TestPage::default();
        page.write_u32(IN_CONS, 5000);
        let mut input: VecDeque<u8> = b"x".iter().copied().collect();
        let done = service(&mut page, &mut Vec::new(), &mut input);
        assert!(done.resynchronised);
        assert_eq!(page.read_u32(IN_PROD), 5000);
        let done = service(&mut page, &mut Vec::new(), &mut input);
        assert_eq!(done.input_bytes, 1);
    }
}

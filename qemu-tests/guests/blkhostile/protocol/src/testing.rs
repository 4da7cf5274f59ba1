//! Host test fixtures: a shared page both sides of a test can hold ([`TestPage`]) and
//! an [`Environment`] whose pauses run a fake peer ([`FakeEnvironment`]).

use std::cell::RefCell;
use std::rc::Rc;

use crate::{Environment, SharedPage, PAGE_SIZE};

/// A page in host memory; clones share the same bytes (the guest's and dom0's view).
#[derive(Clone)]
pub struct TestPage(pub Rc<RefCell<[u8; PAGE_SIZE]>>);

impl TestPage {
    pub fn new() -> Self {
        Self(Rc::new(RefCell::new([0; PAGE_SIZE])))
    }
}

impl SharedPage for TestPage {
    fn read_u8(&self, offset: usize) -> u8 {
        self.0.borrow().get(offset).copied().unwrap_or(0)
    }
    fn write_u8(&mut self, offset: usize, value: u8) {
        if let Some(byte) = self.0.borrow_mut().get_mut(offset) {
            *byte = value;
        }
    }
    fn read_u16(&self, offset: usize) -> u16 {
        u16::from_le_bytes([self.read_u8(offset), self.read_u8(offset + 1)])
    }
    fn write_u16(&mut self, offset: usize, value: u16) {
        self.write_bytes(offset, &value.to_le_bytes());
    }
    fn read_u32(&self, offset: usize) -> u32 {
        let mut bytes = [0; 4];
        self.read_bytes(offset, &mut bytes);
        u32::from_le_bytes(bytes)
    }
    fn write_u32(&mut self, offset: usize, value: u32) {
        self.write_bytes(offset, &value.to_le_bytes());
    }
    fn fence(&self) {}
}

/// An environment whose clock advances 1 ms per pause and whose pauses let `peer`
/// run; it records the ports notified.
pub struct FakeEnvironment<F: FnMut()> {
    pub peer: F,
    pub now_ns: u64,
    pub notified: Vec<u32>,
    pub pauses: u64,
    pub has_clock: bool,
}

impl<F: FnMut()> FakeEnvironment<F> {
    pub fn new(peer: F) -> Self {
        Self { peer, now_ns: 1_000, notified: Vec::new(), pauses: 0, has_clock: true }
    }
}

impl<F: FnMut()> Environment for FakeEnvironment<F> {
    fn notify(&mut self, port: u32) {
        self.notified.push(port);
    }
    fn pause(&mut self) {
        self.pauses += 1;
        self.now_ns += 1_000_000;
        (self.peer)();
    }
    fn now_ns(&mut self) -> Option<u64> {
        self.has_clock.then_some(self.now_ns)
    }
}

//! The COM1 UART (16550): polled transmit that never drops a byte, and
//! interrupt-driven receive into a bounded ring that the shell drains.
//!
//! Input arriving faster than the shell consumes it is flow-controlled, not dropped:
//! when the ring is full the handler stops reading the UART and turns its receive
//! interrupt off, so the UART's FIFO fills and a sender that honours flow control
//! (QEMU's serial back end; RTS/CTS on real lines) waits. Reading from the ring turns
//! the interrupt back on. Memory stays bounded either way; a sender that ignores flow
//! control loses bytes in the UART (overrun), never in the hypervisor. Transmit waits
//! for the transmitter to be ready, so log lines are never lost, at the cost of the
//! writer's time at slow baud rates.

use crate::arch::instructions::without_interrupts;
use core::sync::atomic::{AtomicBool, Ordering};
use spin::Mutex;
use uart_16550::backend::PioBackend;
use uart_16550::{Config, Uart16550};

/// COM1's I/O base and legacy IRQ.
pub const COM1_PORT: u16 = 0x3f8;
/// COM1's ISA IRQ line.
pub const COM1_IRQ: u8 = 4;

const RX_CAPACITY: usize = 4096;

struct RxRing {
    bytes: [u8; RX_CAPACITY],
    head: usize,
    len: usize,
}

static UART: Mutex<Option<Uart16550<PioBackend>>> = Mutex::new(None);
static RX: Mutex<RxRing> = Mutex::new(RxRing { bytes: [0; RX_CAPACITY], head: 0, len: 0 });
/// Receive interrupts are off because the ring was full.
static RX_THROTTLED: AtomicBool = AtomicBool::new(false);

/// Programs COM1 for `baud` 8N1 with FIFOs; receive interrupts stay off until
/// [`enable_receive_interrupts`].
pub fn init(baud: u32) -> bool {
    // SAFETY: 0x3f8..0x3ff is COM1's register block on PC-compatible machines and the
    // hypervisor is its only user.
    let Ok(mut uart) = (unsafe { Uart16550::new_port(COM1_PORT) }) else { return false };
    let config = Config { baud_rate: uart_16550::BaudRate::from_integer(baud), ..Config::DEFAULT };
    let ok = uart.init(config).is_ok();
    without_interrupts(|| *UART.lock() = Some(uart));
    ok
}

/// Turns on "data ready" interrupts (the IOAPIC route must be programmed by the caller).
pub fn enable_receive_interrupts() {
    without_interrupts(|| {
        if let Some(uart) = UART.lock().as_mut() {
            uart.enable_interrupts(uart_16550::spec::registers::IER::DATA_READY);
        }
    });
}

/// Writes all of `bytes`, waiting for the transmitter as needed.
pub fn write_bytes(bytes: &[u8]) {
    without_interrupts(|| {
        if let Some(uart) = UART.lock().as_mut() {
            uart.send_bytes_exact(bytes);
        }
    });
}

/// Writes `bytes` if the UART is free right now; false if another context holds it.
pub fn try_write_bytes(bytes: &[u8]) -> bool {
    without_interrupts(|| match UART.try_lock() {
        Some(mut guard) => {
            if let Some(uart) = guard.as_mut() {
                uart.send_bytes_exact(bytes);
            }
            true
        }
        None => false,
    })
}

/// The receive interrupt: moves bytes from the UART into the ring until the ring is
/// full, then throttles (see the module doc).
pub fn handle_interrupt() {
    let mut uart_guard = UART.lock();
    let Some(uart) = uart_guard.as_mut() else { return };
    let mut ring = RX.lock();
    while ring.len < RX_CAPACITY {
        let Ok(byte) = uart.try_receive_byte() else { return };
        let tail = (ring.head + ring.len) % RX_CAPACITY;
        ring.bytes[tail] = byte;
        ring.len += 1;
    }
    if !RX_THROTTLED.swap(true, Ordering::AcqRel) {
        uart.disable_interrupts(uart_16550::spec::registers::IER::DATA_READY);
    }
}

/// Takes the oldest received byte, if any. Also polls the UART, so input works even
/// before (or without) the receive interrupt, and ends throttling once the ring has
/// room again.
pub fn read_byte() -> Option<u8> {
    without_interrupts(|| {
        handle_interrupt();
        let byte = {
            let mut ring = RX.lock();
            if ring.len == 0 {
                return None;
            }
            let byte = ring.bytes[ring.head];
            ring.head = (ring.head + 1) % RX_CAPACITY;
            ring.len -= 1;
            byte
        };
        if RX.lock().len < RX_CAPACITY / 2 && RX_THROTTLED.swap(false, Ordering::AcqRel) {
            if let Some(uart) = UART.lock().as_mut() {
                uart.enable_interrupts(uart_16550::spec::registers::IER::DATA_READY);
            }
        }
        Some(byte)
    })
}

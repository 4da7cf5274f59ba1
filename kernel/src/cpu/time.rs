//! Time: the TSC, calibrated once against the PIT (channel 2, gated through port 0x61,
//! which needs no interrupt), gives uptime on every CPU.

use crate::arch::instructions::{inb, outb, rdtsc};
use core::sync::atomic::{AtomicU64, Ordering};

static TSC_KHZ: AtomicU64 = AtomicU64::new(0);
static BOOT_TSC: AtomicU64 = AtomicU64::new(0);

const PIT_HZ: u64 = 1_193_182;

/// Remembers the TSC at boot (uptime zero).
pub fn mark_boot() {
    BOOT_TSC.store(rdtsc(), Ordering::Relaxed);
}

/// Measures one 10 ms PIT interval in TSC ticks; None if the PIT never fires.
fn measure_ten_milliseconds() -> Option<u64> {
    let count = (PIT_HZ / 100) as u16;
    let gate = inb(0x61);
    outb(0x61, (gate & !0x02) | 0x01); // gate on, speaker off
    outb(0x43, 0xb0); // channel 2, lobyte/hibyte, mode 0, binary
    outb(0x42, count as u8);
    outb(0x42, (count >> 8) as u8);
    // A rising edge on the gate restarts the count.
    let gate = inb(0x61) & !0x01;
    outb(0x61, gate);
    outb(0x61, gate | 0x01);
    let start = rdtsc();
    for _ in 0..50_000_000u64 {
        if inb(0x61) & 0x20 != 0 {
            return Some(rdtsc().wrapping_sub(start));
        }
    }
    None
}

/// Calibrates the TSC (bootstrap CPU, interrupts off). Returns kHz (0 if it failed).
pub fn calibrate_tsc() -> u64 {
    let mut samples = [0u64; 3];
    for sample in &mut samples {
        match measure_ten_milliseconds() {
            Some(ticks) => *sample = ticks,
            None => return 0,
        }
    }
    samples.sort_unstable();
    let khz = samples[1] / 10;
    TSC_KHZ.store(khz, Ordering::Relaxed);
    khz
}

/// TSC frequency in kHz (0 before calibration).
pub fn tsc_khz() -> u64 {
    TSC_KHZ.load(Ordering::Relaxed)
}

/// Nanoseconds since boot (0 before calibration).
pub fn uptime_ns() -> u64 {
    uptime_ns_at(rdtsc())
}

/// Nanoseconds since boot at TSC value `tsc` (what the PV clock records pair).
pub fn uptime_ns_at(tsc: u64) -> u64 {
    let khz = tsc_khz();
    if khz == 0 {
        return 0;
    }
    let ticks = tsc.wrapping_sub(BOOT_TSC.load(Ordering::Relaxed));
    (u128::from(ticks) * 1_000_000 / u128::from(khz)) as u64
}

/// Busy-waits for `microseconds` (needs a calibrated TSC; otherwise a rough spin).
pub fn delay_us(microseconds: u64) {
    let khz = tsc_khz();
    if khz == 0 {
        for _ in 0..microseconds * 1000 {
            core::hint::spin_loop();
        }
        return;
    }
    let wait = microseconds * khz / 1000;
    let start = rdtsc();
    while rdtsc().wrapping_sub(start) < wait {
        core::hint::spin_loop();
    }
}

//! Xen's PV clock: the `vcpu_time_info` a guest reads its time from, and the wall
//! clock in shared_info (xen/include/public/xen.h; pvh-abi.md §4.3).
//!
//! Guest time = `system_time + scale(tsc − tsc_timestamp)`, where scale shifts the
//! delta by `tsc_shift` and keeps the high half of a 64×32-bit multiply by
//! `tsc_to_system_mul`. The hypervisor's "now" (the deadline base of
//! VCPUOP_set_singleshot_timer) is the same function of the TSC, so guest timers fire
//! on time. Writers bump `version` to odd before changing a record and to the next
//! even value after; readers retry while it is odd or changed.

/// TSC ticks → nanoseconds, as `((delta << shift) * mul) >> 32` (negative shift: right).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeScale {
    pub mul: u32,
    pub shift: i8,
}

const NS_PER_SECOND: u64 = 1_000_000_000;

/// The scale for a TSC running at `tsc_hz` (Xen's `set_time_scale`): normalise the
/// rate into (1e9, 2e9] by shifting, then `mul = 2^32 · 1e9 / rate`, which is below
/// 2^32 by construction. `None` for a zero rate.
pub fn time_scale(tsc_hz: u64) -> Option<TimeScale> {
    if tsc_hz == 0 {
        return None;
    }
    let mut rate = tsc_hz;
    let mut shift: i8 = 0;
    while rate > 2 * NS_PER_SECOND {
        rate >>= 1;
        shift -= 1;
    }
    while rate <= NS_PER_SECOND {
        rate <<= 1;
        shift += 1;
    }
    let mul = ((u128::from(NS_PER_SECOND) << 32) / u128::from(rate)) as u32;
    Some(TimeScale { mul, shift })
}

impl TimeScale {
    /// Nanoseconds in `delta` TSC ticks.
    pub fn ticks_to_ns(self, delta: u64) -> u64 {
        let shifted = if self.shift >= 0 { delta << self.shift } else { delta >> -(self.shift as i32) };
        ((u128::from(shifted) * u128::from(self.mul)) >> 32) as u64
    }
}

/// `vcpu_time_info.flags` bit 0: all vCPUs see one TSC (the guest may skip its own
/// cross-CPU monotonicity clamp).
pub const PVCLOCK_TSC_STABLE: u8 = 1;

/// Size of `struct vcpu_time_info`.
pub const VCPU_TIME_INFO_SIZE: usize = 32;

/// The fields of one `vcpu_time_info` record, minus the version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRecord {
    pub tsc_timestamp: u64,
    pub system_time_ns: u64,
    pub scale: TimeScale,
    pub flags: u8,
}

impl TimeRecord {
    /// The 32-byte record with `version` (layout: version u32 @0, tsc_timestamp u64 @8,
    /// system_time u64 @16, tsc_to_system_mul u32 @24, tsc_shift i8 @28, flags u8 @29).
    pub fn bytes(&self, version: u32) -> [u8; VCPU_TIME_INFO_SIZE] {
        let mut bytes = [0u8; VCPU_TIME_INFO_SIZE];
        bytes[0..4].copy_from_slice(&version.to_le_bytes());
        bytes[8..16].copy_from_slice(&self.tsc_timestamp.to_le_bytes());
        bytes[16..24].copy_from_slice(&self.system_time_ns.to_le_bytes());
        bytes[24..28].copy_from_slice(&self.scale.mul.to_le_bytes());
        bytes[28] = self.scale.shift as u8;
        bytes[29] = self.flags;
        bytes
    }

    /// Guest time at `tsc` as the guest computes it from this record.
    pub fn guest_time_at(&self, tsc: u64) -> u64 {
        self.system_time_ns.wrapping_add(self.scale.ticks_to_ns(tsc.wrapping_sub(self.tsc_timestamp)))
    }
}

/// The version values an update goes through: `(odd, even)` after `current`.
pub fn next_versions(current: u32) -> (u32, u32) {
    let odd = current.wrapping_add(1) | 1;
    (odd, odd.wrapping_add(1))
}

/// shared_info wall clock: `wc_version` @3072, `wc_sec` @3076, `wc_nsec` @3080,
/// `wc_sec_hi` @3084 — UTC at system time 0.
pub const WALLCLOCK_OFFSET: usize = 3072;

/// The 16 wall-clock bytes for UTC `seconds`.`nanoseconds` at system time 0.
pub fn wallclock_bytes(version: u32, seconds: u64, nanoseconds: u32) -> [u8; 16] {
    let mut bytes = [0u8; 16];
    bytes[0..4].copy_from_slice(&version.to_le_bytes());
    bytes[4..8].copy_from_slice(&(seconds as u32).to_le_bytes());
    bytes[8..12].copy_from_slice(&nanoseconds.to_le_bytes());
    bytes[12..16].copy_from_slice(&((seconds >> 32) as u32).to_le_bytes());
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_matches_the_rate() {
        for hz in
            [1_000_000u64, 999_999_999, 1_000_000_001, 2_000_000_000, 2_400_000_000, 3_700_123_456, 12_000_000_000]
        {
            let scale = time_scale(hz).unwrap();
            // One second of ticks is one second, to within a few ns.
            let ns = scale.ticks_to_ns(hz);
            assert!(ns.abs_diff(NS_PER_SECOND) < 8, "{hz} Hz: {ns} ns");
            // Linux's own frequency estimate from the record: (1e6 << 32) / mul, shifted.
            let mut khz = (1_000_000u64 << 32) / u64::from(scale.mul);
            if scale.shift < 0 {
                khz <<= -scale.shift;
            } else {
                khz >>= scale.shift;
            }
            assert!(khz.abs_diff(hz / 1000) <= 1, "{hz} Hz → {khz} kHz");
        }
        assert_eq!(time_scale(0), None);
    }

    #[test]
    fn record_layout_and_guest_time() {
        let scale = time_scale(2_000_000_000).unwrap();
        let record = TimeRecord { tsc_timestamp: 1000, system_time_ns: 5_000, scale, flags: PVCLOCK_TSC_STABLE };
        let bytes = record.bytes(4);
        assert_eq!(&bytes[0..4], &4u32.to_le_bytes());
        assert_eq!(&bytes[8..16], &1000u64.to_le_bytes());
        assert_eq!(&bytes[16..24], &5000u64.to_le_bytes());
        assert_eq!(bytes[28] as i8, scale.shift);
        assert_eq!(bytes[29], 1);
        assert_eq!(record.guest_time_at(1000 + 2_000), 6_000);
    }

    #[test]
    fn versions_go_odd_then_even() {
        assert_eq!(next_versions(0), (1, 2));
        assert_eq!(next_versions(2), (3, 4));
        assert_eq!(next_versions(3), (5, 6));
        assert_eq!(next_versions(u32::MAX), (1, 2));
    }

    #[test]
    fn wallclock_layout() {
        let bytes = wallclock_bytes(2, 0x1_2345_6789, 999);
        assert_eq!(&bytes[4..8], &0x2345_6789u32.to_le_bytes());
        assert_eq!(&bytes[8..12], &999u32.to_le_bytes());
        assert_eq!(&bytes[12..16], &1u32.to_le_bytes());
    }
}

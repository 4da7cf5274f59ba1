//! Host tests of the emulated local APIC: reset state, IA32_APIC_BASE transitions, the
//! x2APIC MSR map with its #GP cases, the xAPIC page, priority and EOI, IPIs from the
//! ICR in both modes, ESR, SELF IPI and LVT masking.

use super::*;

const BASE_XAPIC: u64 = APIC_DEFAULT_PHYS_BASE | APIC_BASE_ENABLE;
const BASE_X2APIC: u64 = BASE_XAPIC | APIC_BASE_EXTD;

fn msr(offset: u32) -> u32 {
    MSR_X2APIC_FIRST + (offset >> 4)
}

fn x2apic(apic_id: u32) -> VirtualLapic {
    let mut lapic = VirtualLapic::new(apic_id, false);
    lapic.write_apic_base(BASE_X2APIC).unwrap();
    lapic
}

/// An APIC software-enabled through the interface of its mode, spurious vector 0xff.
fn enabled(mut lapic: VirtualLapic) -> VirtualLapic {
    match lapic.mode() {
        ApicMode::X2Apic => assert_eq!(lapic.write_msr(msr(APIC_SPIV), 0x1ff), Ok(ApicAction::None)),
        _ => assert_eq!(lapic.write_mmio(APIC_SPIV, 0x1ff), ApicAction::None),
    }
    lapic
}

/// A register write that must not send anything.
fn set_mmio(lapic: &mut VirtualLapic, offset: u32, value: u32) {
    assert_eq!(lapic.write_mmio(offset, value), ApicAction::None, "write of {value:#x} at {offset:#x}");
}

/// An x2APIC register write that must succeed without sending anything.
fn set_msr(lapic: &mut VirtualLapic, index: u32, value: u64) {
    assert_eq!(lapic.write_msr(index, value), Ok(ApicAction::None), "write of {value:#x} to MSR {index:#x}");
}

fn ipi(action: ApicAction) -> IpiRequest {
    match action {
        ApicAction::Ipi(request) => request,
        ApicAction::None => panic!("no IPI sent"),
    }
}

#[test]
fn power_up_state() {
    let bsp = VirtualLapic::new(0, true);
    assert_eq!(bsp.read_apic_base(), 0xfee0_0900);
    assert_eq!(bsp.mode(), ApicMode::XApic);
    let ap = VirtualLapic::new(3, false);
    assert_eq!(ap.read_apic_base(), 0xfee0_0800);
    assert_eq!(ap.read_mmio(APIC_ID), 3 << 24);
    assert_eq!(ap.read_mmio(APIC_LVR), 0x0005_0014);
    assert_eq!(ap.read_mmio(APIC_SPIV), 0xff);
    assert!(!ap.is_software_enabled());
    assert_eq!(ap.read_mmio(APIC_DFR), 0xffff_ffff);
    assert_eq!((ap.read_mmio(APIC_TASKPRI), ap.read_mmio(APIC_LDR), ap.read_mmio(APIC_ESR)), (0, 0, 0));
    for offset in [APIC_LVTT, APIC_LVTTHMR, APIC_LVTPC, APIC_LVT0, APIC_LVT1, APIC_LVTERR] {
        assert_eq!(ap.read_mmio(offset), APIC_LVT_MASKED, "LVT at {offset:#x}");
    }
    assert_eq!(ap.id(), 3);
}

#[test]
fn apic_base_transitions() {
    let mut lapic = VirtualLapic::new(1, false);
    // xAPIC → x2APIC → disabled → xAPIC is the legal round trip.
    assert_eq!(lapic.write_apic_base(BASE_X2APIC), Ok(()));
    assert_eq!(lapic.mode(), ApicMode::X2Apic);
    assert_eq!(lapic.read_apic_base(), BASE_X2APIC);
    // x2APIC → xAPIC directly is illegal.
    assert!(matches!(lapic.write_apic_base(BASE_XAPIC), Err(ApicFault::IllegalTransition { .. })));
    assert_eq!(lapic.mode(), ApicMode::X2Apic);
    assert_eq!(lapic.write_apic_base(APIC_DEFAULT_PHYS_BASE), Ok(()));
    assert_eq!(lapic.mode(), ApicMode::Disabled);
    // Disabled → x2APIC is illegal; EXTD without EN is invalid in any state.
    assert!(matches!(lapic.write_apic_base(BASE_X2APIC), Err(ApicFault::IllegalTransition { .. })));
    let extd_only = APIC_DEFAULT_PHYS_BASE | APIC_BASE_EXTD;
    assert!(matches!(lapic.write_apic_base(extd_only), Err(ApicFault::IllegalTransition { .. })));
    assert_eq!(lapic.write_apic_base(BASE_XAPIC), Ok(()));
    assert_eq!(lapic.mode(), ApicMode::XApic);
    assert!(matches!(lapic.write_apic_base(extd_only), Err(ApicFault::IllegalTransition { .. })));
    // Rewriting the current value is fine, as is the BSP flag.
    assert_eq!(lapic.write_apic_base(BASE_XAPIC | APIC_BASE_BSP), Ok(()));
    assert_eq!(lapic.read_apic_base(), BASE_XAPIC | APIC_BASE_BSP);
}

#[test]
fn apic_base_reserved_bits_and_relocation() {
    let mut lapic = VirtualLapic::new(0, true);
    for bit in [0, 7, 9] {
        let value = BASE_XAPIC | (1 << bit);
        assert_eq!(lapic.write_apic_base(value), Err(ApicFault::ReservedBits { msr: MSR_IA32_APIC_BASE, value }));
    }
    for value in [0xfec0_0000 | APIC_BASE_ENABLE, BASE_XAPIC | (1 << 40), BASE_XAPIC | (1 << 63)] {
        assert_eq!(lapic.write_apic_base(value), Err(ApicFault::Relocation { value }));
    }
    assert_eq!(lapic.read_apic_base(), BASE_XAPIC | APIC_BASE_BSP);
}

#[test]
fn hardware_disable_and_reenable_resets_registers() {
    let mut lapic = enabled(VirtualLapic::new(2, false));
    assert_eq!(lapic.write_mmio(APIC_TASKPRI, 0x20), ApicAction::None);
    assert!(lapic.accept_interrupt(0x40, false));
    lapic.write_apic_base(APIC_DEFAULT_PHYS_BASE).unwrap();
    // Disabled: no MMIO, no interrupts, no destination matches.
    assert_eq!(lapic.read_mmio(APIC_ID), 0);
    assert!(!lapic.accept_interrupt(0x41, false));
    assert_eq!(lapic.pending_interrupt(), None);
    assert!(!lapic.matches_destination(0xff, false, false));
    lapic.write_apic_base(BASE_XAPIC).unwrap();
    assert_eq!(lapic.read_mmio(APIC_TASKPRI), 0);
    assert_eq!(lapic.read_mmio(APIC_SPIV), 0xff);
    assert_eq!(lapic.read_mmio(APIC_IRR + 0x20), 0);
    assert_eq!(lapic.read_mmio(APIC_ID), 2 << 24);
}

#[test]
fn init_reset_keeps_id_base_and_mode() {
    let mut lapic = enabled(x2apic(0x25));
    set_msr(&mut lapic, msr(APIC_TASKPRI), 0x30);
    set_msr(&mut lapic, msr(APIC_LVT0), 0x700);
    assert!(lapic.accept_interrupt(0x50, true));
    lapic.reset();
    assert_eq!(lapic.mode(), ApicMode::X2Apic);
    assert_eq!(lapic.read_apic_base(), BASE_X2APIC);
    assert_eq!(lapic.read_msr(msr(APIC_ID)), Ok(0x25));
    assert_eq!(lapic.read_msr(msr(APIC_LDR)), Ok((2 << 16) | (1 << 5)));
    assert_eq!(lapic.read_msr(msr(APIC_TASKPRI)), Ok(0));
    assert_eq!(lapic.read_msr(msr(APIC_SPIV)), Ok(0xff));
    assert_eq!(lapic.read_msr(msr(APIC_LVT0)), Ok(u64::from(APIC_LVT_MASKED)));
    assert_eq!(lapic.read_msr(msr(APIC_IRR + 0x20)), Ok(0));
    assert_eq!(lapic.read_msr(msr(APIC_TMR + 0x20)), Ok(0));
}

#[test]
fn x2apic_msrs_only_in_x2apic_mode() {
    let mut lapic = VirtualLapic::new(0, true);
    assert_eq!(lapic.read_msr(0x802), Err(ApicFault::NotX2apicMode { msr: 0x802 }));
    assert_eq!(lapic.write_msr(0x808, 0), Err(ApicFault::NotX2apicMode { msr: 0x808 }));
    // And the MMIO page is gone in x2APIC mode.
    let mut lapic = x2apic(0);
    assert_eq!(lapic.read_mmio(APIC_LVR), 0);
    assert_eq!(lapic.write_mmio(APIC_TASKPRI, 0x50), ApicAction::None);
    assert_eq!(lapic.read_msr(msr(APIC_TASKPRI)), Ok(0));
    assert_eq!(lapic.write_mmio(APIC_ICR, 0x4_00f0), ApicAction::None);
    // Outside the x2APIC range.
    assert_eq!(lapic.read_msr(0x7ff), Err(ApicFault::NoSuchRegister { msr: 0x7ff }));
    assert_eq!(lapic.read_msr(0x900), Err(ApicFault::NoSuchRegister { msr: 0x900 }));
}

#[test]
fn x2apic_msr_map() {
    let mut lapic = x2apic(0x1234_5678);
    // Full 32-bit ID; LDR from the ID (cluster 0x123_4567, member bit 8).
    assert_eq!(lapic.read_msr(0x802), Ok(0x1234_5678));
    assert_eq!(lapic.read_msr(0x803), Ok(0x0005_0014));
    assert_eq!(lapic.read_msr(0x80d), Ok((0x0123_4567 << 16 | 1 << 8) & 0xffff_ffff));
    // Read-only registers refuse writes.
    for index in [0x802, 0x803, 0x80a, 0x80d, 0x810, 0x817, 0x818, 0x820, 0x827, 0x839] {
        assert_eq!(lapic.write_msr(index, 0), Err(ApicFault::ReadOnly { msr: index }), "{index:#x}");
    }
    // Write-only registers refuse reads.
    for index in [0x80b, 0x83f] {
        assert_eq!(lapic.read_msr(index), Err(ApicFault::WriteOnly { msr: index }), "{index:#x}");
    }
    // Registers x2APIC does not have: APR, RRD, DFR, CMCI (max LVT 5), ICR high, holes.
    for index in [0x800, 0x801, 0x804, 0x809, 0x80c, 0x80e, 0x829, 0x82f, 0x831, 0x83a, 0x83d, 0x840, 0x8ff] {
        assert_eq!(lapic.read_msr(index), Err(ApicFault::NoSuchRegister { msr: index }), "{index:#x}");
        assert_eq!(lapic.write_msr(index, 0), Err(ApicFault::NoSuchRegister { msr: index }), "{index:#x}");
    }
    // Read-write registers read back.
    let round_trips =
        [(0x808, 0x20), (0x80f, 0x1ff), (0x835, 0x1_0700), (0x837, 0xfe), (0x838, 0xffff_ffff), (0x83e, 0xb)];
    for (index, value) in round_trips {
        assert_eq!(lapic.write_msr(index, value), Ok(ApicAction::None), "{index:#x}");
        assert_eq!(lapic.read_msr(index), Ok(value), "{index:#x}");
    }
    // PPR follows TPR; the current count reads 0.
    assert_eq!(lapic.read_msr(0x80a), Ok(0x20));
    assert_eq!(lapic.read_msr(0x839), Ok(0));
}

#[test]
fn x2apic_reserved_bits_fault() {
    let mut lapic = enabled(x2apic(1));
    let faults = [
        (msr(APIC_TASKPRI), 0x100),
        (msr(APIC_TASKPRI), 1 << 32),
        (msr(APIC_SPIV), 1 << 12), // no EOI-broadcast suppression
        (msr(APIC_EOI), 1),
        (msr(APIC_ESR), 0x40),
        (msr(APIC_LVTT), 1 << 19),
        (msr(APIC_LVTTHMR), 1 << 13),
        (msr(APIC_LVT0), 1 << 17),
        (msr(APIC_LVTERR), 0x700), // the error entry has no delivery mode
        (msr(APIC_TDCR), 0x4),
        (msr(APIC_TMICT), 1 << 32),
        (msr(APIC_ICR), 1 << 12), // delivery status is reserved in x2APIC
        (msr(APIC_ICR), 1 << 13),
        (msr(APIC_ICR), 1 << 16),
        (msr(APIC_ICR), 1 << 20),
        (msr(APIC_SELF_IPI), 0x100),
    ];
    for (index, value) in faults {
        assert_eq!(lapic.write_msr(index, value), Err(ApicFault::ReservedBits { msr: index, value }), "{index:#x}");
    }
    // Lenient: delivery status and the unoffered TSC-deadline mode are dropped, not #GP.
    assert_eq!(lapic.write_msr(msr(APIC_LVTT), 0x6_10ef), Ok(ApicAction::None));
    assert_eq!(lapic.read_msr(msr(APIC_LVTT)), Ok(0x2_00ef));
    // Focus-processor checking (SVR bit 9) is accepted.
    assert_eq!(lapic.write_msr(msr(APIC_SPIV), 0x3ff), Ok(ApicAction::None));
    // EOI and ESR with zero are fine.
    assert_eq!(lapic.write_msr(msr(APIC_EOI), 0), Ok(ApicAction::None));
    assert_eq!(lapic.write_msr(msr(APIC_ESR), 0), Ok(ApicAction::None));
}

#[test]
fn xapic_registers_and_reserved_bits_dropped() {
    let mut lapic = VirtualLapic::new(5, false);
    let writes = [
        (APIC_TASKPRI, 0xffff_ffff, 0xff),
        (APIC_LDR, 0xffff_ffff, 0xff00_0000),
        (APIC_DFR, 0x0000_0000, 0x0fff_ffff),
        (APIC_SPIV, 0xffff_ffff, 0x3ff),
        (APIC_LVTT, 0xffff_ffff, 0x3_00ff),
        (APIC_LVTTHMR, 0xffff_ffff, 0x1_07ff),
        (APIC_LVTPC, 0xffff_ffff, 0x1_07ff),
        (APIC_LVT0, 0xffff_ffff, 0x1_a7ff),
        (APIC_LVT1, 0xffff_ffff, 0x1_a7ff),
        (APIC_LVTERR, 0xffff_ffff, 0x1_00ff),
        (APIC_TMICT, 0x1234_5678, 0x1234_5678),
        (APIC_TDCR, 0xffff_ffff, 0xb),
        (APIC_ICR2, 0xffff_ffff, 0xff00_0000),
    ];
    for (offset, value, expected) in writes {
        assert_eq!(lapic.write_mmio(offset, value), ApicAction::None);
        assert_eq!(lapic.read_mmio(offset), expected, "{offset:#x}");
    }
    // Read-only and absent registers ignore writes; ID writes are ignored by choice.
    for offset in [APIC_ID, APIC_LVR, APIC_PROCPRI, APIC_ISR, APIC_IRR, APIC_TMCCT, APIC_CMCI, 0x3f0, 0x400, 0xff0] {
        assert_eq!(lapic.write_mmio(offset, 0xffff_ffff), ApicAction::None);
    }
    assert_eq!(lapic.read_mmio(APIC_ID), 5 << 24);
    assert_eq!(lapic.read_mmio(APIC_LVR), APIC_VERSION);
    assert_eq!(lapic.read_mmio(APIC_CMCI), 0);
    assert_eq!(lapic.read_mmio(APIC_TMCCT), 0);
    assert_eq!(lapic.read_mmio(APIC_EOI), 0);
    assert_eq!(lapic.read_mmio(APIC_ARBPRI), 0);
    // Off a register's first 4 bytes: nothing.
    assert_eq!(lapic.read_mmio(APIC_TASKPRI + 4), 0);
    assert_eq!(lapic.write_mmio(APIC_TASKPRI + 4, 0), ApicAction::None);
    assert_eq!(lapic.read_mmio(APIC_TASKPRI), 0xff);
}

#[test]
fn sized_mmio_accesses() {
    let mut lapic = VirtualLapic::new(0x12, false);
    assert_eq!(lapic.read_mmio_sized(APIC_ID, 4), 0x1200_0000);
    assert_eq!(lapic.read_mmio_sized(APIC_ID + 3, 1), 0x12);
    assert_eq!(lapic.read_mmio_sized(APIC_ID + 2, 2), 0x1200);
    assert_eq!(lapic.read_mmio_sized(APIC_ID + 3, 2), 0, "crosses the register's end");
    assert_eq!(lapic.read_mmio_sized(APIC_ID, 8), 0);
    assert_eq!(lapic.read_mmio_sized(APIC_ID + 4, 4), 0);
    assert_eq!(lapic.write_mmio_sized(APIC_TASKPRI, 1, 0x1_40), ApicAction::None);
    assert_eq!(lapic.read_mmio(APIC_TASKPRI), 0x40);
    assert_eq!(lapic.write_mmio_sized(APIC_LDR + 3, 1, 0x81), ApicAction::None);
    assert_eq!(lapic.read_mmio(APIC_LDR), 0x8100_0000);
    assert_eq!(lapic.write_mmio_sized(APIC_TASKPRI, 8, 0), ApicAction::None);
    assert_eq!(lapic.read_mmio(APIC_TASKPRI), 0x40);
}

#[test]
fn priority_with_tpr_and_isr() {
    let mut lapic = enabled(VirtualLapic::new(0, true));
    assert_eq!(lapic.pending_interrupt(), None);
    assert!(lapic.accept_interrupt(0x31, false));
    assert!(!lapic.accept_interrupt(0x31, false), "already pending: no kick");
    assert_eq!(lapic.pending_interrupt(), Some(0x31));
    // A TPR in the same class blocks it; a lower class does not.
    set_mmio(&mut lapic, APIC_TASKPRI, 0x30);
    assert_eq!(lapic.pending_interrupt(), None);
    assert_eq!(lapic.read_mmio(APIC_PROCPRI), 0x30);
    set_mmio(&mut lapic, APIC_TASKPRI, 0x2f);
    assert_eq!(lapic.pending_interrupt(), Some(0x31));
    set_mmio(&mut lapic, APIC_TASKPRI, 0);
    // In service: same or lower class waits, higher class preempts.
    lapic.acknowledge(0x31);
    assert_eq!(lapic.read_mmio(APIC_ISR + 0x10), 1 << 17);
    assert_eq!(lapic.read_mmio(APIC_IRR + 0x10), 0);
    assert_eq!(lapic.read_mmio(APIC_PROCPRI), 0x30);
    assert!(lapic.accept_interrupt(0x3f, false));
    assert!(lapic.accept_interrupt(0x22, false));
    assert_eq!(lapic.pending_interrupt(), None);
    assert!(lapic.accept_interrupt(0x40, false));
    assert_eq!(lapic.pending_interrupt(), Some(0x40));
    // The highest IRR vector is the candidate, even if a lower one could go.
    set_mmio(&mut lapic, APIC_TASKPRI, 0x40);
    assert_eq!(lapic.pending_interrupt(), None);
    assert_eq!(lapic.read_mmio(APIC_PROCPRI), 0x40);
}

#[test]
fn eoi_ordering() {
    let mut lapic = enabled(VirtualLapic::new(0, true));
    for vector in [0x30, 0x50, 0xef] {
        assert!(lapic.accept_interrupt(vector, false));
        assert_eq!(lapic.pending_interrupt(), Some(vector));
        lapic.acknowledge(vector);
    }
    // Nested: EOI retires the highest in-service vector first.
    assert_eq!(lapic.eoi(), Some(0xef));
    assert_eq!(lapic.read_mmio(APIC_PROCPRI), 0x50);
    // The MMIO EOI register does the same, with any value.
    assert_eq!(lapic.write_mmio(APIC_EOI, 0x1234), ApicAction::None);
    assert_eq!(lapic.read_mmio(APIC_ISR + 0x20), 0);
    assert_eq!(lapic.eoi(), Some(0x30));
    assert_eq!(lapic.eoi(), None);
    assert_eq!(lapic.read_mmio(APIC_PROCPRI), 0);
    // EOI with the x2APIC MSR.
    let mut lapic = enabled(x2apic(0));
    assert!(lapic.accept_interrupt(0xf3, false));
    lapic.acknowledge(0xf3);
    assert_eq!(lapic.read_msr(msr(APIC_ISR + 0x70)), Ok(1 << 19));
    assert_eq!(lapic.write_msr(msr(APIC_EOI), 0), Ok(ApicAction::None));
    assert_eq!(lapic.read_msr(msr(APIC_ISR + 0x70)), Ok(0));
    // Acknowledging a vector that is not pending changes nothing.
    lapic.acknowledge(0x60);
    assert_eq!(lapic.eoi(), None);
}

#[test]
fn trigger_mode_register() {
    let mut lapic = enabled(VirtualLapic::new(0, true));
    assert!(lapic.accept_interrupt(0x41, true));
    assert_eq!(lapic.read_mmio(APIC_TMR + 0x20), 1 << 1);
    lapic.acknowledge(0x41);
    assert_eq!(lapic.eoi(), Some(0x41));
    assert!(lapic.accept_interrupt(0x41, false));
    assert_eq!(lapic.read_mmio(APIC_TMR + 0x20), 0);
}

#[test]
fn software_disabled_holds_interrupts_and_masks_lvts() {
    let mut lapic = VirtualLapic::new(0, true);
    // Accepted while software-disabled: held in IRR, not offered.
    assert!(lapic.accept_interrupt(0x80, false));
    assert_eq!(lapic.pending_interrupt(), None);
    // LVT writes keep the mask while disabled.
    set_mmio(&mut lapic, APIC_LVTERR, 0xfe);
    assert_eq!(lapic.read_mmio(APIC_LVTERR), APIC_LVT_MASKED | 0xfe);
    lapic = enabled(lapic);
    assert_eq!(lapic.pending_interrupt(), Some(0x80));
    assert_eq!(lapic.read_mmio(APIC_LVTERR), APIC_LVT_MASKED | 0xfe, "enabling does not unmask");
    set_mmio(&mut lapic, APIC_LVTERR, 0xfe);
    set_mmio(&mut lapic, APIC_LVT0, 0x700);
    assert_eq!(lapic.read_mmio(APIC_LVTERR), 0xfe);
    // Clearing SVR bit 8 masks every LVT entry.
    set_mmio(&mut lapic, APIC_SPIV, 0xff);
    assert!(!lapic.is_software_enabled());
    assert_eq!(lapic.read_mmio(APIC_LVTERR), APIC_LVT_MASKED | 0xfe);
    assert_eq!(lapic.read_mmio(APIC_LVT0), APIC_LVT_MASKED | 0x700);
    assert_eq!(lapic.pending_interrupt(), None);
    // The same through x2APIC.
    let mut lapic = enabled(x2apic(0));
    set_msr(&mut lapic, msr(APIC_LVTPC), 0x400);
    set_msr(&mut lapic, msr(APIC_SPIV), 0xff);
    assert_eq!(lapic.read_msr(msr(APIC_LVTPC)), Ok(0x1_0400));
    set_msr(&mut lapic, msr(APIC_LVTPC), 0x400);
    assert_eq!(lapic.read_msr(msr(APIC_LVTPC)), Ok(0x1_0400));
}

#[test]
fn esr_latches_on_write_and_raises_the_error_vector() {
    let mut lapic = enabled(VirtualLapic::new(0, true));
    // An illegal vector is refused and recorded; the visible ESR changes on a write.
    assert!(!lapic.accept_interrupt(15, false));
    assert_eq!(lapic.read_mmio(APIC_IRR), 0);
    assert_eq!(lapic.read_mmio(APIC_ESR), 0);
    set_mmio(&mut lapic, APIC_ESR, 0);
    assert_eq!(lapic.read_mmio(APIC_ESR), APIC_ESR_RECEIVE_ILLEGAL_VECTOR);
    set_mmio(&mut lapic, APIC_ESR, 0);
    assert_eq!(lapic.read_mmio(APIC_ESR), 0, "the latch cleared the accumulated errors");
    // With the error LVT unmasked, a new error raises its vector.
    set_mmio(&mut lapic, APIC_LVTERR, 0xfe);
    assert!(lapic.accept_interrupt(3, false), "the error vector became pending");
    assert_eq!(lapic.pending_interrupt(), Some(0xfe));
    assert!(!lapic.accept_interrupt(3, false), "the same error again is not new");
    // A fixed IPI with an illegal vector is not sent.
    assert_eq!(lapic.write_mmio(APIC_ICR, 0x0000_0005), ApicAction::None);
    set_mmio(&mut lapic, APIC_ESR, 0);
    assert_eq!(lapic.read_mmio(APIC_ESR), APIC_ESR_RECEIVE_ILLEGAL_VECTOR | APIC_ESR_SEND_ILLEGAL_VECTOR);
    // x2APIC: the ESR write must be 0 and latches the same way.
    let mut lapic = enabled(x2apic(0));
    assert_eq!(lapic.write_msr(msr(APIC_SELF_IPI), 2), Ok(ApicAction::None));
    assert_eq!(lapic.write_msr(msr(APIC_ESR), 0), Ok(ApicAction::None));
    assert_eq!(lapic.read_msr(msr(APIC_ESR)), Ok(u64::from(APIC_ESR_SEND_ILLEGAL_VECTOR)));
}

#[test]
fn xapic_icr_ipis() {
    let mut lapic = enabled(VirtualLapic::new(0, true));
    // Linux's AP start: destination in ICR high, then INIT assert, INIT de-assert, SIPI.
    assert_eq!(lapic.write_mmio(APIC_ICR2, 0x0300_0000), ApicAction::None);
    let init = ipi(lapic.write_mmio(APIC_ICR, 0x0000_c500));
    assert_eq!(
        init,
        IpiRequest {
            vector: 0,
            delivery: DeliveryMode::Init,
            destination: Destination::Physical(3),
            level_assert: true,
            trigger_level: true,
            x2apic_destination: false,
        }
    );
    assert_eq!(ipi(lapic.write_mmio(APIC_ICR, 0x0000_8500)).delivery, DeliveryMode::InitDeassert);
    let startup = ipi(lapic.write_mmio(APIC_ICR, 0x0000_0699));
    assert_eq!(
        (startup.delivery, startup.vector, startup.destination),
        (DeliveryMode::StartUp, 0x99, Destination::Physical(3))
    );
    // Delivery status reads idle; ICR low and high read back.
    assert_eq!(lapic.read_mmio(APIC_ICR), 0x0000_0699);
    assert_eq!(lapic.read_mmio(APIC_ICR2), 0x0300_0000);
    assert!(matches!(lapic.write_mmio(APIC_ICR, 0x0000_10f0), ApicAction::Ipi(_)));
    assert_eq!(lapic.read_mmio(APIC_ICR) & (1 << 12), 0);
    // Fixed, logical.
    set_mmio(&mut lapic, APIC_ICR2, 0x0600_0000);
    let fixed = ipi(lapic.write_mmio(APIC_ICR, 0x0000_08f3));
    assert_eq!((fixed.delivery, fixed.vector, fixed.destination), (DeliveryMode::Fixed, 0xf3, Destination::Logical(6)));
    // Shorthands: self, all including self, all excluding self (NMI, as Linux's stop).
    assert_eq!(ipi(lapic.write_mmio(APIC_ICR, 0x0004_00f6)).destination, Destination::SelfOnly);
    assert_eq!(ipi(lapic.write_mmio(APIC_ICR, 0x0008_00fd)).destination, Destination::AllIncludingSelf);
    let nmi = ipi(lapic.write_mmio(APIC_ICR, 0x000c_0402));
    assert_eq!((nmi.delivery, nmi.destination), (DeliveryMode::Nmi, Destination::AllExcludingSelf));
    assert_eq!(ipi(lapic.write_mmio(APIC_ICR, 0x0000_01f0)).delivery, DeliveryMode::LowestPriority);
    assert_eq!(ipi(lapic.write_mmio(APIC_ICR, 0x0000_0200)).delivery, DeliveryMode::Smi);
    // Reserved delivery modes send nothing.
    assert_eq!(lapic.write_mmio(APIC_ICR, 0x0000_03f0), ApicAction::None);
    assert_eq!(lapic.write_mmio(APIC_ICR, 0x0000_07f0), ApicAction::None);
    // ICR high alone sends nothing.
    assert_eq!(lapic.write_mmio(APIC_ICR2, 0x0100_0000), ApicAction::None);
}

#[test]
fn x2apic_icr_and_self_ipi() {
    let mut lapic = enabled(x2apic(0));
    // Linux's x2APIC INIT to APIC ID 0x101: one 64-bit write, destination in 63:32.
    let init = ipi(lapic.write_msr(msr(APIC_ICR), (0x101 << 32) | 0xc500).unwrap());
    assert_eq!(
        init,
        IpiRequest {
            vector: 0,
            delivery: DeliveryMode::Init,
            destination: Destination::Physical(0x101),
            level_assert: true,
            trigger_level: true,
            x2apic_destination: true,
        }
    );
    assert_eq!(lapic.read_msr(msr(APIC_ICR)), Ok((0x101 << 32) | 0xc500));
    let deassert = ipi(lapic.write_msr(msr(APIC_ICR), (0x101 << 32) | 0x8500).unwrap());
    assert_eq!(deassert.delivery, DeliveryMode::InitDeassert);
    let startup = ipi(lapic.write_msr(msr(APIC_ICR), (0x101 << 32) | 0x0699).unwrap());
    assert_eq!((startup.delivery, startup.vector), (DeliveryMode::StartUp, 0x99));
    let fixed = ipi(lapic.write_msr(msr(APIC_ICR), (7 << 32) | 0x00fd).unwrap());
    assert_eq!(
        (fixed.delivery, fixed.vector, fixed.destination),
        (DeliveryMode::Fixed, 0xfd, Destination::Physical(7))
    );
    let all_but_self = ipi(lapic.write_msr(msr(APIC_ICR), 0x000c_00fd).unwrap());
    assert_eq!(all_but_self.destination, Destination::AllExcludingSelf);
    let logical = ipi(lapic.write_msr(msr(APIC_ICR), (0x0001_0004 << 32) | 0x08fd).unwrap());
    assert_eq!(logical.destination, Destination::Logical(0x0001_0004));
    // SELF IPI: fixed, edge, to self.
    let self_ipi = ipi(lapic.write_msr(msr(APIC_SELF_IPI), 0xf6).unwrap());
    assert_eq!(
        self_ipi,
        IpiRequest {
            vector: 0xf6,
            delivery: DeliveryMode::Fixed,
            destination: Destination::SelfOnly,
            level_assert: false,
            trigger_level: false,
            x2apic_destination: true,
        }
    );
    assert!(lapic.is_ipi_target(&self_ipi, 0));
}

#[test]
fn physical_and_logical_destinations() {
    // xAPIC physical, broadcast.
    let lapic = VirtualLapic::new(3, false);
    assert!(lapic.matches_destination(3, false, false));
    assert!(!lapic.matches_destination(4, false, false));
    assert!(lapic.matches_destination(0xff, false, false));
    // xAPIC logical flat (DFR all ones): LDR bitmap & destination.
    let mut flat = VirtualLapic::new(3, false);
    set_mmio(&mut flat, APIC_LDR, 0x0800_0000);
    assert!(flat.matches_destination(0x08, true, false));
    assert!(flat.matches_destination(0x0c, true, false));
    assert!(!flat.matches_destination(0x07, true, false));
    assert!(flat.matches_destination(0xff, true, false));
    // xAPIC logical cluster (DFR model 0): cluster 2, member bit 1.
    let mut cluster = VirtualLapic::new(3, false);
    set_mmio(&mut cluster, APIC_DFR, 0x0fff_ffff);
    set_mmio(&mut cluster, APIC_LDR, 0x2200_0000);
    assert!(cluster.matches_destination(0x23, true, false));
    assert!(!cluster.matches_destination(0x13, true, false));
    assert!(!cluster.matches_destination(0x21, true, false));
    // x2APIC physical with 32-bit IDs and broadcast.
    let wide = x2apic(0x1_0023);
    assert!(wide.matches_destination(0x1_0023, false, true));
    assert!(!wide.matches_destination(0x23, false, true));
    assert!(wide.matches_destination(0xffff_ffff, false, true));
    assert!(!wide.matches_destination(0xff, false, true), "0xff is not a broadcast in x2APIC format");
    // x2APIC logical cluster: cluster 0x1002, member bit 3.
    assert_eq!(wide.read_msr(msr(APIC_LDR)), Ok(0x1002_0008));
    assert!(wide.matches_destination(0x1002_0008, true, true));
    assert!(wide.matches_destination(0x1002_ffff, true, true));
    assert!(!wide.matches_destination(0x1002_0004, true, true));
    assert!(!wide.matches_destination(0x1003_0008, true, true));
    assert!(wide.matches_destination(0xffff_ffff, true, true));
}

#[test]
fn ipi_targets_by_shorthand() {
    let cpus: [VirtualLapic; 3] = core::array::from_fn(|id| enabled(VirtualLapic::new(id as u32, id == 0)));
    let mut sender = cpus[0].clone();
    let targets = |action: ApicAction| -> [bool; 3] {
        let request = ipi(action);
        core::array::from_fn(|index| cpus[index].is_ipi_target(&request, 0))
    };
    set_mmio(&mut sender, APIC_ICR2, 0x0200_0000);
    assert_eq!(targets(sender.write_mmio(APIC_ICR, 0x0000_00f0)), [false, false, true]);
    assert_eq!(targets(sender.write_mmio(APIC_ICR, 0x0004_00f0)), [true, false, false]);
    assert_eq!(targets(sender.write_mmio(APIC_ICR, 0x0008_00f0)), [true, true, true]);
    assert_eq!(targets(sender.write_mmio(APIC_ICR, 0x000c_00f0)), [false, true, true]);
    set_mmio(&mut sender, APIC_ICR2, 0xff00_0000);
    assert_eq!(targets(sender.write_mmio(APIC_ICR, 0x0000_00f0)), [true, true, true]);
}

#[test]
fn bitmap_helpers() {
    let mut bitmap = [0u32; 8];
    assert_eq!(highest_bit(&bitmap), None);
    for vector in [16u8, 31, 32, 200, 255] {
        assert!(!set_bit(&mut bitmap, vector, true));
        assert_eq!(highest_bit(&bitmap), Some(vector));
    }
    assert!(set_bit(&mut bitmap, 255, false));
    assert_eq!(highest_bit(&bitmap), Some(200));
}

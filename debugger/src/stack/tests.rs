//! Unwinder tests on fake stacks: a frame-pointer chain, a frame-pointer loop, an ORC
//! walk through a call frame and an interrupt's `pt_regs` frame, and `::cpustack`'s
//! output.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;

use super::*;
use crate::dcmd::{DcmdCall, Debuggee};
use crate::symbols::elf::tests::build_elf64;
use crate::target::testing::FakeTarget;

const FUNCTION: u8 = 2;
const OBJECT: u8 = 1;
const STACK: u64 = 0x7000_0f00;

fn fp_target(looping: bool) -> FakeTarget {
    let mut target = FakeTarget::new();
    target.kernel_symbol_file = Some(build_elf64(&[
        ("a", 0x40_1000, 0x100, FUNCTION),
        ("b", 0x40_2000, 0x100, FUNCTION),
        ("c", 0x40_3000, 0x100, FUNCTION),
    ]));
    let frame_c = STACK + 0x20;
    let frame_b = STACK + 0x60;
    let frame_a = STACK + 0xa0;
    let mut stack = alloc::vec![0u8; 0x100];
    let mut put = |address: u64, value: u64| {
        let at = (address - STACK) as usize;
        stack[at..at + 8].copy_from_slice(&value.to_le_bytes());
    };
    put(frame_c, frame_b);
    put(frame_c + 8, 0x40_2015);
    put(frame_b, if looping { frame_c } else { frame_a });
    put(frame_b + 8, 0x40_1025);
    put(frame_a, 0);
    put(frame_a + 8, 0);
    target.write_virtual(STACK, 0x20_0f00, &stack);
    target.registers[0].rip = 0x40_3010;
    target.registers[0].rsp = STACK;
    target.registers[0].rbp = frame_c;
    target
}

fn cpustack(debuggee: &Debuggee<'_>, args: &[&str]) -> String {
    let args: Vec<String> = args.iter().map(|arg| String::from(*arg)).collect();
    let call = DcmdCall { address: None, count: None, args: &args };
    let mut out = String::new();
    let dcmd = crate::dcmds::find_dcmd("cpustack").unwrap();
    (dcmd.run)(debuggee, &call, &mut out).unwrap();
    out
}

#[test]
fn frame_pointer_chain_names_c_b_a() {
    let debuggee = Debuggee::new(Box::new(fp_target(false)));
    let registers = debuggee.registers().unwrap();
    let (frames, stopped) = unwind(&debuggee, &registers);
    let pcs: Vec<u64> = frames.iter().map(|frame| frame.pc).collect();
    assert_eq!(pcs, alloc::vec![0x40_3010, 0x40_2015, 0x40_1025]);
    assert_eq!(stopped, None);
    assert_eq!(cpustack(&debuggee, &[]), "c+0x10()\nb+0x15()\na+0x25()\n");
}

#[test]
fn a_frame_pointer_loop_ends() {
    let debuggee = Debuggee::new(Box::new(fp_target(true)));
    let registers = debuggee.registers().unwrap();
    let (frames, stopped) = unwind(&debuggee, &registers);
    assert_eq!(frames.len(), 3);
    assert!(stopped.unwrap().contains("does not move up"));
    let output = cpustack(&debuggee, &[]);
    assert!(output.starts_with("c+0x10()\nb+0x15()\na+0x25()\n(unwinding by frame pointers stopped"), "{output}");
}

#[test]
fn an_unmapped_stack_stops_after_the_first_frame() {
    let mut target = fp_target(false);
    target.registers[0].rbp = 0x9000_0000;
    target.registers[0].rsp = 0x8fff_ff00;
    let debuggee = Debuggee::new(Box::new(target));
    let registers = debuggee.registers().unwrap();
    let unwinding = unwind_with_method(&debuggee, &registers);
    // Frame pointers gave one frame: the scan runs, and cannot read either.
    assert_eq!(unwinding.frames.len(), 1);
    assert_eq!(unwinding.method, Method::Scan);
}

const KERNEL_TEXT: u64 = 0xffff_ffff_8100_0000;
const F1: u64 = KERNEL_TEXT + 0x1000;
const F2: u64 = KERNEL_TEXT + 0x2000;
const F3: u64 = KERNEL_TEXT + 0x3000;
const ORC_IP: u64 = 0xffff_ffff_8200_0000;
const ORC_ENTRIES: u64 = 0xffff_ffff_8200_1000;
const KERNEL_STACK: u64 = 0xffff_c900_0000_0f00;

fn orc_target() -> FakeTarget {
    let mut target = FakeTarget::new();
    target.kernel_symbol_file = Some(build_elf64(&[
        ("f1", F1, 0x100, FUNCTION),
        ("f2_interrupted", F2, 0x100, FUNCTION),
        ("f3", F3, 0x100, FUNCTION),
        ("__start_orc_unwind_ip", ORC_IP, 0, OBJECT),
        ("__stop_orc_unwind_ip", ORC_IP + 12, 0, OBJECT),
        ("__start_orc_unwind", ORC_ENTRIES, 0, OBJECT),
    ]));
    let mut ips = Vec::new();
    for (index, ip) in [F1, F2, F3].iter().enumerate() {
        let relative = ip.wrapping_sub(ORC_IP + 4 * index as u64) as i64 as i32;
        ips.extend_from_slice(&relative.to_le_bytes());
    }
    target.write_virtual(ORC_IP, 0x30_0000, &ips);
    let entries: [u8; 18] = [
        // f1: call frame, CFA = sp + 16, caller's rbp saved at CFA - 16.
        16, 0, 0xf0, 0xff, 0x15, 0x00, //
        // f2: interrupted, pt_regs at CFA = sp + 0.
        0, 0, 0, 0, 0x05, 0x01, //
        // f3: end of stack.
        0, 0, 0, 0, 0x00, 0x04,
    ];
    target.write_virtual(ORC_ENTRIES, 0x30_1000, &entries);
    let mut stack = alloc::vec![0u8; 0x100];
    let mut put = |offset: usize, value: u64| stack[offset..offset + 8].copy_from_slice(&value.to_le_bytes());
    put(0, 0xabcd); // f1's saved rbp
    put(8, F2 + 0x20); // return address into f2... which was interrupted:
    put(16 + 32, 0x1234); // pt_regs.bp
    put(16 + 128, F3 + 0x5); // pt_regs.ip
    put(16 + 136, 0x10); // pt_regs.cs: kernel
    put(16 + 152, KERNEL_STACK + 0x400); // pt_regs.sp
    target.write_virtual(KERNEL_STACK, 0x31_0f00, &stack);
    target.registers[0].rip = F1 + 0x10;
    target.registers[0].rsp = KERNEL_STACK;
    target.registers[0].rbp = 0x5555;
    target
}

#[test]
fn orc_walks_a_call_frame_and_an_interrupt_frame() {
    let debuggee = Debuggee::new(Box::new(orc_target()));
    let registers = debuggee.registers().unwrap();
    let unwinding = unwind_with_method(&debuggee, &registers);
    assert_eq!(unwinding.method, Method::Orc);
    assert_eq!(
        unwinding.frames,
        alloc::vec![
            Frame { pc: F1 + 0x10, sp: KERNEL_STACK, frame_pointer: 0x5555 },
            Frame { pc: F2 + 0x20, sp: KERNEL_STACK + 16, frame_pointer: 0xabcd },
            Frame { pc: F3 + 0x5, sp: KERNEL_STACK + 0x400, frame_pointer: 0x1234 },
        ]
    );
    assert_eq!(unwinding.stopped, None);
    assert_eq!(cpustack(&debuggee, &[]), "f1+0x10()\nf2_interrupted+0x20()\nf3+0x5()\n");
}

#[test]
fn orc_entry_formats_by_release() {
    let call_6_1 = orc::Entry::decode([16, 0, 0, 0, 0x15, 0x00], orc::Format::Before6_3);
    assert_eq!(call_6_1.kind, orc::FrameKind::Call);
    assert_eq!((call_6_1.sp_register, call_6_1.bp_register, call_6_1.sp_offset), (5, 1, 16));
    assert_eq!(orc::Entry::decode([0; 6], orc::Format::From6_4).kind, orc::FrameKind::Undefined);
    assert_eq!(orc::Entry::decode([0, 0, 0, 0, 5, 2], orc::Format::From6_4).kind, orc::FrameKind::Call);
    assert_eq!(orc::Entry::decode([0, 0, 0, 0, 5, 3], orc::Format::From6_4).kind, orc::FrameKind::Registers);
    assert_eq!(orc::Format::for_release(Some((6, 1))), orc::Format::Before6_3);
    assert_eq!(orc::Format::for_release(Some((6, 8))), orc::Format::From6_4);
}

#[test]
fn a_return_address_just_past_its_caller_names_the_caller() {
    // b's call to c is b's last instruction (c never returns): the return address is
    // b's end, which no symbol contains; the frame is still b's.
    let mut target = fp_target(false);
    let frame_c = STACK + 0x20;
    target.write_virtual(frame_c + 8, 0x20_0f00 + 0x28, &0x40_2100u64.to_le_bytes());
    let debuggee = Debuggee::new(Box::new(target));
    assert_eq!(cpustack(&debuggee, &[]), "c+0x10()\nb+0x100()\na+0x25()\n");
}

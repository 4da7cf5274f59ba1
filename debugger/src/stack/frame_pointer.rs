//! The frame-pointer unwinder: code built with frame pointers keeps `[rbp]` = the
//! caller's rbp and `[rbp + 8]` = the return address, so the chain of rbp values is the
//! chain of frames.
//!
//! Invariants: the walk ends after [`super::MAXIMUM_FRAMES`] frames, on an unmapped
//! read, a zero frame pointer or return address, or a frame pointer that does not move
//! up the stack (which also ends loops).

use alloc::string::String;
use alloc::vec::Vec;

use super::{Frame, Memory, MAXIMUM_FRAMES};
use crate::target::Registers;

/// The frames from `registers` along the rbp chain, and why the walk stopped.
pub(crate) fn unwind(memory: &Memory<'_>, registers: &Registers) -> (Vec<Frame>, Option<String>) {
    let mut frames = alloc::vec![Frame { pc: registers.rip, sp: registers.rsp, frame_pointer: registers.rbp }];
    let mut frame_pointer = registers.rbp;
    let mut lowest = registers.rsp;
    while frames.len() < MAXIMUM_FRAMES {
        if frame_pointer == 0 {
            return (frames, None);
        }
        if frame_pointer < lowest {
            return (frames, Some(alloc::format!("frame pointer {frame_pointer:#x} is below the stack pointer")));
        }
        let (saved, return_address) = match (memory.u64(frame_pointer), memory.u64(frame_pointer.wrapping_add(8))) {
            (Ok(saved), Ok(return_address)) => (saved, return_address),
            (Err(error), _) | (_, Err(error)) => return (frames, Some(alloc::format!("{error}"))),
        };
        if return_address == 0 {
            return (frames, None);
        }
        frames.push(Frame { pc: return_address, sp: frame_pointer.wrapping_add(16), frame_pointer: saved });
        if saved != 0 && saved <= frame_pointer {
            return (frames, Some(alloc::format!("frame pointer {saved:#x} does not move up the stack")));
        }
        lowest = frame_pointer.wrapping_add(16);
        frame_pointer = saved;
    }
    (frames, Some(alloc::format!("stopped after {MAXIMUM_FRAMES} frames")))
}

//! The multiboot2 framebuffer as a log console: device glue around the portable
//! [`super::fbtext::TextConsole`]. The framebuffer is reached through the direct map.

use super::fbtext::{PixelFormat, TextConsole};
use crate::arch::instructions::without_interrupts;
use spin::Mutex;

struct Screen {
    console: TextConsole,
    pixels: &'static mut [u8],
}

static SCREEN: Mutex<Option<Screen>> = Mutex::new(None);

/// Where GRUB put the framebuffer and its geometry.
#[derive(Clone, Copy, Debug)]
pub struct FramebufferInfo {
    pub physical_address: u64,
    pub width: usize,
    pub height: usize,
    pub pitch: usize,
    pub format: PixelFormat,
}

/// Takes the framebuffer over as a text console (cleared). Returns false if its
/// geometry is unusable.
pub fn init(info: FramebufferInfo) -> bool {
    let Ok(mut console) = TextConsole::new(info.width, info.height, info.pitch, info.format) else {
        return false;
    };
    let Some(length) = info.pitch.checked_mul(info.height) else { return false };
    let Some(virtual_address) = crate::mm::paging::map_device(info.physical_address, length as u64) else {
        return false;
    };
    // SAFETY: map_device mapped `length` bytes of the framebuffer at virtual_address;
    // the framebuffer is owned by the hypervisor alone and only touched under SCREEN.
    let pixels = unsafe { core::slice::from_raw_parts_mut(virtual_address as *mut u8, length) };
    console.clear(pixels);
    without_interrupts(|| *SCREEN.lock() = Some(Screen { console, pixels }));
    true
}

/// Appends one log line.
pub fn write_line(line: &str) {
    without_interrupts(|| {
        if let Some(screen) = SCREEN.lock().as_mut() {
            screen.console.write_str(screen.pixels, line);
            screen.console.write_str(screen.pixels, "\n");
        }
    });
}

/// Best-effort write for emergencies: skipped if another context holds the screen.
pub fn try_write(text: &str) {
    if let Some(mut guard) = SCREEN.try_lock() {
        if let Some(screen) = guard.as_mut() {
            screen.console.write_str(screen.pixels, text);
        }
    }
}

/// Text geometry (columns, rows) if a framebuffer console is active.
pub fn geometry() -> Option<(usize, usize)> {
    without_interrupts(|| SCREEN.lock().as_ref().map(|s| (s.console.columns(), s.console.rows())))
}

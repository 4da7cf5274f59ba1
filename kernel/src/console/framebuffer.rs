//! The multiboot2 framebuffer as a log console: device glue around the portable
//! renderers — [`super::fbtext::TextConsole`] for direct-colour graphics modes and
//! [`super::egatext::EgaTextConsole`] for EGA text mode. The framebuffer is reached
//! through the direct map.

use super::egatext::EgaTextConsole;
use super::fbtext::{PixelFormat, TextConsole};
use crate::arch::instructions::without_interrupts;
use spin::Mutex;

enum Renderer {
    Graphics(TextConsole),
    Text(EgaTextConsole),
}

struct Screen {
    renderer: Renderer,
    pixels: &'static mut [u8],
}

impl Screen {
    fn write_str(&mut self, text: &str) {
        match &mut self.renderer {
            Renderer::Graphics(console) => console.write_str(self.pixels, text),
            Renderer::Text(console) => console.write_str(self.pixels, text),
        }
    }
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

/// Takes a graphics framebuffer over as a text console (cleared). Returns false if its
/// geometry is unusable.
pub fn init(info: FramebufferInfo) -> bool {
    let Ok(console) = TextConsole::new(info.width, info.height, info.pitch, info.format) else {
        return false;
    };
    install(info.physical_address, info.pitch, info.height, |pixels| {
        let mut console = console;
        console.clear(pixels);
        Renderer::Graphics(console)
    })
}

/// Takes an 8-bit indexed-colour framebuffer over, drawing with the given palette
/// entries.
pub fn init_indexed(info: FramebufferInfo, foreground_index: u8, background_index: u8) -> bool {
    let Ok(console) = TextConsole::new_indexed(info.width, info.height, info.pitch, foreground_index, background_index)
    else {
        return false;
    };
    install(info.physical_address, info.pitch, info.height, |pixels| {
        let mut console = console;
        console.clear(pixels);
        Renderer::Graphics(console)
    })
}

/// Takes an EGA text-mode screen over (`columns` × `rows` cells, `pitch` bytes a row).
pub fn init_text_mode(physical_address: u64, columns: usize, rows: usize, pitch: usize) -> bool {
    let Ok(console) = EgaTextConsole::new(columns, rows, pitch) else { return false };
    install(physical_address, pitch, rows, |cells| {
        let mut console = console;
        console.clear(cells);
        Renderer::Text(console)
    })
}

fn install(physical_address: u64, pitch: usize, rows: usize, make: impl FnOnce(&mut [u8]) -> Renderer) -> bool {
    let Some(length) = pitch.checked_mul(rows) else { return false };
    let Some(virtual_address) = crate::mm::paging::map_device(physical_address, length as u64) else {
        return false;
    };
    // SAFETY: map_device mapped `length` bytes of the framebuffer at virtual_address;
    // the framebuffer is owned by the hypervisor alone and only touched under SCREEN.
    let pixels = unsafe { core::slice::from_raw_parts_mut(virtual_address as *mut u8, length) };
    let renderer = make(pixels);
    without_interrupts(|| *SCREEN.lock() = Some(Screen { renderer, pixels }));
    true
}

/// Appends one log line.
pub fn write_line(line: &str) {
    without_interrupts(|| {
        if let Some(screen) = SCREEN.lock().as_mut() {
            screen.write_str(line);
            screen.write_str("\n");
        }
    });
}

/// Best-effort write for emergencies: skipped if another context holds the screen.
pub fn try_write(text: &str) {
    if let Some(mut guard) = SCREEN.try_lock() {
        if let Some(screen) = guard.as_mut() {
            screen.write_str(text);
        }
    }
}

/// Text geometry (columns, rows) if a screen console is active.
pub fn geometry() -> Option<(usize, usize)> {
    without_interrupts(|| {
        SCREEN.lock().as_ref().map(|screen| match &screen.renderer {
            Renderer::Graphics(console) => (console.columns(), console.rows()),
            Renderer::Text(console) => (console.columns(), console.rows()),
        })
    })
}

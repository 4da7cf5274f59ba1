//! A text console drawn into a linear framebuffer that the caller passes as `&mut [u8]`.
//!
//! Why: on a machine without a serial port the framebuffer is the only place the log is
//! seen. The hardware glue maps the framebuffer and hands it in; this module only computes
//! pixels, so it is tested on the host by rendering into a `Vec` and decoding it back.
//!
//! Geometry (a contract: the emulator tests decode QEMU screen dumps with [`glyph_cell`]):
//! - the font is `font8x8::legacy::BASIC_LEGACY` (8x8, bit 0 of a row byte is the leftmost
//!   pixel);
//! - a cell is [`CELL_WIDTH`] = 8 pixels wide and [`CELL_HEIGHT`] = 16 tall: glyph row `r`
//!   is drawn on pixel rows `2r` and `2r + 1`;
//! - cell (col, row) has its top-left pixel at (col * 8, row * 16);
//! - characters other than printable ASCII (0x20..=0x7E) are drawn as '?'.
//!
//! Pixels are packed from 8-bit-per-channel colours with the [`PixelFormat`]'s shifts and
//! sizes (the multiboot2 framebuffer tag's RGB description) and stored little-endian in 2,
//! 3 or 4 bytes. Control characters: '\n' goes to column 0 of the next row, '\r' to column
//! 0, '\t' moves (without drawing) to the next multiple of 8, or to the next row when that
//! is past the edge. A
//! character written past the right edge first wraps to the next row (a deferred wrap, so a
//! full line followed by '\n' does not leave a blank line); the bottom row scrolls the text
//! up by one row.
//!
//! Invariant: nothing is written outside `fb`, however short it is.

use core::fmt;

/// Width of a character cell in pixels.
pub const CELL_WIDTH: usize = 8;
/// Height of a character cell in pixels (each font row is drawn twice).
pub const CELL_HEIGHT: usize = 16;

/// The character drawn for anything that is not printable ASCII.
const REPLACEMENT_CHARACTER: char = '?';
/// Default foreground colour, VGA light grey.
pub const DEFAULT_FOREGROUND: (u8, u8, u8) = (0xAA, 0xAA, 0xAA);
/// Default background colour.
pub const DEFAULT_BACKGROUND: (u8, u8, u8) = (0, 0, 0);

/// The 16 row bitmaps of the cell for `c` as drawn (bit 0 = leftmost pixel).
pub fn glyph_cell(c: char) -> [u8; CELL_HEIGHT] {
    let printable = if (' '..='~').contains(&c) { c } else { REPLACEMENT_CHARACTER };
    let glyph = font8x8::legacy::BASIC_LEGACY.get(printable as usize).copied().unwrap_or([0; 8]);
    let mut cell = [0u8; CELL_HEIGHT];
    for (pixel_row, bits) in cell.iter_mut().enumerate() {
        *bits = glyph.get(pixel_row / 2).copied().unwrap_or(0);
    }
    cell
}

/// How a colour is laid out in one pixel (from the firmware's framebuffer description).
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub struct PixelFormat {
    /// 2, 3 or 4.
    pub bytes_per_pixel: u8,
    pub red_shift: u8,
    pub red_bits: u8,
    pub green_shift: u8,
    pub green_bits: u8,
    pub blue_shift: u8,
    pub blue_bits: u8,
}

impl PixelFormat {
    /// 32-bit x8r8g8b8, what QEMU's and most UEFI framebuffers use.
    pub const XRGB8888: PixelFormat = PixelFormat {
        bytes_per_pixel: 4,
        red_shift: 16,
        red_bits: 8,
        green_shift: 8,
        green_bits: 8,
        blue_shift: 0,
        blue_bits: 8,
    };

    /// Packs an 8-bit-per-channel colour into a pixel value (low bytes used).
    pub fn pack(&self, (red, green, blue): (u8, u8, u8)) -> u32 {
        pack_channel(red, self.red_shift, self.red_bits)
            | pack_channel(green, self.green_shift, self.green_bits)
            | pack_channel(blue, self.blue_shift, self.blue_bits)
    }

    fn validate(&self) -> Result<(), FbError> {
        if !(2..=4).contains(&self.bytes_per_pixel) {
            return Err(FbError::UnsupportedBytesPerPixel(self.bytes_per_pixel));
        }
        let pixel_bits = u32::from(self.bytes_per_pixel) * 8;
        for (shift, bits) in
            [(self.red_shift, self.red_bits), (self.green_shift, self.green_bits), (self.blue_shift, self.blue_bits)]
        {
            if bits > 8 || u32::from(shift) + u32::from(bits) > pixel_bits {
                return Err(FbError::BadChannelLayout);
            }
        }
        Ok(())
    }
}

/// The top `bits` bits of `value`, placed at `shift`.
fn pack_channel(value: u8, shift: u8, bits: u8) -> u32 {
    if bits == 0 || bits > 8 {
        return 0;
    }
    (u32::from(value) >> (8 - bits)).checked_shl(u32::from(shift)).unwrap_or(0)
}

/// The index of the palette entry closest to `target` (squared RGB distance), or None
/// for an empty palette. Palettes longer than 256 entries are cut at 256.
pub fn nearest_palette_index(palette: &[(u8, u8, u8)], target: (u8, u8, u8)) -> Option<u8> {
    let distance = |(red, green, blue): (u8, u8, u8)| {
        let channel = |a: u8, b: u8| (i32::from(a) - i32::from(b)).pow(2);
        channel(red, target.0) + channel(green, target.1) + channel(blue, target.2)
    };
    palette.iter().take(256).enumerate().min_by_key(|(_, &colour)| distance(colour)).map(|(index, _)| index as u8)
}

/// Why a framebuffer cannot carry a text console.
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub enum FbError {
    /// Width or height is zero.
    ZeroSize,
    /// The pitch (bytes per scan line) is smaller than width * bytes per pixel.
    PitchTooSmall,
    /// Only 2, 3 and 4 bytes per pixel are supported.
    UnsupportedBytesPerPixel(u8),
    /// A colour channel is wider than 8 bits or lies outside the pixel.
    BadChannelLayout,
    /// Not even one 8x16 cell fits.
    TooSmallForOneCell,
}

impl fmt::Display for FbError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FbError::ZeroSize => formatter.write_str("framebuffer width or height is zero"),
            FbError::PitchTooSmall => formatter.write_str("framebuffer pitch is too small"),
            FbError::UnsupportedBytesPerPixel(bytes) => {
                write!(formatter, "unsupported framebuffer depth: {bytes} bytes per pixel")
            }
            FbError::BadChannelLayout => formatter.write_str("bad framebuffer colour layout"),
            FbError::TooSmallForOneCell => formatter.write_str("framebuffer too small for one text cell"),
        }
    }
}

/// The state of a text console: geometry, colours and the cursor.
#[derive(Clone, Debug)]
pub struct TextConsole {
    width_px: usize,
    height_px: usize,
    pitch_bytes: usize,
    format: PixelFormat,
    columns: usize,
    rows: usize,
    cursor_column: usize,
    cursor_row: usize,
    foreground_pixel: u32,
    background_pixel: u32,
}

impl TextConsole {
    /// Describes a framebuffer of `width_px` x `height_px` pixels with `pitch_bytes` per
    /// scan line; rejects layouts that cannot be drawn.
    pub fn new(
        width_px: usize,
        height_px: usize,
        pitch_bytes: usize,
        format: PixelFormat,
    ) -> Result<TextConsole, FbError> {
        format.validate()?;
        Self::with_pixels(
            width_px,
            height_px,
            pitch_bytes,
            format,
            format.pack(DEFAULT_FOREGROUND),
            format.pack(DEFAULT_BACKGROUND),
        )
    }

    /// A console on an 8-bit indexed-colour framebuffer (what some VGA BIOSes give):
    /// text is drawn with palette entry `foreground_index` on `background_index`, which
    /// the caller picks from the firmware's palette (see [`nearest_palette_index`]).
    /// [`TextConsole::set_colors`] has no effect on such a console.
    pub fn new_indexed(
        width_px: usize,
        height_px: usize,
        pitch_bytes: usize,
        foreground_index: u8,
        background_index: u8,
    ) -> Result<TextConsole, FbError> {
        let format = PixelFormat {
            bytes_per_pixel: 1,
            red_shift: 0,
            red_bits: 0,
            green_shift: 0,
            green_bits: 0,
            blue_shift: 0,
            blue_bits: 0,
        };
        Self::with_pixels(width_px, height_px, pitch_bytes, format, foreground_index.into(), background_index.into())
    }

    fn with_pixels(
        width_px: usize,
        height_px: usize,
        pitch_bytes: usize,
        format: PixelFormat,
        foreground_pixel: u32,
        background_pixel: u32,
    ) -> Result<TextConsole, FbError> {
        if width_px == 0 || height_px == 0 {
            return Err(FbError::ZeroSize);
        }
        let line_bytes = width_px.checked_mul(usize::from(format.bytes_per_pixel)).ok_or(FbError::PitchTooSmall)?;
        if pitch_bytes < line_bytes {
            return Err(FbError::PitchTooSmall);
        }
        let columns = width_px / CELL_WIDTH;
        let rows = height_px / CELL_HEIGHT;
        if columns == 0 || rows == 0 {
            return Err(FbError::TooSmallForOneCell);
        }
        Ok(TextConsole {
            width_px,
            height_px,
            pitch_bytes,
            format,
            columns,
            rows,
            cursor_column: 0,
            cursor_row: 0,
            foreground_pixel,
            background_pixel,
        })
    }

    /// Text columns.
    pub fn columns(&self) -> usize {
        self.columns
    }

    /// Text rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// The cursor as (column, row); column may equal `columns()` after a full line.
    pub fn cursor(&self) -> (usize, usize) {
        (self.cursor_column, self.cursor_row)
    }

    /// Sets the colours used by what is drawn from now on.
    pub fn set_colors(&mut self, fg: (u8, u8, u8), bg: (u8, u8, u8)) {
        if self.format.bytes_per_pixel == 1 {
            return;
        }
        self.foreground_pixel = self.format.pack(fg);
        self.background_pixel = self.format.pack(bg);
    }

    /// Fills the whole visible area with the background colour and homes the cursor.
    pub fn clear(&mut self, fb: &mut [u8]) {
        for pixel_row in 0..self.height_px {
            self.fill_pixels(fb, pixel_row, 0, self.width_px, self.background_pixel);
        }
        self.cursor_column = 0;
        self.cursor_row = 0;
    }

    /// Draws `s` at the cursor, interpreting '\n', '\r' and '\t', wrapping and scrolling.
    pub fn write_str(&mut self, fb: &mut [u8], s: &str) {
        for character in s.chars() {
            self.write_char(fb, character);
        }
    }

    fn write_char(&mut self, fb: &mut [u8], character: char) {
        match character {
            '\n' => self.new_line(fb),
            '\r' => self.cursor_column = 0,
            '\t' => {
                let next_stop = (self.cursor_column / 8 + 1) * 8;
                if next_stop >= self.columns {
                    self.new_line(fb);
                } else {
                    // Like a terminal, a tab moves the cursor without erasing what it skips.
                    self.cursor_column = next_stop;
                }
            }
            printable => {
                if self.cursor_column >= self.columns {
                    self.new_line(fb);
                }
                self.draw_cell(fb, self.cursor_column, self.cursor_row, printable);
                self.cursor_column += 1;
            }
        }
    }

    fn new_line(&mut self, fb: &mut [u8]) {
        self.cursor_column = 0;
        if self.cursor_row + 1 < self.rows {
            self.cursor_row += 1;
        } else {
            self.scroll_up(fb);
        }
    }

    /// Moves every text row up by one and clears the last one.
    fn scroll_up(&mut self, fb: &mut [u8]) {
        let text_row_bytes = self.pitch_bytes.saturating_mul(CELL_HEIGHT);
        let text_area_end = text_row_bytes.saturating_mul(self.rows).min(fb.len());
        if text_area_end > text_row_bytes {
            fb.copy_within(text_row_bytes..text_area_end, 0);
        }
        let last_row_top = (self.rows - 1) * CELL_HEIGHT;
        for pixel_row in last_row_top..last_row_top + CELL_HEIGHT {
            self.fill_pixels(fb, pixel_row, 0, self.columns * CELL_WIDTH, self.background_pixel);
        }
    }

    fn draw_cell(&self, fb: &mut [u8], column: usize, row: usize, character: char) {
        let cell = glyph_cell(character);
        for (cell_row, bits) in cell.iter().enumerate() {
            let pixel_row = row * CELL_HEIGHT + cell_row;
            for cell_column in 0..CELL_WIDTH {
                let pixel = if bits & (1 << cell_column) != 0 { self.foreground_pixel } else { self.background_pixel };
                self.put_pixel(fb, pixel_row, column * CELL_WIDTH + cell_column, pixel);
            }
        }
    }

    fn fill_pixels(&self, fb: &mut [u8], pixel_row: usize, first: usize, count: usize, pixel: u32) {
        for pixel_column in first..first + count {
            self.put_pixel(fb, pixel_row, pixel_column, pixel);
        }
    }

    /// Stores one pixel, or nothing when it falls outside `fb`.
    fn put_pixel(&self, fb: &mut [u8], pixel_row: usize, pixel_column: usize, pixel: u32) {
        let bytes_per_pixel = usize::from(self.format.bytes_per_pixel);
        let Some(offset) = pixel_row
            .checked_mul(self.pitch_bytes)
            .and_then(|line| line.checked_add(pixel_column.checked_mul(bytes_per_pixel)?))
        else {
            return;
        };
        let Some(end) = offset.checked_add(bytes_per_pixel) else {
            return;
        };
        if let (Some(destination), Some(source)) = (fb.get_mut(offset..end), pixel.to_le_bytes().get(..bytes_per_pixel))
        {
            destination.copy_from_slice(source);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::String;
    use alloc::vec;
    use alloc::vec::Vec;

    const RGB565: PixelFormat = PixelFormat {
        bytes_per_pixel: 2,
        red_shift: 11,
        red_bits: 5,
        green_shift: 5,
        green_bits: 6,
        blue_shift: 0,
        blue_bits: 5,
    };
    const BGR888: PixelFormat = PixelFormat {
        bytes_per_pixel: 3,
        red_shift: 0,
        red_bits: 8,
        green_shift: 8,
        green_bits: 8,
        blue_shift: 16,
        blue_bits: 8,
    };

    /// Reads the framebuffer back as text: a cell whose foreground bits match a glyph is
    /// that character; a blank cell is ' '; anything else is '#'.
    fn decode(console: &TextConsole, fb: &[u8], pitch: usize, format: PixelFormat, fg: u32) -> Vec<String> {
        let bytes_per_pixel = usize::from(format.bytes_per_pixel);
        let mut lines = Vec::new();
        for row in 0..console.rows() {
            let mut line = String::new();
            for column in 0..console.columns() {
                let mut cell = [0u8; CELL_HEIGHT];
                for (y, bits) in cell.iter_mut().enumerate() {
                    for x in 0..CELL_WIDTH {
                        let offset = (row * CELL_HEIGHT + y) * pitch + (column * CELL_WIDTH + x) * bytes_per_pixel;
                        let mut value = [0u8; 4];
                        value[..bytes_per_pixel].copy_from_slice(&fb[offset..offset + bytes_per_pixel]);
                        if u32::from_le_bytes(value) == fg {
                            *bits |= 1 << x;
                        }
                    }
                }
                let found = (' '..='~').find(|&c| glyph_cell(c) == cell);
                line.push(found.unwrap_or('#'));
            }
            lines.push(String::from(line.trim_end()));
        }
        lines
    }

    fn setup(columns: usize, rows: usize, format: PixelFormat, pitch_padding: usize) -> (TextConsole, Vec<u8>, usize) {
        let width = columns * CELL_WIDTH;
        let height = rows * CELL_HEIGHT;
        let pitch = width * usize::from(format.bytes_per_pixel) + pitch_padding;
        let mut console = TextConsole::new(width, height, pitch, format).unwrap();
        let mut fb = vec![0x55u8; pitch * height];
        console.clear(&mut fb);
        (console, fb, pitch)
    }

    #[test]
    fn glyph_cell_doubles_font_rows_and_replaces_non_ascii() {
        let a = glyph_cell('A');
        let font = font8x8::legacy::BASIC_LEGACY['A' as usize];
        for row in 0..8 {
            assert_eq!(a[2 * row], font[row]);
            assert_eq!(a[2 * row + 1], font[row]);
        }
        assert_eq!(glyph_cell('é'), glyph_cell('?'));
        assert_eq!(glyph_cell('\u{7}'), glyph_cell('?'));
        assert_eq!(glyph_cell(' '), [0; 16]);
    }

    #[test]
    fn rejects_bad_geometry() {
        let format = PixelFormat::XRGB8888;
        assert_eq!(TextConsole::new(0, 16, 0, format).unwrap_err(), FbError::ZeroSize);
        assert_eq!(TextConsole::new(8, 16, 31, format).unwrap_err(), FbError::PitchTooSmall);
        assert_eq!(TextConsole::new(7, 16, 28, format).unwrap_err(), FbError::TooSmallForOneCell);
        assert_eq!(TextConsole::new(8, 15, 32, format).unwrap_err(), FbError::TooSmallForOneCell);
        let mut one_byte = format;
        one_byte.bytes_per_pixel = 1;
        assert_eq!(TextConsole::new(8, 16, 32, one_byte).unwrap_err(), FbError::UnsupportedBytesPerPixel(1));
        let mut wide = format;
        wide.red_shift = 30;
        assert_eq!(TextConsole::new(8, 16, 32, wide).unwrap_err(), FbError::BadChannelLayout);
        assert_eq!(TextConsole::new(usize::MAX, 16, usize::MAX, format).unwrap_err(), FbError::PitchTooSmall);
        let console = TextConsole::new(1024, 768, 4096, format).unwrap();
        assert_eq!((console.columns(), console.rows()), (128, 48));
    }

    #[test]
    fn pixel_packing() {
        assert_eq!(PixelFormat::XRGB8888.pack((0x12, 0x34, 0x56)), 0x123456);
        assert_eq!(RGB565.pack((0xFF, 0, 0)), 0xF800);
        assert_eq!(RGB565.pack((0, 0xFF, 0)), 0x07E0);
        assert_eq!(BGR888.pack((0x12, 0x34, 0x56)), 0x563412);
    }

    #[test]
    fn writes_text_with_control_characters() {
        for format in [PixelFormat::XRGB8888, RGB565, BGR888] {
            let (mut console, mut fb, pitch) = setup(20, 4, format, 12);
            console.write_str(&mut fb, "Hello, world!\nab\rX\tY\n\u{1F600}é");
            let fg = format.pack(DEFAULT_FOREGROUND);
            assert_eq!(decode(&console, &fb, pitch, format, fg), ["Hello, world!", "Xb      Y", "??", ""]);
            // Padding bytes at the end of each line are never touched by drawing text.
            assert_eq!(fb[pitch - 1], 0x55);
        }
    }

    #[test]
    fn wraps_and_scrolls() {
        let format = PixelFormat::XRGB8888;
        let (mut console, mut fb, pitch) = setup(5, 3, format, 0);
        console.write_str(&mut fb, "abcdefgh\n12345\nxyz\nlast");
        let fg = format.pack(DEFAULT_FOREGROUND);
        // "abcde" "fgh" "12345" "xyz" "last": the first two lines scrolled away.
        assert_eq!(decode(&console, &fb, pitch, format, fg), ["12345", "xyz", "last"]);
        assert_eq!(console.cursor(), (4, 2));
        console.write_str(&mut fb, "\t");
        assert_eq!(decode(&console, &fb, pitch, format, fg), ["xyz", "last", ""]);
    }

    #[test]
    fn colours_apply_to_later_text() {
        let format = PixelFormat::XRGB8888;
        let (mut console, mut fb, pitch) = setup(4, 1, format, 0);
        console.set_colors((255, 0, 0), (0, 0, 255));
        console.write_str(&mut fb, "I");
        let red = format.pack((255, 0, 0));
        assert_eq!(decode(&console, &fb, pitch, format, red), ["I"]);
        // Background of the drawn cell is blue, untouched cells stay black.
        assert_eq!(&fb[0..4], &0x0000FFu32.to_le_bytes());
        assert_eq!(&fb[8 * 4..9 * 4], &[0, 0, 0, 0]);
    }

    #[test]
    fn short_framebuffer_never_panics() {
        let format = RGB565;
        let console = TextConsole::new(80, 48, 160, format).unwrap();
        for length in [0usize, 1, 7, 160, 161, 160 * 16 + 3, 160 * 47] {
            let mut console = console.clone();
            let mut fb = vec![0u8; length];
            console.clear(&mut fb);
            console.write_str(&mut fb, "some text\nthat scrolls\n\n\n\n\n\nmany times\t\tx");
            assert_eq!(fb.len(), length);
        }
    }

    #[test]
    fn random_text_never_panics() {
        let format = BGR888;
        let (mut console, mut fb, _) = setup(7, 3, format, 1);
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut text = String::new();
        for _ in 0..3000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            text.push(char::from_u32((state % 0x300) as u32).unwrap_or('x'));
        }
        console.write_str(&mut fb, &text);
        let (column, row) = console.cursor();
        assert!(column <= console.columns() && row < console.rows());
    }

    #[test]
    fn indexed_console_draws_with_palette_indices() {
        let palette = [(0, 0, 0), (0, 0, 0xAA), (0xAA, 0xAA, 0xAA), (0xFF, 0xFF, 0xFF)];
        let foreground = nearest_palette_index(&palette, DEFAULT_FOREGROUND).unwrap();
        let background = nearest_palette_index(&palette, DEFAULT_BACKGROUND).unwrap();
        assert_eq!((foreground, background), (2, 0));
        assert_eq!(nearest_palette_index(&[], (1, 2, 3)), None);
        let (width, height, pitch) = (32, 32, 40);
        let mut fb = alloc::vec![0x55u8; pitch * height];
        let mut console = TextConsole::new_indexed(width, height, pitch, foreground, background).unwrap();
        console.clear(&mut fb);
        console.set_colors((1, 2, 3), (4, 5, 6)); // ignored on indexed consoles
        console.write_str(&mut fb, "Hi");
        for (cell, character) in "Hi".chars().enumerate() {
            let glyph = glyph_cell(character);
            for (y, bits) in glyph.iter().enumerate() {
                for x in 0..CELL_WIDTH {
                    let expected = if bits & (1 << x) != 0 { foreground } else { background };
                    assert_eq!(fb[y * pitch + cell * CELL_WIDTH + x], expected, "cell {cell} ({x},{y})");
                }
            }
        }
        // Padding past the visible width is never touched.
        assert!(fb[width..pitch].iter().all(|&byte| byte == 0x55));
        assert_eq!(TextConsole::new_indexed(4, 4, 4, 1, 0).unwrap_err(), FbError::TooSmallForOneCell);
    }
}

//! A log console on an EGA/VGA text-mode screen (multiboot2 framebuffer type 2): a grid
//! of 16-bit cells, character in the low byte and colour attribute in the high byte.
//!
//! GRUB hands over a text mode when it cannot or will not set a graphics mode; the log
//! then still reaches the server's monitor. Portable: the device glue passes the mapped
//! text buffer as bytes, so host tests render into a `Vec`.

/// Light grey on black, the classic console attribute.
pub const DEFAULT_ATTRIBUTE: u8 = 0x07;

/// Why a text screen cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EgaTextError {
    /// Zero columns or rows.
    Empty,
    /// The pitch is shorter than one row of cells.
    PitchTooSmall,
}

/// Cursor state of a text-mode console.
#[derive(Debug, Clone)]
pub struct EgaTextConsole {
    columns: usize,
    rows: usize,
    pitch: usize,
    column: usize,
    row: usize,
    attribute: u8,
}

impl EgaTextConsole {
    /// A console over `columns` × `rows` cells, `pitch` bytes per row.
    pub fn new(columns: usize, rows: usize, pitch: usize) -> Result<Self, EgaTextError> {
        if columns == 0 || rows == 0 {
            return Err(EgaTextError::Empty);
        }
        if pitch < columns.saturating_mul(2) {
            return Err(EgaTextError::PitchTooSmall);
        }
        Ok(Self { columns, rows, pitch, column: 0, row: 0, attribute: DEFAULT_ATTRIBUTE })
    }

    /// Columns of text.
    pub fn columns(&self) -> usize {
        self.columns
    }

    /// Rows of text.
    pub fn rows(&self) -> usize {
        self.rows
    }

    fn put_cell(&self, screen: &mut [u8], column: usize, row: usize, byte: u8) {
        let offset = row * self.pitch + column * 2;
        if let Some(cell) = screen.get_mut(offset..offset + 2) {
            cell[0] = byte;
            cell[1] = self.attribute;
        }
    }

    /// Blanks the screen and homes the cursor.
    pub fn clear(&mut self, screen: &mut [u8]) {
        for row in 0..self.rows {
            for column in 0..self.columns {
                self.put_cell(screen, column, row, b' ');
            }
        }
        self.column = 0;
        self.row = 0;
    }

    fn newline(&mut self, screen: &mut [u8]) {
        self.column = 0;
        if self.row + 1 < self.rows {
            self.row += 1;
            return;
        }
        let visible = self.rows * self.pitch;
        if visible <= screen.len() {
            screen.copy_within(self.pitch..visible, 0);
        }
        for column in 0..self.columns {
            self.put_cell(screen, column, self.rows - 1, b' ');
        }
    }

    /// Writes text: `\n` starts a new line, `\r` returns to column 0, `\t` advances to
    /// the next multiple of 8, and anything outside printable ASCII shows as `?`.
    pub fn write_str(&mut self, screen: &mut [u8], text: &str) {
        for character in text.chars() {
            match character {
                '\n' => self.newline(screen),
                '\r' => self.column = 0,
                '\t' => {
                    let next = (self.column / 8 + 1) * 8;
                    if next >= self.columns {
                        self.newline(screen);
                    } else {
                        self.column = next;
                    }
                }
                _ => {
                    if self.column >= self.columns {
                        self.newline(screen);
                    }
                    let byte =
                        if character.is_ascii() && !character.is_ascii_control() { character as u8 } else { b'?' };
                    self.put_cell(screen, self.column, self.row, byte);
                    self.column += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::String;
    use alloc::vec;
    use alloc::vec::Vec;

    fn rows_of(screen: &[u8], console: &EgaTextConsole, pitch: usize) -> Vec<String> {
        (0..console.rows())
            .map(|row| {
                let line: String =
                    (0..console.columns()).map(|column| screen[row * pitch + column * 2] as char).collect();
                String::from(line.trim_end())
            })
            .collect()
    }

    #[test]
    fn writes_wraps_and_scrolls() {
        let (columns, rows, pitch) = (10, 3, 24);
        let mut screen = vec![0u8; rows * pitch];
        let mut console = EgaTextConsole::new(columns, rows, pitch).unwrap();
        console.clear(&mut screen);
        console.write_str(&mut screen, "hello\nworld\tx\n0123456789AB");
        // The long line wrapped and "hello" scrolled away; the tab went to column 8.
        assert_eq!(rows_of(&screen, &console, pitch), ["world   x", "0123456789", "AB"]);
        console.write_str(&mut screen, "\r\u{e9}\u{1}\t\tz");
        // Non-ASCII and control characters show as '?'; a tab past the edge wraps.
        assert_eq!(rows_of(&screen, &console, pitch), ["0123456789", "??", "z"]);
        assert_eq!(screen[1], DEFAULT_ATTRIBUTE);
        // The padding bytes between rows are never written.
        assert!(screen[columns * 2..pitch].iter().all(|&byte| byte == 0));
    }

    #[test]
    fn rejects_bad_geometry_and_survives_short_buffers() {
        assert_eq!(EgaTextConsole::new(0, 25, 160).unwrap_err(), EgaTextError::Empty);
        assert_eq!(EgaTextConsole::new(80, 25, 100).unwrap_err(), EgaTextError::PitchTooSmall);
        let mut console = EgaTextConsole::new(80, 25, 160).unwrap();
        let mut short = vec![0u8; 37];
        console.clear(&mut short);
        for _ in 0..100 {
            console.write_str(&mut short, "a line longer than the tiny buffer it is written into\n");
        }
        assert_eq!(short[0], b'a');
    }
}

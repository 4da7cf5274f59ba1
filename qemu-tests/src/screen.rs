//! Reads the text the hypervisor drew on its framebuffer back out of a screen dump.
//!
//! Contract with the kernel's framebuffer console (kernel/src/console/fbtext.rs): text
//! is laid out in 8×16-pixel cells, cell (col, row) starting at pixel (col·8, row·16);
//! glyphs come from `font8x8::legacy::BASIC_LEGACY`, glyph row r drawn on pixel rows 2r
//! and 2r+1, bit 0 of a glyph byte being the leftmost pixel; any non-black foreground on
//! a black background.
//!
//! Decoding thresholds every pixel on brightness ([`ON_THRESHOLD`]), reads each cell as
//! 16 rows of 8 bits, requires the doubled rows to agree, and looks the resulting 8-byte
//! glyph up among the printable ASCII glyphs (exact match). An all-dark cell is a space;
//! anything else is [`UNKNOWN_CELL`]. Because the match is exact, a decoded line that
//! equals a serial log line is strong evidence that the framebuffer path works.

use std::collections::HashMap;

use font8x8::legacy::BASIC_LEGACY;

use crate::ppm::RgbImage;

/// Cell width in pixels.
pub const CELL_WIDTH: usize = 8;
/// Cell height in pixels (each 8×8 glyph row is drawn twice).
pub const CELL_HEIGHT: usize = 16;
/// A pixel is "on" when its luma (0–255) exceeds this.
pub const ON_THRESHOLD: u32 = 64;
/// What a cell that matches no glyph decodes to.
pub const UNKNOWN_CELL: char = '?';

/// Text decoded from a screen dump: one `String` per cell row, trailing spaces trimmed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Screen {
    /// Decoded rows, top to bottom.
    pub rows: Vec<String>,
    /// Size of the dumped surface in pixels.
    pub width: usize,
    /// Size of the dumped surface in pixels.
    pub height: usize,
    /// Cells that were neither blank nor a known glyph.
    pub unknown_cells: usize,
}

impl Screen {
    /// The rows joined with newlines, trailing empty rows dropped.
    pub fn text(&self) -> String {
        let last = self.rows.iter().rposition(|row| !row.is_empty()).map_or(0, |index| index + 1);
        self.rows[..last].join("\n")
    }

    /// Whether any row contains `needle`.
    pub fn contains(&self, needle: &str) -> bool {
        self.rows.iter().any(|row| row.contains(needle))
    }

    /// Non-empty rows with surrounding whitespace trimmed.
    pub fn lines(&self) -> impl Iterator<Item = &str> {
        self.rows.iter().map(|row| row.trim()).filter(|row| !row.is_empty())
    }
}

fn is_on((red, green, blue): (u8, u8, u8)) -> bool {
    // ITU-R BT.601 luma, integer form.
    (299 * u32::from(red) + 587 * u32::from(green) + 114 * u32::from(blue)) / 1000 > ON_THRESHOLD
}

/// Glyph bitmap → character, for printable ASCII (first occurrence wins).
fn glyph_table() -> HashMap<[u8; 8], char> {
    let mut table = HashMap::new();
    for code in 0x21u8..0x7f {
        table.entry(BASIC_LEGACY[usize::from(code)]).or_insert(char::from(code));
    }
    table
}

/// Decodes the text in `image`.
pub fn decode(image: &RgbImage) -> Screen {
    let table = glyph_table();
    let columns = image.width / CELL_WIDTH;
    let rows = image.height / CELL_HEIGHT;
    let mut unknown_cells = 0;
    let mut decoded = Vec::with_capacity(rows);
    for row in 0..rows {
        let mut line = String::with_capacity(columns);
        for column in 0..columns {
            let character = decode_cell(image, column, row, &table).unwrap_or_else(|| {
                unknown_cells += 1;
                UNKNOWN_CELL
            });
            line.push(character);
        }
        decoded.push(line.trim_end().to_owned());
    }
    Screen { rows: decoded, width: image.width, height: image.height, unknown_cells }
}

/// The character in one cell: `None` when it is neither blank nor a known glyph.
fn decode_cell(image: &RgbImage, column: usize, row: usize, table: &HashMap<[u8; 8], char>) -> Option<char> {
    let mut glyph = [0u8; 8];
    for (glyph_row, bits) in glyph.iter_mut().enumerate() {
        let mut pair = [0u8; 2];
        for (half, value) in pair.iter_mut().enumerate() {
            let y = row * CELL_HEIGHT + glyph_row * 2 + half;
            for bit in 0..CELL_WIDTH {
                if is_on(image.get(column * CELL_WIDTH + bit, y)) {
                    *value |= 1 << bit;
                }
            }
        }
        if pair[0] != pair[1] {
            return None;
        }
        *bits = pair[0];
    }
    if glyph == [0; 8] {
        return Some(' ');
    }
    table.get(&glyph).copied()
}

/// Draws `text` (one string per cell row) the way the kernel console does, in
/// `foreground` on black; for tests and fixtures. Non-ASCII characters draw as blanks.
pub fn render(lines: &[&str], columns: usize, rows: usize, foreground: (u8, u8, u8)) -> RgbImage {
    let mut image = RgbImage::new(columns * CELL_WIDTH, rows * CELL_HEIGHT);
    for (row, line) in lines.iter().enumerate().take(rows) {
        for (column, character) in line.chars().enumerate().take(columns) {
            let glyph = if character.is_ascii() { BASIC_LEGACY[character as usize] } else { [0; 8] };
            for (glyph_row, bits) in glyph.iter().enumerate() {
                for bit in 0..CELL_WIDTH {
                    if bits & (1 << bit) != 0 {
                        for half in 0..2 {
                            image.set(column * CELL_WIDTH + bit, row * CELL_HEIGHT + glyph_row * 2 + half, foreground);
                        }
                    }
                }
            }
        }
    }
    image
}

#[cfg(test)]
mod tests {
    use super::*;

    const GREY: (u8, u8, u8) = (0xaa, 0xaa, 0xaa);

    #[test]
    fn every_printable_glyph_is_distinct_and_round_trips() {
        let all: String = (0x20u8..0x7f).map(char::from).collect();
        let image = render(&[&all], all.len(), 1, GREY);
        let screen = decode(&image);
        assert_eq!(screen.rows, vec![all.trim_end().to_owned()]);
        assert_eq!(screen.unknown_cells, 0);
    }

    #[test]
    fn log_lines_round_trip_through_ppm() {
        let lines = ["[    0.000000] Basalt 0.1.0 booting", "", "  indented: CPUs 2, 512 MiB  ", "basalt> help"];
        let image = render(&lines, 60, 6, (0x20, 0xff, 0x20));
        let parsed = RgbImage::from_ppm(&image.to_ppm()).unwrap();
        let screen = decode(&parsed);
        assert_eq!(screen.rows.len(), 6);
        for (decoded, original) in screen.rows.iter().zip(lines) {
            assert_eq!(decoded, original.trim_end());
        }
        assert!(screen.contains("Basalt"));
        assert_eq!(screen.text().lines().count(), 4);
        assert_eq!(screen.lines().nth(1), Some("indented: CPUs 2, 512 MiB"));
    }

    #[test]
    fn dark_foreground_is_blank_and_noise_is_unknown() {
        let image = render(&["hidden"], 10, 1, (0x30, 0x30, 0x30));
        assert_eq!(decode(&image).rows, vec![String::new()]);
        let mut image = render(&["ab"], 4, 1, GREY);
        image.set(CELL_WIDTH * 2, 0, GREY); // a stray pixel in cell 2: top rows differ
        image.set(CELL_WIDTH * 3 + 3, 5, GREY);
        image.set(CELL_WIDTH * 3 + 3, 4, GREY); // a doubled row that is no glyph
        let screen = decode(&image);
        assert_eq!(screen.rows, vec![format!("ab{UNKNOWN_CELL}{UNKNOWN_CELL}")]);
        assert_eq!(screen.unknown_cells, 2);
    }

    #[test]
    fn partial_cells_at_the_edges_are_ignored() {
        let mut image = render(&["ok"], 2, 1, GREY);
        // Grow by a non-multiple of the cell size.
        let mut bigger = RgbImage::new(image.width + 5, image.height + 7);
        for y in 0..image.height {
            for x in 0..image.width {
                bigger.set(x, y, image.get(x, y));
            }
        }
        image = bigger;
        let screen = decode(&image);
        assert_eq!(screen.rows, vec!["ok".to_owned()]);
    }
}

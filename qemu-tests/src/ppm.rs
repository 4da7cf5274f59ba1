//! Netpbm PPM images: what QEMU's QMP `screendump` writes.
//!
//! QEMU writes binary PPM (`P6`, maxval 255) of the current display surface. The parser
//! accepts any conforming P6 header (whitespace and `#` comments between fields, maxval
//! up to 65535 with 16-bit big-endian samples scaled to 8 bits) and the ASCII variant
//! `P3`, and stores pixels as packed 8-bit RGB rows. The encoder writes P6 for tests and
//! for saving decoded-screen fixtures. Reference: the netpbm `ppm(5)` format page.

use crate::error::{Error, Result};

/// An 8-bit RGB image, rows top to bottom, pixels left to right, 3 bytes per pixel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RgbImage {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// `width * height * 3` bytes.
    pub pixels: Vec<u8>,
}

impl RgbImage {
    /// A black image.
    pub fn new(width: usize, height: usize) -> Self {
        Self { width, height, pixels: vec![0; width * height * 3] }
    }

    /// The pixel at (x, y) as (r, g, b); panics when out of range.
    pub fn get(&self, x: usize, y: usize) -> (u8, u8, u8) {
        assert!(x < self.width && y < self.height, "pixel ({x},{y}) outside {}x{}", self.width, self.height);
        let offset = (y * self.width + x) * 3;
        (self.pixels[offset], self.pixels[offset + 1], self.pixels[offset + 2])
    }

    /// Sets the pixel at (x, y); panics when out of range.
    pub fn set(&mut self, x: usize, y: usize, (red, green, blue): (u8, u8, u8)) {
        assert!(x < self.width && y < self.height, "pixel ({x},{y}) outside {}x{}", self.width, self.height);
        let offset = (y * self.width + x) * 3;
        self.pixels[offset..offset + 3].copy_from_slice(&[red, green, blue]);
    }

    /// Encodes as binary PPM (P6, maxval 255).
    pub fn to_ppm(&self) -> Vec<u8> {
        let mut output = format!("P6\n{} {}\n255\n", self.width, self.height).into_bytes();
        output.extend_from_slice(&self.pixels);
        output
    }

    /// Parses a P6 or P3 PPM file.
    pub fn from_ppm(data: &[u8]) -> Result<Self> {
        let mut reader = HeaderReader { data, position: 0 };
        let magic = reader.token()?;
        let binary = match magic {
            b"P6" => true,
            b"P3" => false,
            other => return Err(Error::new(format!("not a PPM image (magic {:?})", String::from_utf8_lossy(other)))),
        };
        let width = reader.number()?;
        let height = reader.number()?;
        let maxval = reader.number()?;
        if maxval == 0 || maxval > 65535 {
            return Err(Error::new(format!("PPM maxval {maxval} out of range")));
        }
        let count = width
            .checked_mul(height)
            .and_then(|pixels| pixels.checked_mul(3))
            .ok_or_else(|| Error::new("PPM dimensions overflow"))?;
        let scale = |sample: usize| -> u8 { ((sample * 255 + maxval / 2) / maxval).min(255) as u8 };
        let mut pixels = Vec::with_capacity(count);
        if binary {
            // Exactly one whitespace byte separates maxval from the raster.
            let start = reader.position + 1;
            let bytes_per_sample = if maxval < 256 { 1 } else { 2 };
            let raster = data
                .get(start..start + count * bytes_per_sample)
                .ok_or_else(|| Error::new(format!("PPM raster truncated: want {count} samples")))?;
            if bytes_per_sample == 1 {
                if maxval == 255 {
                    pixels.extend_from_slice(raster);
                } else {
                    pixels.extend(raster.iter().map(|&sample| scale(usize::from(sample))));
                }
            } else {
                pixels.extend(
                    raster.chunks_exact(2).map(|pair| scale(usize::from(u16::from_be_bytes([pair[0], pair[1]])))),
                );
            }
        } else {
            for _ in 0..count {
                pixels.push(scale(reader.number()?.min(maxval)));
            }
        }
        Ok(Self { width, height, pixels })
    }
}

/// Tokenizer for the whitespace/comment-separated PPM header.
struct HeaderReader<'a> {
    data: &'a [u8],
    position: usize,
}

impl<'a> HeaderReader<'a> {
    fn token(&mut self) -> Result<&'a [u8]> {
        loop {
            match self.data.get(self.position) {
                Some(byte) if byte.is_ascii_whitespace() => self.position += 1,
                Some(b'#') => {
                    while self.data.get(self.position).is_some_and(|&byte| byte != b'\n') {
                        self.position += 1;
                    }
                }
                Some(_) => break,
                None => return Err(Error::new("PPM header truncated")),
            }
        }
        let start = self.position;
        while self.data.get(self.position).is_some_and(|byte| !byte.is_ascii_whitespace() && *byte != b'#') {
            self.position += 1;
        }
        Ok(&self.data[start..self.position])
    }

    fn number(&mut self) -> Result<usize> {
        let token = self.token()?;
        std::str::from_utf8(token)
            .ok()
            .and_then(|text| text.parse().ok())
            .ok_or_else(|| Error::new(format!("bad number {:?} in PPM header", String::from_utf8_lossy(token))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p6_round_trip() {
        let mut image = RgbImage::new(3, 2);
        image.set(0, 0, (1, 2, 3));
        image.set(2, 1, (0xaa, 0xbb, 0xcc));
        let parsed = RgbImage::from_ppm(&image.to_ppm()).unwrap();
        assert_eq!(parsed, image);
        assert_eq!(parsed.get(2, 1), (0xaa, 0xbb, 0xcc));
    }

    #[test]
    fn header_comments_and_whitespace() {
        let mut data = b"P6 # made by qemu\n# another\n 2\t1 \n255\n".to_vec();
        data.extend_from_slice(&[10, 20, 30, 40, 50, 60]);
        let image = RgbImage::from_ppm(&data).unwrap();
        assert_eq!((image.width, image.height), (2, 1));
        assert_eq!(image.get(1, 0), (40, 50, 60));
    }

    #[test]
    fn sixteen_bit_and_ascii_variants() {
        let mut data = b"P6 1 1 65535\n".to_vec();
        data.extend_from_slice(&[0xff, 0xff, 0x80, 0x00, 0x00, 0x00]);
        assert_eq!(RgbImage::from_ppm(&data).unwrap().get(0, 0), (255, 128, 0));
        let ascii = b"P3\n2 1\n15\n15 0 0  0 15 0\n";
        let image = RgbImage::from_ppm(ascii).unwrap();
        assert_eq!(image.get(0, 0), (255, 0, 0));
        assert_eq!(image.get(1, 0), (0, 255, 0));
    }

    #[test]
    fn malformed_inputs_are_errors() {
        assert!(RgbImage::from_ppm(b"").is_err());
        assert!(RgbImage::from_ppm(b"P5 1 1 255\n\0").is_err());
        assert!(RgbImage::from_ppm(b"P6 2 2 255\n\0\0\0").is_err());
        assert!(RgbImage::from_ppm(b"P6 x 2 255\n").is_err());
        assert!(RgbImage::from_ppm(b"P6 99999999999 99999999999 255\n").is_err());
    }
}

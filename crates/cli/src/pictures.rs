//! What a person sees of a digit: a PNG (enlarged, with a title) and a terminal drawing.
//!
//! Titles use a small built-in 5x7 bitmap font (digits, upper-case letters and a few
//! signs), so no font file is needed on the machine.

use std::path::Path;

use image::{Rgb, RgbImage};

const GLYPHS: &[(char, [u8; 7])] = &[
    ('0', [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E]),
    ('1', [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E]),
    ('2', [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F]),
    ('3', [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E]),
    ('4', [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02]),
    ('5', [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E]),
    ('6', [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E]),
    ('7', [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08]),
    ('8', [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E]),
    ('9', [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C]),
    ('A', [0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11]),
    ('C', [0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E]),
    ('D', [0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C]),
    ('E', [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F]),
    ('H', [0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11]),
    ('L', [0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F]),
    ('O', [0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E]),
    ('P', [0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10]),
    ('R', [0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11]),
    ('S', [0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E]),
    ('T', [0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04]),
    ('U', [0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E]),
    ('Y', [0x11, 0x11, 0x0A, 0x04, 0x04, 0x04, 0x04]),
    ('N', [0x11, 0x19, 0x15, 0x13, 0x11, 0x11, 0x11]),
    ('I', [0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E]),
    ('G', [0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F]),
    ('V', [0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04]),
    ('B', [0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E]),
    ('F', [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10]),
    ('M', [0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11]),
    ('K', [0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11]),
    ('X', [0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11]),
    ('W', [0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A]),
    (':', [0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x0C, 0x00]),
    ('.', [0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C]),
    ('%', [0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03]),
    ('/', [0x01, 0x01, 0x02, 0x04, 0x08, 0x10, 0x10]),
    ('-', [0x00, 0x00, 0x00, 0x1F, 0x00, 0x00, 0x00]),
    ('=', [0x00, 0x00, 0x1F, 0x00, 0x1F, 0x00, 0x00]),
];

/// Draws `text` (upper-cased) at (x, y) with each font pixel `scale` pixels wide.
pub fn draw_text(img: &mut RgbImage, x: u32, y: u32, text: &str, scale: u32, color: Rgb<u8>) {
    for (i, ch) in text.to_uppercase().chars().enumerate() {
        let Some((_, rows)) = GLYPHS.iter().find(|(c, _)| *c == ch) else { continue };
        let gx = x + i as u32 * 6 * scale;
        for (r, bits) in rows.iter().enumerate() {
            for c in 0..5u32 {
                if bits & (0x10 >> c) != 0 {
                    for dy in 0..scale {
                        for dx in 0..scale {
                            let (px, py) = (gx + c * scale + dx, y + r as u32 * scale + dy);
                            if px < img.width() && py < img.height() {
                                img.put_pixel(px, py, color);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Width in pixels of `text` drawn at `scale`.
pub fn text_width(text: &str, scale: u32) -> u32 {
    text.chars().count() as u32 * 6 * scale
}

/// Draws a 28x28 digit enlarged `scale` times at (x, y), white ink on black as in matplotlib's gray map.
fn draw_digit(img: &mut RgbImage, x: u32, y: u32, pixels: &[u8], scale: u32) {
    for (i, &p) in pixels.iter().enumerate() {
        let (c, r) = ((i % 28) as u32, (i / 28) as u32);
        for dy in 0..scale {
            for dx in 0..scale {
                img.put_pixel(x + c * scale + dx, y + r * scale + dy, Rgb([p, p, p]));
            }
        }
    }
}

/// One panel of a picture: a digit and its title.
pub struct Panel<'a> {
    pub pixels: &'a [u8],
    pub title: String,
}

/// Lays `panels` out in a grid of `cols` columns, each digit enlarged 10x (280 px) under its title.
pub fn grid_png(path: &Path, panels: &[Panel], cols: usize) -> image::ImageResult<(u32, u32)> {
    let (scale, title_h, pad) = (10u32, 30u32, 10u32);
    let cols = cols.max(1).min(panels.len().max(1));
    let rows = panels.len().div_ceil(cols).max(1);
    let cell_w = 28 * scale + 2 * pad;
    let cell_h = 28 * scale + title_h + 2 * pad;
    let (w, h) = (cell_w * cols as u32, cell_h * rows as u32);
    let mut img = RgbImage::from_pixel(w, h, Rgb([255, 255, 255]));
    for (i, p) in panels.iter().enumerate() {
        let (cx, cy) = ((i % cols) as u32 * cell_w, (i / cols) as u32 * cell_h);
        // The largest letters that fit the cell (class names are longer than digits).
        let ts = (1..=3).rev().find(|s| text_width(&p.title, *s) <= cell_w - 4).unwrap_or(1);
        let tw = text_width(&p.title, ts);
        draw_text(&mut img, cx + (cell_w.saturating_sub(tw)) / 2, cy + pad + (3 - ts) * 3, &p.title, ts, Rgb([0, 0, 0]));
        draw_digit(&mut img, cx + pad, cy + pad + title_h, p.pixels, scale);
    }
    img.save(path)?;
    Ok((w, h))
}

/// The digit drawn in the terminal, two characters per pixel, darker to brighter.
pub fn terminal(pixels: &[u8]) -> String {
    const RAMP: &[u8] = b" .:-=+*#%@";
    let mut s = String::with_capacity(28 * 57);
    for row in pixels.chunks(28) {
        for &p in row {
            let c = RAMP[(p as usize * (RAMP.len() - 1) + 127) / 255] as char;
            s.push(c);
            s.push(c);
        }
        s.push('\n');
    }
    s
}

/// A line chart of per-epoch series (loss and accuracy) as a PNG: one panel per series.
pub fn curves_png(path: &Path, series: &[(&str, Vec<f64>)]) -> image::ImageResult<(u32, u32)> {
    let (pw, ph, pad, title_h) = (480u32, 320u32, 40u32, 30u32);
    let w = pw * series.len().max(1) as u32;
    let h = ph;
    let mut img = RgbImage::from_pixel(w, h, Rgb([255, 255, 255]));
    let colors = [Rgb([31, 119, 180]), Rgb([255, 127, 14])];
    for (k, (name, ys)) in series.iter().enumerate() {
        let ox = k as u32 * pw;
        draw_text(&mut img, ox + pad, 8, name, 3, Rgb([0, 0, 0]));
        let (x0, y0, x1, y1) = (ox + pad, title_h + 10, ox + pw - pad / 2, ph - pad);
        for x in x0..=x1 {
            img.put_pixel(x, y1, Rgb([0, 0, 0]));
        }
        for y in y0..=y1 {
            img.put_pixel(x0, y, Rgb([0, 0, 0]));
        }
        if ys.is_empty() {
            continue;
        }
        let lo = ys.iter().cloned().fold(f64::INFINITY, f64::min);
        let hi = ys.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let span = if hi > lo { hi - lo } else { 1.0 };
        draw_text(&mut img, ox + 2, y0, &format!("{hi:.2}"), 1, Rgb([0, 0, 0]));
        draw_text(&mut img, ox + 2, (y0 + y1) / 2 - 4, &format!("{:.2}", (lo + hi) / 2.0), 1, Rgb([0, 0, 0]));
        draw_text(&mut img, ox + 2, y1 - 8, &format!("{lo:.2}"), 1, Rgb([0, 0, 0]));
        draw_text(&mut img, x1 - 30, y1 + 16, "EPOCH", 1, Rgb([0, 0, 0]));
        let pt = |i: usize, v: f64| -> (f64, f64) {
            let fx = if ys.len() > 1 { i as f64 / (ys.len() - 1) as f64 } else { 0.5 };
            (x0 as f64 + 4.0 + fx * (x1 - x0 - 8) as f64, y1 as f64 - 4.0 - (v - lo) / span * (y1 - y0 - 8) as f64)
        };
        let color = colors[k % colors.len()];
        // The epoch axis: a tick and its number under each point (every few when many).
        let every = ys.len().div_ceil(10).max(1);
        for i in (0..ys.len()).step_by(every) {
            let tx = pt(i, ys[i]).0 as u32;
            for y in y1..y1 + 4 {
                img.put_pixel(tx, y, Rgb([0, 0, 0]));
            }
            draw_text(&mut img, tx.saturating_sub(2), y1 + 6, &(i + 1).to_string(), 1, Rgb([0, 0, 0]));
        }
        for i in 0..ys.len() {
            let (ax, ay) = pt(i, ys[i]);
            for dy in -3i32..=3 {
                for dx in -3i32..=3 {
                    img.put_pixel((ax as i32 + dx) as u32, (ay as i32 + dy) as u32, color);
                }
            }
            if i + 1 < ys.len() {
                let (bx, by) = pt(i + 1, ys[i + 1]);
                let n = ((bx - ax).abs().max((by - ay).abs()) as usize).max(1);
                for t in 0..=n {
                    let f = t as f64 / n as f64;
                    let (x, y) = (ax + (bx - ax) * f, ay + (by - ay) * f);
                    img.put_pixel(x as u32, y as u32, color);
                    img.put_pixel(x as u32, y as u32 + 1, color);
                }
            }
        }
    }
    img.save(path)?;
    Ok((w, h))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_has_expected_size_and_ink() {
        let dir = tempfile::tempdir().unwrap();
        let px = [200u8; 784];
        let panels: Vec<Panel> = (0..4).map(|i| Panel { pixels: &px, title: format!("PRED {i} TRUE {i}") }).collect();
        let p = dir.path().join("g.png");
        let (w, h) = grid_png(&p, &panels, 2).unwrap();
        let img = image::open(&p).unwrap().to_rgb8();
        assert_eq!((img.width(), img.height()), (w, h));
        assert_eq!((w, h), (2 * 300, 2 * 330));
        assert_eq!(img.get_pixel(10 + 5, 10 + 30 + 5), &Rgb([200, 200, 200]));
    }

    #[test]
    fn terminal_rows() {
        let mut px = [0u8; 784];
        px[0] = 255;
        let t = terminal(&px);
        assert_eq!(t.lines().count(), 28);
        assert!(t.starts_with("@@  "));
    }
}

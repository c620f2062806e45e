//! Draws the layout boxes of one page onto a copy of the page image (spec §10.2).
//!
//! The official scripts pick a random colour per reference; here the colour is a
//! hash of the label, so the same kind of block has the same colour on every page
//! and the output is reproducible. Outlines are 4 px for `title`, 2 px otherwise,
//! over a translucent fill (alpha 20 of 255, as the official overlay), and the
//! label is written above the box on a light tab with a small built-in font.

use image::{Rgb, RgbImage};

use super::grounding::{self, Ref};

/// Alpha of the box fill, out of 255 (official value).
const FILL_ALPHA: u32 = 20;

/// Height of the label tab above a box (font at scale 2 plus a margin).
const LABEL_TAB_HEIGHT: u32 = font::HEIGHT * 2 + 4;

/// The colour of a label: official ranges (r, g < 200, b < 255), chosen by FNV-1a hash.
pub fn label_colour(label: &str) -> Rgb<u8> {
    let mut h: u32 = 0x811c_9dc5;
    for b in label.bytes() {
        h = (h ^ b as u32).wrapping_mul(0x0100_0193);
    }
    Rgb([(h % 200) as u8, ((h >> 8) % 200) as u8, ((h >> 16) % 255) as u8])
}

/// Returns a copy of `page` with every box of `refs` drawn.
pub fn draw(page: &RgbImage, refs: &[Ref]) -> RgbImage {
    let mut img = page.clone();
    let (w, h) = img.dimensions();
    for r in refs {
        let colour = label_colour(&r.label);
        let thickness = if r.label == "title" { 4 } else { 2 };
        for b in &r.boxes {
            let p = grounding::to_pixels(*b, w, h);
            fill_rect(&mut img, p.x1, p.y1, p.x2, p.y2, colour, FILL_ALPHA);
            outline(&mut img, p.x1, p.y1, p.x2, p.y2, colour, thickness);
            draw_label(&mut img, &r.label, p.x1, p.y1.saturating_sub(LABEL_TAB_HEIGHT), colour);
        }
    }
    img
}

/// Blends `colour` over the pixels of `[x1, x2) × [y1, y2)` with `alpha`/255.
fn fill_rect(img: &mut RgbImage, x1: u32, y1: u32, x2: u32, y2: u32, colour: Rgb<u8>, alpha: u32) {
    let (w, h) = img.dimensions();
    for y in y1..y2.min(h) {
        for x in x1..x2.min(w) {
            let p = img.get_pixel_mut(x, y);
            for c in 0..3 {
                let v = (p[c] as u32 * (255 - alpha) + colour[c] as u32 * alpha + 127) / 255;
                p[c] = v as u8;
            }
        }
    }
}

/// A rectangle outline `thickness` pixels wide, drawn inside `[x1, x2] × [y1, y2]`.
fn outline(img: &mut RgbImage, x1: u32, y1: u32, x2: u32, y2: u32, colour: Rgb<u8>, thickness: u32) {
    let t = thickness.saturating_sub(1);
    fill_rect(img, x1, y1, x2 + 1, (y1 + t + 1).min(y2 + 1), colour, 255);
    fill_rect(img, x1, y2.saturating_sub(t).max(y1), x2 + 1, y2 + 1, colour, 255);
    fill_rect(img, x1, y1, (x1 + t + 1).min(x2 + 1), y2 + 1, colour, 255);
    fill_rect(img, x2.saturating_sub(t).max(x1), y1, x2 + 1, y2 + 1, colour, 255);
}

/// The label text in `colour` on a light tab whose top-left corner is `(x, y)`.
fn draw_label(img: &mut RgbImage, label: &str, x: u32, y: u32, colour: Rgb<u8>) {
    let scale = 2;
    let n = label.chars().count() as u32;
    let tab_w = n * (font::WIDTH + 1) * scale + 4;
    let tab_h = font::HEIGHT * scale + 4;
    fill_rect(img, x, y, x + tab_w, y + tab_h, Rgb([255, 255, 255]), 200);
    let (w, h) = img.dimensions();
    for (i, ch) in label.chars().enumerate() {
        let glyph = font::glyph(ch);
        let gx = x + 2 + i as u32 * (font::WIDTH + 1) * scale;
        for (row, bits) in glyph.iter().enumerate() {
            for col in 0..font::WIDTH {
                if bits & (1 << (font::WIDTH - 1 - col)) == 0 {
                    continue;
                }
                for dy in 0..scale {
                    for dx in 0..scale {
                        let (px, py) = (gx + col * scale + dx, y + 2 + row as u32 * scale + dy);
                        if px < w && py < h {
                            img.put_pixel(px, py, colour);
                        }
                    }
                }
            }
        }
    }
}

/// A 3×5 pixel font for labels: lower-case letters, digits and `_`; anything else is a box.
mod font {
    pub const WIDTH: u32 = 3;
    pub const HEIGHT: u32 = 5;

    /// Five rows of three bits, most significant bit on the left.
    pub fn glyph(c: char) -> [u8; 5] {
        match c.to_ascii_lowercase() {
            'a' => [0b010, 0b101, 0b111, 0b101, 0b101],
            'b' => [0b110, 0b101, 0b110, 0b101, 0b110],
            'c' => [0b011, 0b100, 0b100, 0b100, 0b011],
            'd' => [0b110, 0b101, 0b101, 0b101, 0b110],
            'e' => [0b111, 0b100, 0b110, 0b100, 0b111],
            'f' => [0b111, 0b100, 0b110, 0b100, 0b100],
            'g' => [0b011, 0b100, 0b101, 0b101, 0b011],
            'h' => [0b101, 0b101, 0b111, 0b101, 0b101],
            'i' => [0b111, 0b010, 0b010, 0b010, 0b111],
            'j' => [0b001, 0b001, 0b001, 0b101, 0b010],
            'k' => [0b101, 0b101, 0b110, 0b101, 0b101],
            'l' => [0b100, 0b100, 0b100, 0b100, 0b111],
            'm' => [0b101, 0b111, 0b111, 0b101, 0b101],
            'n' => [0b110, 0b101, 0b101, 0b101, 0b101],
            'o' => [0b010, 0b101, 0b101, 0b101, 0b010],
            'p' => [0b110, 0b101, 0b110, 0b100, 0b100],
            'q' => [0b010, 0b101, 0b101, 0b110, 0b011],
            'r' => [0b110, 0b101, 0b110, 0b101, 0b101],
            's' => [0b011, 0b100, 0b010, 0b001, 0b110],
            't' => [0b111, 0b010, 0b010, 0b010, 0b010],
            'u' => [0b101, 0b101, 0b101, 0b101, 0b111],
            'v' => [0b101, 0b101, 0b101, 0b101, 0b010],
            'w' => [0b101, 0b101, 0b111, 0b111, 0b101],
            'x' => [0b101, 0b101, 0b010, 0b101, 0b101],
            'y' => [0b101, 0b101, 0b010, 0b010, 0b010],
            'z' => [0b111, 0b001, 0b010, 0b100, 0b111],
            '0' => [0b111, 0b101, 0b101, 0b101, 0b111],
            '1' => [0b010, 0b110, 0b010, 0b010, 0b111],
            '2' => [0b110, 0b001, 0b010, 0b100, 0b111],
            '3' => [0b110, 0b001, 0b010, 0b001, 0b110],
            '4' => [0b101, 0b101, 0b111, 0b001, 0b001],
            '5' => [0b111, 0b100, 0b110, 0b001, 0b110],
            '6' => [0b011, 0b100, 0b111, 0b101, 0b111],
            '7' => [0b111, 0b001, 0b010, 0b010, 0b010],
            '8' => [0b111, 0b101, 0b111, 0b101, 0b111],
            '9' => [0b111, 0b101, 0b111, 0b001, 0b110],
            '_' => [0b000, 0b000, 0b000, 0b000, 0b111],
            ' ' => [0; 5],
            _ => [0b111, 0b101, 0b101, 0b101, 0b111],
        }
    }
}

/// Crops box `norm_box` (0..999 grid) out of `page`; `None` for an empty box
/// (the official scripts skip a failed crop but still count it).
pub fn crop(page: &RgbImage, norm_box: [f64; 4]) -> Option<RgbImage> {
    let (w, h) = page.dimensions();
    let p = grounding::to_pixels(norm_box, w, h);
    if p.width() == 0 || p.height() == 0 {
        return None;
    }
    Some(image::imageops::crop_imm(page, p.x1, p.y1, p.width(), p.height()).to_image())
}

//! Pixel normalisation (spec §3.6): `((p/255) − 0.5) / 0.5` in f32, rounded to bf16 as the
//! reference feeds the model, then held as f32 (NCHW).

use candle_core::{Device, Result, Tensor};
use half::bf16;
use image::RgbImage;

/// The 256 possible normalised values, computed exactly as the reference does.
fn lut() -> [f32; 256] {
    let mut t = [0f32; 256];
    for (p, v) in t.iter_mut().enumerate() {
        let x = ((p as f32 / 255.0) - 0.5) / 0.5;
        *v = bf16::from_f32(x).to_f32();
    }
    t
}

/// Stacks equally sized views into a `(N, 3, H, W)` f32 tensor of bf16-rounded values.
pub fn views_to_tensor(views: &[&RgbImage], device: &Device) -> Result<Tensor> {
    let lut = lut();
    let (w, h) = match views.first() {
        Some(v) => v.dimensions(),
        None => candle_core::bail!("views_to_tensor: no views"),
    };
    let (w, h) = (w as usize, h as usize);
    let mut data = vec![0f32; views.len() * 3 * h * w];
    for (n, v) in views.iter().enumerate() {
        if v.dimensions() != (w as u32, h as u32) {
            candle_core::bail!("views_to_tensor: views have different sizes");
        }
        let base = n * 3 * h * w;
        for (i, px) in v.pixels().enumerate() {
            for c in 0..3 {
                data[base + c * h * w + i] = lut[px.0[c] as usize];
            }
        }
    }
    Tensor::from_vec(data, (views.len(), 3, h, w), device)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        let l = lut();
        assert_eq!(l[0], -1.0);
        assert_eq!(l[255], 1.0);
        assert_eq!(bf16::from_f32(l[127]).to_bits(), 0xBB81);
        assert_eq!(l[128], -l[127]);
    }
}

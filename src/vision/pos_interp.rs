//! Host-side resampling of the position tables (spec §5.2, §5.4).
//!
//! The absolute position tables of SAM (64×64) and CLIP (16×16) are resampled with PyTorch's
//! antialiased bicubic (`interpolate(mode="bicubic", antialias=True, align_corners=False)`),
//! which is Pillow's filter (cubic a = −0.5, support widened by the downscale factor, taps
//! renormalised), also when upsampling. The relative tables of SAM's global blocks are
//! resampled with plain linear interpolation along their length. Both run once per resolution
//! on small tables, so they are plain f32 loops on the host, evaluated in the reference's order.

/// The `a = −0.5` cubic kernel shared with Pillow.
///
/// The polynomials are evaluated as fused multiply-adds: the reference build contracts
/// them that way, and near |x| = 2 the cancellation makes the rounding visible in the taps
/// (up to ~1e-6 in the resampled tables with plain multiply-then-add).
fn cubic(x: f32) -> f32 {
    const A: f32 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0).mul_add(x, -(A + 3.0)) * x).mul_add(x, 1.0)
    } else if x < 2.0 {
        A.mul_add(x, -5.0 * A).mul_add(x, 8.0 * A).mul_add(x, -4.0 * A)
    } else {
        0.0
    }
}

/// Taps of one output position: first source index and normalised weights.
struct Taps1d {
    lo: usize,
    weights: Vec<f32>,
}

/// Antialiased bicubic taps for resampling an axis of `input` samples to `output` samples.
fn aa_bicubic_taps(input: usize, output: usize) -> Vec<Taps1d> {
    let scale = input as f32 / output as f32;
    // Downscaling widens the kernel by the scale factor; upscaling keeps it at 2 samples.
    let (support, inv) = if scale >= 1.0 {
        (2.0 * scale, 1.0 / scale)
    } else {
        (2.0, 1.0)
    };
    (0..output)
        .map(|o| {
            // The reference mixes f32 values with f64 literals (`+ 0.5`); the f64 steps are
            // kept so the taps round the same way.
            let center = (scale as f64 * (o as f64 + 0.5)) as f32;
            // `as i64` truncates toward zero like the reference's integer cast.
            let lo = (((center - support) as f64 + 0.5) as i64).max(0) as usize;
            let hi = (((center + support) as f64 + 0.5) as i64)
                .min(input as i64)
                .max(lo as i64) as usize;
            let mut weights: Vec<f32> = (0..hi - lo)
                .map(|j| cubic(((((j + lo) as f32 - center) as f64 + 0.5) * inv as f64) as f32))
                .collect();
            let total: f32 = weights.iter().sum();
            if total != 0.0 {
                weights.iter_mut().for_each(|w| *w /= total);
            }
            Taps1d { lo, weights }
        })
        .collect()
}

/// Resamples a channels-last grid `(in_h, in_w, c)` to `(out_h, out_w, c)` with the
/// antialiased bicubic filter: first along the width (per source row), then along the
/// height, both in f32, accumulating taps in ascending order as the reference does.
pub fn resize_bicubic_aa(src: &[f32], in_h: usize, in_w: usize, c: usize, out_h: usize, out_w: usize) -> Vec<f32> {
    debug_assert_eq!(src.len(), in_h * in_w * c);
    let tx = aa_bicubic_taps(in_w, out_w);
    let ty = aa_bicubic_taps(in_h, out_h);
    // Horizontal pass: (in_h, out_w, c).
    let mut mid = vec![0f32; in_h * out_w * c];
    for y in 0..in_h {
        for (ox, t) in tx.iter().enumerate() {
            let dst = &mut mid[(y * out_w + ox) * c..(y * out_w + ox + 1) * c];
            for (j, w) in t.weights.iter().enumerate() {
                let s = &src[(y * in_w + t.lo + j) * c..(y * in_w + t.lo + j + 1) * c];
                if j == 0 {
                    dst.iter_mut().zip(s).for_each(|(d, v)| *d = v * w);
                } else {
                    dst.iter_mut().zip(s).for_each(|(d, v)| *d += v * w);
                }
            }
        }
    }
    // Vertical pass: (out_h, out_w, c).
    let row = out_w * c;
    let mut out = vec![0f32; out_h * row];
    for (oy, t) in ty.iter().enumerate() {
        let dst = &mut out[oy * row..(oy + 1) * row];
        for (j, w) in t.weights.iter().enumerate() {
            let s = &mid[(t.lo + j) * row..(t.lo + j + 1) * row];
            if j == 0 {
                dst.iter_mut().zip(s).for_each(|(d, v)| *d = v * w);
            } else {
                dst.iter_mut().zip(s).for_each(|(d, v)| *d += v * w);
            }
        }
    }
    out
}

/// Resamples a `(len_in, c)` table to `(len_out, c)` along its length with linear
/// interpolation, `align_corners=False` (source index clamped at 0, upper neighbour
/// clamped at the last row), in f32.
pub fn resize_linear(src: &[f32], len_in: usize, c: usize, len_out: usize) -> Vec<f32> {
    debug_assert_eq!(src.len(), len_in * c);
    let scale = len_in as f32 / len_out as f32;
    let mut out = vec![0f32; len_out * c];
    for o in 0..len_out {
        let s = (scale * (o as f32 + 0.5) - 0.5).max(0.0);
        let i0 = (s as usize).min(len_in.saturating_sub(1));
        let i1 = if i0 + 1 < len_in { i0 + 1 } else { i0 };
        let l1 = (s - i0 as f32).clamp(0.0, 1.0);
        let l0 = 1.0 - l1;
        let (a, b) = (&src[i0 * c..(i0 + 1) * c], &src[i1 * c..(i1 + 1) * c]);
        for ((d, x0), x1) in out[o * c..(o + 1) * c].iter_mut().zip(a).zip(b) {
            *d = l0 * x0 + l1 * x1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_sizes_are_exact() {
        let src: Vec<f32> = (0..4 * 5 * 3).map(|i| (i as f32 * 0.37).sin()).collect();
        assert_eq!(resize_bicubic_aa(&src, 4, 5, 3, 4, 5), src);
        assert_eq!(resize_linear(&src, 20, 3, 20), src);
    }

    #[test]
    fn constant_is_preserved() {
        let src = vec![0.25f32; 16 * 16 * 2];
        for v in resize_bicubic_aa(&src, 16, 16, 2, 7, 21) {
            assert!((v - 0.25).abs() < 1e-6);
        }
        for v in resize_linear(&vec![0.25f32; 127 * 2], 127, 2, 63) {
            assert!((v - 0.25).abs() < 1e-6);
        }
    }
}

//! Per-output-channel symmetric INT8 weight quantisation.
//!
//! Each output row `n` of `W (N×K)` gets its own scale `s_n = max_k |W[n,k]| / 127`, and
//! `q[n,k] = round(W[n,k] / s_n)` in `-127..=127` (−128 is never used, so negation is exact
//! and the AMX signed×signed product has a symmetric range). The dequantisation error of
//! one weight is at most `s_n / 2`.

/// A quantised weight: row-major `N×K` int8 values and one f32 scale per output row.
#[derive(Debug, Clone)]
pub struct QuantizedInt8 {
    /// Output rows.
    pub n: usize,
    /// Input columns.
    pub k: usize,
    /// `N×K` quantised values, row-major.
    pub values: Vec<i8>,
    /// One scale per output row: `W ≈ values · scale`.
    pub scales: Vec<f32>,
}

impl QuantizedInt8 {
    /// Quantises a row-major `N×K` f32 weight. Returns `None` when `w.len() != n * k`.
    pub fn quantize(w: &[f32], n: usize, k: usize) -> Option<Self> {
        if n.checked_mul(k)? != w.len() {
            return None;
        }
        let mut values = vec![0i8; n * k];
        let mut scales = vec![0f32; n];
        for (row, (dst, scale)) in w
            .chunks_exact(k.max(1))
            .zip(values.chunks_exact_mut(k.max(1)).zip(&mut scales))
        {
            *scale = quantize_row(row, dst).1;
        }
        Some(Self { n, k, values, scales })
    }

    /// The dequantised weight `values · scale`, row-major `N×K` (for references and tests).
    pub fn dequantize(&self) -> Vec<f32> {
        let k = self.k.max(1);
        self.values
            .chunks_exact(k)
            .zip(&self.scales)
            .flat_map(|(row, s)| row.iter().map(move |q| *q as f32 * s))
            .collect()
    }
}

/// Quantises one row symmetrically to `-127..=127`; returns `(max |x|, scale)`.
///
/// An all-zero (or empty) row gets scale 0 and zero values. Non-finite inputs are not
/// expected in weights; they saturate to ±127.
pub fn quantize_row(x: &[f32], out: &mut [i8]) -> (f32, f32) {
    let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    if amax == 0.0 || !amax.is_finite() {
        let inf = !amax.is_finite();
        for (o, v) in out.iter_mut().zip(x) {
            *o = if inf && v.is_infinite() {
                127 * v.signum() as i8
            } else {
                0
            };
        }
        return (amax, 0.0);
    }
    let scale = amax / 127.0;
    let inv = 127.0 / amax;
    for (o, v) in out.iter_mut().zip(x) {
        *o = (v * inv).round().clamp(-127.0, 127.0) as i8;
    }
    (amax, scale)
}

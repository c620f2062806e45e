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

/// The plain CPU reference of the INT8 weight-only matmul:
/// `y[m, n] = scale[n] · Σ_k x[m, k] · w_q[n, k] + bias[n]`, summed in f64.
///
/// `x` is row-major `M×K` f32 (not quantised), `w_q` row-major `N×K`, `scales` and `bias`
/// have `N` elements. It is deliberately naive: custom kernels (the CUDA one in
/// `kernels/int8_gemm.cu`) are tested against it. Returns `None` when a length does not
/// match `m`, `n`, `k`.
pub fn int8_matmul_reference(
    x: &[f32],
    w_q: &[i8],
    scales: &[f32],
    bias: Option<&[f32]>,
    m: usize,
    n: usize,
    k: usize,
) -> Option<Vec<f32>> {
    if x.len() != m.checked_mul(k)? || w_q.len() != n.checked_mul(k)? || scales.len() != n {
        return None;
    }
    if bias.is_some_and(|b| b.len() != n) {
        return None;
    }
    let mut y = vec![0f32; m.checked_mul(n)?];
    for (r, out) in y.chunks_exact_mut(n.max(1)).take(m).enumerate() {
        let xr = &x[r * k..(r + 1) * k];
        for (c, o) in out.iter_mut().enumerate() {
            let wr = &w_q[c * k..(c + 1) * k];
            let dot: f64 = xr.iter().zip(wr).map(|(a, q)| *a as f64 * *q as f64).sum();
            *o = (dot * scales[c] as f64 + bias.map_or(0.0, |b| b[c] as f64)) as f32;
        }
    }
    Some(y)
}

#[cfg(test)]
mod reference_tests {
    use super::*;

    /// The reference equals the f32 product of the dequantised weight (a different route
    /// to the same number), with and without bias, for an odd shape.
    #[test]
    fn reference_matches_dequantised_product() {
        let (m, n, k) = (3, 5, 7);
        let w: Vec<f32> = (0..n * k).map(|i| ((i * 37 % 23) as f32 - 11.0) * 0.13).collect();
        let x: Vec<f32> = (0..m * k).map(|i| ((i * 17 % 13) as f32 - 6.0) * 0.21).collect();
        let bias: Vec<f32> = (0..n).map(|i| i as f32 * 0.5 - 1.0).collect();
        let q = QuantizedInt8::quantize(&w, n, k).expect("shape");
        let deq = q.dequantize();
        for b in [None, Some(bias.as_slice())] {
            let y = int8_matmul_reference(&x, &q.values, &q.scales, b, m, n, k).expect("lengths");
            for r in 0..m {
                for c in 0..n {
                    let want: f32 =
                        (0..k).map(|i| x[r * k + i] * deq[c * k + i]).sum::<f32>() + b.map_or(0.0, |b| b[c]);
                    let got = y[r * n + c];
                    assert!(
                        (got - want).abs() <= 1e-4 * (1.0 + want.abs()),
                        "({r},{c}): {got} vs {want}"
                    );
                }
            }
        }
        assert!(int8_matmul_reference(&x, &q.values, &q.scales, None, m, n, k + 1).is_none());
        assert!(int8_matmul_reference(&x, &q.values, &q.scales, Some(&bias[1..]), m, n, k).is_none());
    }
}

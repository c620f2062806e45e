//! The mixed ("block causal") attention mask of the OCR-2 encoder (spec-ocr2 §6.3, trap T1).
//!
//! Over `[n visual tokens ; n queries]`, query row `i` may attend key `j` iff
//! `j < n` (every row sees every visual token) or `n ≤ j ≤ i` (a query sees the queries up
//! to and including itself). Visual rows therefore never see a query: they attend
//! bidirectionally among themselves, like a ViT. The reference adds `finfo(dtype).min` where
//! this is false; every row has an allowed key, so that equals masking with −∞.

use candle_core::{DType, Device, Result, Tensor};

/// Whether row `i` may attend column `j` for `n` visual tokens (and `n` queries).
pub fn allowed(i: usize, j: usize, n: usize) -> bool {
    j < n || (i >= n && n <= j && j <= i)
}

/// The `(2n, 2n)` mask as 0/1 f32 (1 = may attend), the golden `enc_mask_allowed_{n}`.
pub fn allowed_matrix(n: usize, device: &Device) -> Result<Tensor> {
    let l = 2 * n;
    let v: Vec<f32> = (0..l * l)
        .map(|k| f32::from(u8::from(allowed(k / l, k % l, n))))
        .collect();
    Tensor::from_vec(v, (l, l), device)
}

/// The `(2n, 2n)` additive mask in `dtype`: 0 where allowed, the dtype's most negative
/// finite value elsewhere (as the reference).
pub fn additive(n: usize, dtype: DType, device: &Device) -> Result<Tensor> {
    let l = 2 * n;
    let min = match dtype {
        DType::BF16 => half::bf16::MIN.to_f32(),
        DType::F16 => half::f16::MIN.to_f32(),
        _ => f32::MIN,
    };
    let v: Vec<f32> = (0..l * l)
        .map(|k| if allowed(k / l, k % l, n) { 0.0 } else { min })
        .collect();
    Tensor::from_vec(v, (l, l), device)?.to_dtype(dtype)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visual_rows_never_see_queries_and_queries_are_causal_with_diagonal() {
        let n = 3;
        #[rustfmt::skip]
        let want = [
            [1, 1, 1, 0, 0, 0],
            [1, 1, 1, 0, 0, 0],
            [1, 1, 1, 0, 0, 0],
            [1, 1, 1, 1, 0, 0],
            [1, 1, 1, 1, 1, 0],
            [1, 1, 1, 1, 1, 1],
        ];
        for (i, row) in want.iter().enumerate() {
            for (j, &w) in row.iter().enumerate() {
                assert_eq!(allowed(i, j, n), w == 1, "({i},{j})");
            }
        }
    }

    #[test]
    fn additive_mask_uses_the_most_negative_finite_value() {
        let m = additive(2, DType::F32, &Device::Cpu).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(m[0][2], f32::MIN);
        assert_eq!(m[3][3], 0.0);
        assert!(m.iter().flatten().all(|x| x.is_finite()));
    }
}

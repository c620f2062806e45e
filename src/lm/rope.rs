//! Rotary position embedding of the decoder: half-split ("NeoX") convention.
//!
//! Dimension `i` is paired with `i + d/2` (trap 5), frequency `f_i = 1 / θ^(2i/d)` computed
//! in f32 as transformers does. The HF reference casts its frequency buffer to bf16 together
//! with the model, which shifts the angles measurably at long positions; that variant is
//! [`RopeFrequencies::Bf16Rounded`]. The goldens use plain f32 frequencies.

use candle_core::{DType, Device, Result, Tensor};

/// How the inverse frequencies are rounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RopeFrequencies {
    /// f32 frequencies (vLLM profile and the f32 parity goldens).
    #[default]
    F32,
    /// Frequencies rounded to bf16 before use (HF profile, spec §7.3).
    Bf16Rounded,
}

/// Precomputed inverse frequencies; cos/sin rows are made per call for the positions used.
#[derive(Debug, Clone)]
pub struct Rope {
    inv_freq: Vec<f32>,
    dtype: DType,
    device: Device,
}

impl Rope {
    /// Frequencies for a rotary dimension `head_dim` and base `theta`. `dtype` is the dtype
    /// the cos/sin tables are cast to (the model dtype).
    pub fn new(head_dim: usize, theta: f64, freqs: RopeFrequencies, dtype: DType, device: &Device) -> Self {
        let theta = theta as f32;
        let inv_freq = (0..head_dim / 2)
            .map(|i| {
                let f = 1.0f32 / theta.powf((2 * i) as f32 / head_dim as f32);
                match freqs {
                    RopeFrequencies::F32 => f,
                    RopeFrequencies::Bf16Rounded => half::bf16::from_f32(f).to_f32(),
                }
            })
            .collect();
        Self {
            inv_freq,
            dtype,
            device: device.clone(),
        }
    }

    /// The inverse frequencies `f_i`, `i < d/2`.
    pub fn inv_freq(&self) -> &[f32] {
        &self.inv_freq
    }

    /// `(cos, sin)` tables of shape `(len, d/2)` for positions `start .. start + len`.
    /// Angles and their cos/sin are computed in f32, then cast to the model dtype.
    pub fn tables(&self, start: usize, len: usize) -> Result<(Tensor, Tensor)> {
        let t = self.position_tables(start, len)?;
        Ok((t.cos, t.sin))
    }

    /// The tables of positions `start .. start + len` both as tensors (model dtype) and as
    /// f32 host rows (for the CPU path), computed once per forward pass for every layer.
    pub fn position_tables(&self, start: usize, len: usize) -> Result<RopeTables> {
        let half = self.inv_freq.len();
        let mut cos_host = Vec::with_capacity(len * half);
        let mut sin_host = Vec::with_capacity(len * half);
        for p in start..start + len {
            for &f in &self.inv_freq {
                let angle = p as f32 * f;
                cos_host.push(angle.cos());
                sin_host.push(angle.sin());
            }
        }
        let cos = Tensor::from_slice(&cos_host, (len, half), &self.device)?.to_dtype(self.dtype)?;
        let sin = Tensor::from_slice(&sin_host, (len, half), &self.device)?.to_dtype(self.dtype)?;
        Ok(RopeTables {
            cos,
            sin,
            cos_host,
            sin_host,
            half,
        })
    }

    /// Rotates `x` `(1, heads, len, d)` whose rows sit at positions `start ..`.
    pub fn apply(&self, x: &Tensor, start: usize) -> Result<Tensor> {
        let (cos, sin) = self.tables(start, x.dim(2)?)?;
        apply_tables(x, &cos, &sin)
    }
}

/// cos/sin of the positions of one forward pass.
#[derive(Debug, Clone)]
pub struct RopeTables {
    /// `(len, d/2)` cosines in the model dtype.
    pub cos: Tensor,
    /// `(len, d/2)` sines in the model dtype.
    pub sin: Tensor,
    /// The same cosines, f32, row-major.
    pub cos_host: Vec<f32>,
    /// The same sines, f32, row-major.
    pub sin_host: Vec<f32>,
    /// `d/2`.
    pub half: usize,
}

impl RopeTables {
    /// Rotates one head row `src` (`d` values) of the `row`-th position into `dst`, with
    /// the same arithmetic, in the same order, as candle's CPU `rope` kernel (so the f32
    /// parity profile gives identical results on either path).
    pub fn rotate_into(&self, row: usize, src: &[f32], dst: &mut [f32]) {
        let h = self.half;
        let cos = &self.cos_host[row * h..(row + 1) * h];
        let sin = &self.sin_host[row * h..(row + 1) * h];
        let (x1, x2) = src.split_at(h);
        let (d1, d2) = dst.split_at_mut(h);
        for i in 0..h.min(x2.len()) {
            d1[i] = x1[i] * cos[i] - x2[i] * sin[i];
            d2[i] = x1[i] * sin[i] + x2[i] * cos[i];
        }
    }
}

/// Rotates `x` `(1, heads, len, d)` with `(len, d/2)` tables from [`Rope::tables`]
/// (one pair of tables serves every layer of a forward pass).
pub fn apply_tables(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    candle_nn::rotary_emb::rope(&x.contiguous()?, cos, sin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bf16_frequencies_match_spec_bit_patterns() {
        // The first and last few of the 64 bit patterns listed in spec §7.3.
        let r = Rope::new(128, 10000.0, RopeFrequencies::Bf16Rounded, DType::F32, &Device::Cpu);
        let bits: Vec<u16> = r
            .inv_freq()
            .iter()
            .map(|&f| half::bf16::from_f32(f).to_bits())
            .collect();
        assert_eq!(&bits[..5], &[0x3f80, 0x3f5e, 0x3f40, 0x3f26, 0x3f10]);
        assert_eq!(&bits[60..], &[0x393a, 0x3921, 0x390c, 0x38f2]);
    }

    #[test]
    fn host_rotation_matches_candle_rope() {
        let r = Rope::new(8, 10000.0, RopeFrequencies::F32, DType::F32, &Device::Cpu);
        let xs: Vec<f32> = (0..3 * 8).map(|i| ((i * 37 % 11) as f32 - 5.0) / 3.0).collect();
        let x = Tensor::from_slice(&xs, (1, 1, 3, 8), &Device::Cpu).unwrap();
        let want = r.apply(&x, 5).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let t = r.position_tables(5, 3).unwrap();
        let mut got = vec![0f32; 24];
        for row in 0..3 {
            t.rotate_into(row, &xs[row * 8..(row + 1) * 8], &mut got[row * 8..(row + 1) * 8]);
        }
        assert_eq!(got, want);
    }

    #[test]
    fn half_split_rotation_of_one_pair() {
        // d = 4: pairs (0,2) and (1,3). Position 1 rotates pair 0 by angle 1 rad.
        let r = Rope::new(4, 10000.0, RopeFrequencies::F32, DType::F32, &Device::Cpu);
        let x = Tensor::new(&[1f32, 0., 0., 0.], &Device::Cpu)
            .unwrap()
            .reshape((1, 1, 1, 4))
            .unwrap();
        let y = r.apply(&x, 1).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(
            (y[0] - 1f32.cos()).abs() < 1e-6 && (y[2] - 1f32.sin()).abs() < 1e-6,
            "{y:?}"
        );
        assert!(y[1].abs() < 1e-7 && y[3].abs() < 1e-7, "{y:?}");
    }
}

//! `softmax(scores + rel_h ⊕ rel_w)` over the keys in one pass (spec §5.4).
//!
//! The decomposed relative-position bias of a query is `rel_h[ky] + rel_w[kx]` for the key at
//! `(ky, kx)`. Built as a tensor it costs a full score-sized write, then an add and a softmax:
//! three passes over the largest tensor of SAM's global layers. On the CPU this op forms the
//! biased logits row by row and normalises them in place. Other devices use the tensor ops.

use candle_core::{CpuStorage, CustomOp3, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// Softmax over the last axis of `scores (bh, m, H·W)` plus the bias
/// `rel_h (bh, m, H)[ky] + rel_w (bh, m, W)[kx]` for key `ky·W + kx`.
pub fn biased_softmax(scores: &Tensor, rel_h: &Tensor, rel_w: &Tensor) -> Result<Tensor> {
    if scores.device().is_cpu() && scores.dtype() == DType::F32 {
        let scores = scores.contiguous()?;
        return scores.apply_op3_no_bwd(&rel_h.contiguous()?, &rel_w.contiguous()?, &BiasedSoftmax);
    }
    let (bh, m, n) = scores.dims3()?;
    let bias = rel_h
        .unsqueeze(3)?
        .broadcast_add(&rel_w.unsqueeze(2)?)?
        .reshape((bh, m, n))?;
    candle_nn::ops::softmax_last_dim(&(scores + bias)?)
}

struct BiasedSoftmax;

fn f32_slice<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    let data = s.as_slice::<f32>()?;
    match l.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => candle_core::bail!("biased_softmax: {what} is not contiguous"),
    }
}

impl CustomOp3 for BiasedSoftmax {
    fn name(&self) -> &'static str {
        "sam-biased-softmax"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (bh, m, n) = l1.shape().dims3()?;
        let (bh2, m2, kh) = l2.shape().dims3()?;
        let (bh3, m3, kw) = l3.shape().dims3()?;
        if (bh2, m2, bh3, m3) != (bh, m, bh, m) || kh * kw != n {
            candle_core::bail!(
                "biased_softmax: shapes {:?} {:?} {:?} do not agree",
                l1.shape(),
                l2.shape(),
                l3.shape()
            );
        }
        let scores = f32_slice(s1, l1, "scores")?;
        let rel_h = f32_slice(s2, l2, "rel_h")?;
        let rel_w = f32_slice(s3, l3, "rel_w")?;
        let mut out = vec![0f32; bh * m * n];
        out.par_chunks_mut(n.max(1)).enumerate().for_each(|(row, dst)| {
            let src = &scores[row * n..(row + 1) * n];
            let rh = &rel_h[row * kh..(row + 1) * kh];
            let rw = &rel_w[row * kw..(row + 1) * kw];
            let mut max = f32::NEG_INFINITY;
            for (ky, h) in rh.iter().enumerate() {
                let (d, s) = (&mut dst[ky * kw..(ky + 1) * kw], &src[ky * kw..(ky + 1) * kw]);
                for ((d, s), w) in d.iter_mut().zip(s).zip(rw) {
                    // The reference adds the summed bias (rel_h + rel_w) to the scaled scores.
                    *d = s + (h + w);
                    max = max.max(*d);
                }
            }
            let mut sum = 0f32;
            for d in dst.iter_mut() {
                *d = (*d - max).exp();
                sum += *d;
            }
            dst.iter_mut().for_each(|d| *d /= sum);
        });
        Ok((CpuStorage::F32(out), Shape::from((bh, m, n))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn matches_tensor_ops() -> Result<()> {
        let dev = Device::Cpu;
        let scores = Tensor::randn(0f32, 2.0, (3, 5, 4 * 6), &dev)?;
        let rel_h = Tensor::randn(0f32, 1.0, (3, 5, 4), &dev)?;
        let rel_w = Tensor::randn(0f32, 1.0, (3, 5, 6), &dev)?;
        let fused = biased_softmax(&scores, &rel_h, &rel_w)?;
        let bias = rel_h
            .unsqueeze(3)?
            .broadcast_add(&rel_w.unsqueeze(2)?)?
            .reshape((3, 5, 24))?;
        let plain = candle_nn::ops::softmax_last_dim(&(scores + bias)?)?;
        let diff = (fused - plain)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
        assert!(diff < 1e-6, "max diff {diff}");
        Ok(())
    }
}

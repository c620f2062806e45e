//! The decoder's key/value cache, preallocated for a whole job.
//!
//! One `(1, kv_heads, max_len, head_dim)` tensor for K and one for V per layer are
//! allocated up front, so the memory a job needs is known (and can be checked against a
//! budget) before it starts. Each step writes its rows in place; nothing is concatenated
//! or regrown while decoding. Asking for more rows than were reserved is an error.

use candle_core::{DType, Device, Tensor};

use crate::error::{Error, Result};

/// Preallocated per-layer K (after RoPE) and V tensors plus the number of filled positions.
#[derive(Debug, Clone)]
pub struct KvCache {
    k: Vec<Tensor>,
    v: Vec<Tensor>,
    len: usize,
    max_len: usize,
}

impl KvCache {
    /// Bytes a cache of this geometry occupies: layers × 2 × heads × head_dim × max_len × dtype size.
    pub fn bytes_for(num_layers: usize, num_kv_heads: usize, head_dim: usize, max_len: usize, dtype: DType) -> u64 {
        (num_layers * 2 * num_kv_heads * head_dim * max_len * dtype.size_in_bytes()) as u64
    }

    /// Allocates (zeroed) room for `max_len` positions in each of `num_layers` layers.
    pub fn new(
        num_layers: usize,
        num_kv_heads: usize,
        head_dim: usize,
        max_len: usize,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let shape = (1, num_kv_heads, max_len, head_dim);
        let mut k = Vec::with_capacity(num_layers);
        let mut v = Vec::with_capacity(num_layers);
        for _ in 0..num_layers {
            k.push(Tensor::zeros(shape, dtype, device)?);
            v.push(Tensor::zeros(shape, dtype, device)?);
        }
        Ok(Self { k, v, len: 0, max_len })
    }

    /// Bytes held by the cache tensors.
    pub fn bytes(&self) -> u64 {
        self.k.iter().chain(&self.v).map(|t| (t.elem_count() * t.dtype().size_in_bytes()) as u64).sum()
    }

    /// Positions already filled (the position of the next token).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no position is filled.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Positions reserved.
    pub fn capacity(&self) -> usize {
        self.max_len
    }

    /// Positions still free.
    pub fn remaining(&self) -> usize {
        self.max_len - self.len
    }

    /// Number of layers.
    pub fn num_layers(&self) -> usize {
        self.k.len()
    }

    /// Forgets all positions (the memory is kept and overwritten by the next job).
    pub fn reset(&mut self) {
        self.len = 0;
    }

    /// Fails unless `n` more positions fit.
    pub fn ensure_room(&self, n: usize) -> Result<()> {
        if n > self.remaining() {
            return Err(Error::request(
                format!(
                    "the KV cache holds {} positions, {} are used, {n} more were asked for",
                    self.max_len, self.len
                ),
                "reserve a longer cache (more max tokens) or shorten the prompt",
            ));
        }
        Ok(())
    }

    /// Writes `k`, `v` `(1, kv_heads, n, head_dim)` of `layer` at positions `len .. len + n`
    /// (without advancing [`len`](Self::len)) and returns views of positions `0 .. len + n`.
    ///
    /// Every layer of one forward pass writes the same positions; the caller advances the
    /// cache once with [`advance`](Self::advance) when all layers are done.
    pub fn write(&mut self, layer: usize, k: &Tensor, v: &Tensor) -> candle_core::Result<(Tensor, Tensor)> {
        let n = k.dim(2)?;
        if self.len + n > self.max_len {
            candle_core::bail!("KV cache overflow: {} + {n} > {}", self.len, self.max_len)
        }
        let (Some(kc), Some(vc)) = (self.k.get(layer), self.v.get(layer)) else {
            candle_core::bail!("KV cache has no layer {layer}")
        };
        kc.slice_set(&k.contiguous()?, 2, self.len)?;
        vc.slice_set(&v.contiguous()?, 2, self.len)?;
        Ok((kc.narrow(2, 0, self.len + n)?, vc.narrow(2, 0, self.len + n)?))
    }

    /// Marks `n` more positions as filled (after every layer has written them).
    pub fn advance(&mut self, n: usize) -> Result<()> {
        self.ensure_room(n)?;
        self.len += n;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_and_in_place_writes() {
        let dev = Device::Cpu;
        let mut c = KvCache::new(2, 3, 4, 5, DType::F32, &dev).unwrap();
        assert_eq!(c.bytes(), 2 * 2 * 3 * 4 * 5 * 4);
        assert_eq!(c.bytes(), KvCache::bytes_for(2, 3, 4, 5, DType::F32));
        let k = Tensor::ones((1, 3, 2, 4), DType::F32, &dev).unwrap();
        let v = (k.clone() * 2.0).unwrap();
        for layer in 0..2 {
            let (ka, va) = c.write(layer, &k, &v).unwrap();
            assert_eq!(ka.dims(), &[1, 3, 2, 4]);
            assert_eq!(va.sum_all().unwrap().to_scalar::<f32>().unwrap(), 48.0);
        }
        c.advance(2).unwrap();
        let k1 = (Tensor::ones((1, 3, 1, 4), DType::F32, &dev).unwrap() * 3.0).unwrap();
        let (ka, _) = c.write(0, &k1, &k1).unwrap();
        assert_eq!(ka.dims(), &[1, 3, 3, 4]);
        assert_eq!(ka.sum_all().unwrap().to_scalar::<f32>().unwrap(), 24.0 + 36.0);
        c.advance(1).unwrap();
        let too_many = Tensor::ones((1, 3, 3, 4), DType::F32, &dev).unwrap();
        assert!(c.write(0, &too_many, &too_many).is_err());
        assert!(c.ensure_room(3).is_err());
        assert!(c.advance(3).is_err());
        c.ensure_room(2).unwrap();
    }
}

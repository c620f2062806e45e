//! The decoder's key/value cache, preallocated for a whole job.
//!
//! Room for `max_len` positions of K and V per layer, laid out `(kv_heads, max_len, head_dim)`,
//! is allocated up front, so the memory a job needs is known (and can be checked against a
//! budget) before it starts. Each step writes its rows in place; nothing is concatenated
//! or regrown while decoding. Asking for more rows than were reserved is an error.
//!
//! An f32 cache on the CPU lives in plain host buffers that the attention kernel reads
//! directly ([`KvCache::host_layer_mut`]); any other device or dtype keeps candle tensors.

use candle_core::{DType, Device, Tensor};

use crate::error::{Error, Result};

/// Where the rows live.
#[derive(Debug, Clone)]
enum Store {
    /// f32 CPU buffers, one K and one V per layer, `kv_heads × max_len × head_dim` each.
    Host { k: Vec<Vec<f32>>, v: Vec<Vec<f32>> },
    /// `(1, kv_heads, max_len, head_dim)` tensors per layer.
    Tensors { k: Vec<Tensor>, v: Vec<Tensor> },
}

/// Preallocated per-layer K (after RoPE) and V plus the number of filled positions.
#[derive(Debug, Clone)]
pub struct KvCache {
    store: Store,
    len: usize,
    max_len: usize,
    kv_heads: usize,
    head_dim: usize,
    dtype: DType,
    device: Device,
}

/// One layer of a host cache, borrowed for writing this step's rows and attending.
#[derive(Debug)]
pub struct HostLayer<'a> {
    /// Keys, `kv_heads × max_len × head_dim`; head `g`, position `p` starts at
    /// `(g · max_len + p) · head_dim`.
    pub k: &'a mut [f32],
    /// Values, same layout as `k`.
    pub v: &'a mut [f32],
    /// Positions reserved per head (the head stride, in rows).
    pub max_len: usize,
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
        let store = if device.is_cpu() && dtype == DType::F32 {
            let n = num_kv_heads * max_len * head_dim;
            Store::Host {
                k: (0..num_layers).map(|_| vec![0f32; n]).collect(),
                v: (0..num_layers).map(|_| vec![0f32; n]).collect(),
            }
        } else {
            let shape = (1, num_kv_heads, max_len, head_dim);
            let mut k = Vec::with_capacity(num_layers);
            let mut v = Vec::with_capacity(num_layers);
            for _ in 0..num_layers {
                k.push(Tensor::zeros(shape, dtype, device)?);
                v.push(Tensor::zeros(shape, dtype, device)?);
            }
            Store::Tensors { k, v }
        };
        Ok(Self {
            store,
            len: 0,
            max_len,
            kv_heads: num_kv_heads,
            head_dim,
            dtype,
            device: device.clone(),
        })
    }

    /// Bytes held by the cache.
    pub fn bytes(&self) -> u64 {
        Self::bytes_for(
            self.num_layers(),
            self.kv_heads,
            self.head_dim,
            self.max_len,
            self.dtype,
        )
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
        match &self.store {
            Store::Host { k, .. } => k.len(),
            Store::Tensors { k, .. } => k.len(),
        }
    }

    /// Whether the rows live in host buffers (f32 on the CPU).
    pub fn is_host(&self) -> bool {
        matches!(self.store, Store::Host { .. })
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

    /// The host buffers of `layer`, or `None` for a tensor cache or a layer out of range.
    pub fn host_layer_mut(&mut self, layer: usize) -> Option<HostLayer<'_>> {
        match &mut self.store {
            Store::Host { k, v } => match (k.get_mut(layer), v.get_mut(layer)) {
                (Some(k), Some(v)) => Some(HostLayer {
                    k,
                    v,
                    max_len: self.max_len,
                }),
                _ => None,
            },
            Store::Tensors { .. } => None,
        }
    }

    /// Writes `k`, `v` `(1, kv_heads, n, head_dim)` of `layer` at positions `len .. len + n`
    /// (without advancing [`len`](Self::len)) and returns `(1, kv_heads, len + n, head_dim)`
    /// views (tensor cache) or copies (host cache) of positions `0 .. len + n`.
    ///
    /// Every layer of one forward pass writes the same positions; the caller advances the
    /// cache once with [`advance`](Self::advance) when all layers are done. This is the
    /// candle path; the CPU attention writes host rows through [`host_layer_mut`](Self::host_layer_mut).
    pub fn write(&mut self, layer: usize, k: &Tensor, v: &Tensor) -> candle_core::Result<(Tensor, Tensor)> {
        let n = k.dim(2)?;
        if self.len + n > self.max_len {
            candle_core::bail!("KV cache overflow: {} + {n} > {}", self.len, self.max_len)
        }
        let (start, total, heads, hd) = (self.len, self.len + n, self.kv_heads, self.head_dim);
        let device = self.device.clone();
        match &mut self.store {
            Store::Tensors { k: ks, v: vs } => {
                let (Some(kc), Some(vc)) = (ks.get(layer), vs.get(layer)) else {
                    candle_core::bail!("KV cache has no layer {layer}")
                };
                kc.slice_set(&k.contiguous()?, 2, start)?;
                vc.slice_set(&v.contiguous()?, 2, start)?;
                Ok((kc.narrow(2, 0, total)?, vc.narrow(2, 0, total)?))
            }
            Store::Host { k: ks, v: vs } => {
                let (Some(kc), Some(vc)) = (ks.get_mut(layer), vs.get_mut(layer)) else {
                    candle_core::bail!("KV cache has no layer {layer}")
                };
                let max_len = self.max_len;
                let mut out = Vec::with_capacity(2);
                for (buf, t) in [(kc, k), (vc, v)] {
                    let rows = t.to_dtype(DType::F32)?.reshape((heads, n, hd))?.to_vec3::<f32>()?;
                    let mut view = Vec::with_capacity(heads * total * hd);
                    for (g, head) in rows.iter().enumerate() {
                        for (i, row) in head.iter().enumerate() {
                            let at = (g * max_len + start + i) * hd;
                            buf[at..at + hd].copy_from_slice(row);
                        }
                        view.extend_from_slice(&buf[g * max_len * hd..(g * max_len + total) * hd]);
                    }
                    out.push(Tensor::from_vec(view, (1, heads, total, hd), &device)?);
                }
                let v_view = out.pop();
                match (out.pop(), v_view) {
                    (Some(k), Some(v)) => Ok((k, v)),
                    _ => candle_core::bail!("KV cache: internal error"),
                }
            }
        }
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

    #[test]
    fn host_rows_and_tensor_store() {
        let dev = Device::Cpu;
        let mut c = KvCache::new(1, 2, 3, 4, DType::F32, &dev).unwrap();
        assert!(c.is_host());
        let k = Tensor::arange(0f32, 6.0, &dev).unwrap().reshape((1, 2, 1, 3)).unwrap();
        c.write(0, &k, &k).unwrap();
        // Head 1 starts one head stride (max_len rows) after head 0.
        let slot = c.host_layer_mut(0).unwrap();
        assert_eq!(slot.max_len, 4);
        assert_eq!(&slot.k[..3], &[0.0, 1.0, 2.0]);
        assert_eq!(&slot.k[12..15], &[3.0, 4.0, 5.0]);
        assert!(c.host_layer_mut(1).is_none());
        // Other dtypes keep candle tensors and give the same views.
        let mut t = KvCache::new(1, 2, 3, 4, DType::BF16, &dev).unwrap();
        assert!(!t.is_host() && t.host_layer_mut(0).is_none());
        let kb = k.to_dtype(DType::BF16).unwrap();
        let (ka, _) = t.write(0, &kb, &kb).unwrap();
        assert_eq!(
            ka.to_dtype(DType::F32)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap(),
            vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
        );
        assert_eq!(t.bytes(), KvCache::bytes_for(1, 2, 3, 4, DType::BF16));
    }
}

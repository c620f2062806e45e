//! Arrangement of the projected views into the image embedding sequence (spec §4, §6.4).
//!
//! Each grid gets `image_newline` appended to every row; tiles are first stitched into one
//! big grid (tile columns side by side). The sequence is local block (if any), global block,
//! then one `view_seperator`.

use candle_core::{Result, Tensor};

/// Appends `newline` `(D)` to every row of a `(rows, cols, D)` grid → `(rows·(cols+1), D)`.
fn with_newlines(grid: &Tensor, newline: &Tensor) -> Result<Tensor> {
    let (rows, _, d) = grid.dims3()?;
    let nl = newline.reshape((1, 1, d))?.broadcast_as((rows, 1, d))?;
    Tensor::cat(&[grid, &nl], 1)?.reshape(((), d))
}

/// Side of a square token grid of `tokens` tokens.
fn side(tokens: usize) -> Result<usize> {
    let n = (tokens as f64).sqrt().round() as usize;
    if n * n != tokens {
        candle_core::bail!("layout: {tokens} view tokens do not form a square grid");
    }
    Ok(n)
}

/// The global block: projector output `(1, n², D)` → `(n·(n+1), D)`.
pub fn global_block(proj: &Tensor, newline: &Tensor) -> Result<Tensor> {
    let (_, t, d) = proj.dims3()?;
    let n = side(t)?;
    with_newlines(&proj.reshape((n, n, d))?, newline)
}

/// The local block: tiles `(w·h, n², D)` in row-major tile order, `grid = (w, h)` tiles
/// → `(h·n·(w·n+1), D)`.
pub fn local_block(proj: &Tensor, grid: (usize, usize), newline: &Tensor) -> Result<Tensor> {
    let (tiles, t, d) = proj.dims3()?;
    let (wt, ht) = grid;
    if tiles != wt * ht {
        candle_core::bail!("layout: {tiles} tiles do not fill a {wt}x{ht} grid");
    }
    let n = side(t)?;
    // (h, w, n, n, D) → (h, n, w, n, D): tile rows outer, then rows within a tile.
    let stitched = proj
        .reshape((ht, wt, n, n, d))?
        .permute((0, 2, 1, 3, 4))?
        .reshape((ht * n, wt * n, d))?;
    with_newlines(&stitched, newline)
}

/// `[local; global; separator]` → `(N, D)`.
pub fn sequence(local: Option<&Tensor>, global: &Tensor, separator: &Tensor) -> Result<Tensor> {
    let d = separator.elem_count();
    let sep = separator.reshape((1, d))?;
    match local {
        Some(l) => Tensor::cat(&[l, global, &sep], 0),
        None => Tensor::cat(&[global, &sep], 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Token counts of spec §4: Gundam 2×3 tiles of 10×10 plus a 16×16 global view → 903.
    #[test]
    fn gundam_count_and_order() -> Result<()> {
        let dev = Device::Cpu;
        let d = 2;
        let local = Tensor::arange(0f32, (6 * 100 * d) as f32, &dev)?.reshape((6, 100, d))?;
        let global = Tensor::zeros((1, 256, d), candle_core::DType::F32, &dev)?;
        let nl = Tensor::new(&[-1f32, -1.0], &dev)?;
        let sep = Tensor::new(&[-2f32, -2.0], &dev)?;
        let l = local_block(&local, (2, 3), &nl)?;
        let g = global_block(&global, &nl)?;
        let s = sequence(Some(&l), &g, &sep)?;
        assert_eq!(s.dims(), &[903, d]);
        let rows = s.to_vec2::<f32>()?;
        // Stitched row 0: tile 0 row 0 (10 tokens), tile 1 row 0 (10 tokens), newline.
        assert_eq!(rows[9][0], (9 * d) as f32);
        assert_eq!(rows[10][0], (100 * d) as f32);
        assert_eq!(rows[20], vec![-1.0, -1.0]);
        // Stitched row 10 starts with tile 2 (row-major), row 0.
        assert_eq!(rows[10 * 21][0], (200 * d) as f32);
        assert_eq!(rows[902], vec![-2.0, -2.0]);
        Ok(())
    }
}

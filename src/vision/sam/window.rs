//! Window partitioning of SAM's windowed blocks (spec §5.3).
//!
//! The normalised token grid is zero-padded at the bottom/right to a multiple of the window
//! and cut into independent windows; the padded tokens take part in attention unmasked, as
//! in the reference, and are cropped away afterwards.

use candle_core::{Result, Tensor};

/// Splits `(B, H, W, C)` into `(B·nh·nw, ws, ws, C)` windows; returns them and the padded `(Hp, Wp)`.
pub fn partition(x: &Tensor, ws: usize) -> Result<(Tensor, (usize, usize))> {
    let (b, h, w, c) = x.dims4()?;
    let pad_h = (ws - h % ws) % ws;
    let pad_w = (ws - w % ws) % ws;
    let x = if pad_h > 0 {
        x.pad_with_zeros(1, 0, pad_h)?
    } else {
        x.clone()
    };
    let x = if pad_w > 0 { x.pad_with_zeros(2, 0, pad_w)? } else { x };
    let (hp, wp) = (h + pad_h, w + pad_w);
    let windows = x
        .reshape((b, hp / ws, ws, wp / ws, ws, c))?
        .permute((0, 1, 3, 2, 4, 5))?
        .contiguous()?
        .reshape((b * (hp / ws) * (wp / ws), ws, ws, c))?;
    Ok((windows, (hp, wp)))
}

/// Reassembles windows `(B·nh·nw, ws, ws, C)` into `(B, H, W, C)`, dropping the padding.
pub fn unpartition(windows: &Tensor, ws: usize, padded: (usize, usize), hw: (usize, usize)) -> Result<Tensor> {
    let (hp, wp) = padded;
    let (h, w) = hw;
    let (nwin, _, _, c) = windows.dims4()?;
    let b = nwin / ((hp / ws) * (wp / ws));
    let x = windows
        .reshape((b, hp / ws, wp / ws, ws, ws, c))?
        .permute((0, 1, 3, 2, 4, 5))?
        .contiguous()?
        .reshape((b, hp, wp, c))?;
    if hp == h && wp == w {
        Ok(x)
    } else {
        x.narrow(1, 0, h)?.narrow(2, 0, w)?.contiguous()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn round_trip_with_padding() -> Result<()> {
        let x = Tensor::arange(0f32, (2 * 5 * 7 * 3) as f32, &Device::Cpu)?.reshape((2, 5, 7, 3))?;
        let (win, padded) = partition(&x, 4)?;
        assert_eq!(padded, (8, 8));
        assert_eq!(win.dims(), &[8, 4, 4, 3]);
        // The second window of the first image starts at column 4 of row 0.
        assert_eq!(
            win.get(1)?.get(0)?.get(0)?.to_vec1::<f32>()?,
            x.get(0)?.get(0)?.get(4)?.to_vec1::<f32>()?
        );
        let back = unpartition(&win, 4, padded, (5, 7))?;
        assert_eq!(
            back.flatten_all()?.to_vec1::<f32>()?,
            x.flatten_all()?.to_vec1::<f32>()?
        );
        Ok(())
    }
}

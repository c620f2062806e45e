//! The CUDA INT8 kernel (`kernels/int8_gemm.cu`) against its CPU reference
//! (`quant::int8::int8_matmul_reference`), and `Linear` Int8 on CUDA against `Linear` Int8 on
//! the CPU. Compiled only with `--features cuda`; every test prints a loud SKIPPED line and
//! passes when no CUDA device is present.
//!
//! Tolerance (kernel vs reference): the kernel sums f32 products per lane (about K/32 terms)
//! and then across the warp, so its rounding error is at most ~(K/32 + 8)·2⁻²⁴ of
//! `mag = |scale|·Σ_k |x·q| + |bias|`; below K = 8192 that is under 7e-5 in the worst
//! case and ~1e-6 in practice. We allow `2e-5 · mag + 1e-7` per element (the reference
//! sums in f64, so nearly all of the difference is the kernel's).
#![cfg(feature = "cuda")]

use candle_core::{DType, Device, Module, Tensor};
use deepseek_ocr::nn::cuda::CudaInt8Weight;
use deepseek_ocr::nn::{Linear, Precision};
use deepseek_ocr::quant::int8::{int8_matmul_reference, quantize_row, QuantizedInt8};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// Relative part of the kernel-vs-reference tolerance (see the file comment).
const REL_TOL: f32 = 2e-5;
/// Absolute floor of the tolerance.
const ABS_TOL: f32 = 1e-7;

/// CUDA device 0, or `None` after a loud message.
fn cuda_or_skip() -> Option<Device> {
    // With dynamic loading cudarc opens libcuda on first use and panics (rather than
    // erring) when the driver library is missing; that too means "no device".
    let why = match std::panic::catch_unwind(|| Device::new_cuda(0)) {
        Ok(Ok(d)) => return Some(d),
        Ok(Err(e)) => e.to_string(),
        Err(_) => "the CUDA driver library could not be loaded".to_string(),
    };
    eprintln!("\n!!!!! SKIPPED: no CUDA device ({why}); the INT8 CUDA kernel was NOT run !!!!!\n");
    None
}

fn uniform(rng: &mut SmallRng, len: usize, amp: f32) -> Vec<f32> {
    (0..len).map(|_| rng.random_range(-amp..amp)).collect()
}

/// A random `n×k` weight with row 0 all zero (scale 0) when there are several rows.
fn weight(rng: &mut SmallRng, n: usize, k: usize) -> Vec<f32> {
    let mut w = uniform(rng, n * k, 1.0);
    if n > 1 {
        w[..k].fill(0.0);
    }
    w
}

/// `|scale|·Σ_k |x·q| + |bias|` per output, the magnitude the rounding error scales with.
fn magnitude(x: &[f32], q: &QuantizedInt8, bias: Option<&[f32]>, m: usize) -> Vec<f32> {
    let (n, k) = (q.n, q.k);
    let mut mag = vec![0f32; m * n];
    for r in 0..m {
        for c in 0..n {
            let s: f32 = (0..k).map(|i| (x[r * k + i] * q.values[c * k + i] as f32).abs()).sum();
            mag[r * n + c] = s * q.scales[c].abs() + bias.map_or(0.0, |b| b[c].abs());
        }
    }
    mag
}

/// Asserts `|got - want| ≤ tol` elementwise; returns the max error.
fn check(what: &str, got: &[f32], want: &[f32], tol: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let mut max_err = 0f32;
    for (i, ((g, w), t)) in got.iter().zip(want).zip(tol).enumerate() {
        let err = (g - w).abs();
        assert!(
            err <= *t,
            "{what}: element {i}: got {g}, want {w} (error {err} > tolerance {t})"
        );
        max_err = max_err.max(err);
    }
    max_err
}

/// The kernel on random shapes: M = 1 (decode) and M > 1 with partial row blocks, odd and
/// aligned K (scalar and vectorised paths), N not a multiple of the 8 warps of a block,
/// large K, K = 0 (bias only), with and without bias.
#[test]
fn kernel_matches_cpu_reference() {
    let Some(dev) = cuda_or_skip() else { return };
    let mut rng = SmallRng::seed_from_u64(0x1a8);
    let shapes: &[(usize, usize, usize)] = &[
        (1, 1, 1),
        (1, 7, 3),
        (1, 33, 67),
        (1, 64, 128),
        (1, 300, 4096),
        (1, 129, 4099),
        (7, 13, 29),
        (7, 64, 256),
        (4, 8, 4),
        (5, 17, 20),
        (33, 50, 260),
        (3, 5, 0),
    ];
    for (i, &(m, n, k)) in shapes.iter().enumerate() {
        let w = weight(&mut rng, n, k);
        let q = QuantizedInt8::quantize(&w, n, k).expect("weight shape");
        let x = uniform(&mut rng, m * k, 2.0);
        let bias = (i % 2 == 0).then(|| uniform(&mut rng, n, 0.5));
        let want = int8_matmul_reference(&x, &q.values, &q.scales, bias.as_deref(), m, n, k).expect("lengths");

        let kern = CudaInt8Weight::new(&q, bias.as_deref(), &dev).expect("upload");
        let xt = Tensor::from_slice(&x, (m, k), &dev).expect("x");
        let got = kern.forward(&xt).expect("kernel");
        assert_eq!(got.dims(), &[m, n]);
        let got = got.flatten_all().and_then(|t| t.to_vec1::<f32>()).expect("download");

        let tol: Vec<f32> = magnitude(&x, &q, bias.as_deref(), m)
            .iter()
            .map(|mag| REL_TOL * mag + ABS_TOL)
            .collect();
        let err = check(&format!("int8_gemm {m}x{n}x{k}"), &got, &want, &tol);
        println!(
            "int8_gemm M={m} N={n} K={k} bias={}: max |err| = {err:e}",
            bias.is_some()
        );
    }
}

/// An input view that starts one element into its buffer: with K % 4 == 0 the rows are
/// not 16-byte aligned, so the kernel must take its scalar path; also a 3-d input.
#[test]
fn kernel_handles_unaligned_views_and_batches() {
    let Some(dev) = cuda_or_skip() else { return };
    let mut rng = SmallRng::seed_from_u64(0x5eed);
    let (b, t, n, k) = (2, 3, 40, 64);
    let m = b * t;
    let w = weight(&mut rng, n, k);
    let q = QuantizedInt8::quantize(&w, n, k).expect("weight shape");
    let bias = uniform(&mut rng, n, 0.5);
    let kern = CudaInt8Weight::new(&q, Some(&bias), &dev).expect("upload");

    let buf = uniform(&mut rng, m * k + 1, 2.0);
    let x = &buf[1..];
    let want = int8_matmul_reference(x, &q.values, &q.scales, Some(&bias), m, n, k).expect("lengths");
    let tol: Vec<f32> = magnitude(x, &q, Some(&bias), m)
        .iter()
        .map(|mag| REL_TOL * mag + ABS_TOL)
        .collect();

    let xt = Tensor::from_slice(&buf, m * k + 1, &dev)
        .and_then(|all| all.narrow(0, 1, m * k))
        .and_then(|flat| flat.reshape((b, t, k)))
        .expect("view");
    let got = kern.forward(&xt).expect("kernel");
    assert_eq!(got.dims(), &[b, t, n]);
    let got = got.flatten_all().and_then(|t| t.to_vec1::<f32>()).expect("download");
    let err = check("int8_gemm unaligned 2x3x64", &got, &want, &tol);
    println!("int8_gemm unaligned view (2, 3, 64) -> 40: max |err| = {err:e}");
}

/// `Linear` with `Precision::Int8` on CUDA runs the kernel (weight-only: f32 activations)
/// and matches the CPU reference tightly; against `Linear` Int8 on the CPU, which also
/// quantises each activation row, it differs by at most that activation rounding:
/// `|scale_w|·Σ_k |x − s_x·q_x|·|q_w|` per output (plus f32 slack), computed exactly here.
#[test]
fn linear_int8_cuda_matches_cpu() {
    let Some(dev) = cuda_or_skip() else { return };
    let mut rng = SmallRng::seed_from_u64(0xc0da);
    for &(lead, n, k) in &[(&[1usize, 1][..], 96usize, 200usize), (&[2, 5][..], 70, 131)] {
        let m: usize = lead.iter().product();
        let w = weight(&mut rng, n, k);
        let bias = uniform(&mut rng, n, 0.5);
        let x = uniform(&mut rng, m * k, 2.0);
        let mut xshape = lead.to_vec();
        xshape.push(k);

        let make = |d: &Device| {
            let wt = Tensor::from_slice(&w, (n, k), d)?;
            let bt = Tensor::from_slice(&bias, n, d)?;
            Linear::from_tensors_with(wt, Some(bt), Precision::Int8)
        };
        let gpu = make(&dev).expect("cuda linear");
        let cpu = make(&Device::Cpu).expect("cpu linear");
        assert_eq!(gpu.precision(), Precision::Int8, "CUDA Int8 must not fall back to f32");

        let y_gpu = Tensor::from_slice(&x, xshape.as_slice(), &dev)
            .and_then(|t| gpu.forward(&t))
            .expect("cuda forward");
        let mut yshape = lead.to_vec();
        yshape.push(n);
        assert_eq!(y_gpu.dims(), yshape.as_slice());
        let y_gpu = y_gpu.flatten_all().and_then(|t| t.to_vec1::<f32>()).expect("download");
        let y_cpu = Tensor::from_slice(&x, xshape.as_slice(), &Device::Cpu)
            .and_then(|t| cpu.forward(&t))
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1::<f32>())
            .expect("cpu forward");

        let q = QuantizedInt8::quantize(&w, n, k).expect("weight shape");
        let mag = magnitude(&x, &q, Some(&bias), m);
        let want = int8_matmul_reference(&x, &q.values, &q.scales, Some(&bias), m, n, k).expect("lengths");
        let tol: Vec<f32> = mag.iter().map(|g| REL_TOL * g + ABS_TOL).collect();
        let err_ref = check("linear cuda vs reference", &y_gpu, &want, &tol);

        // The CPU kernels' activation rounding, bounded exactly per output.
        let mut act_tol = vec![0f32; m * n];
        let mut qx = vec![0i8; k];
        for r in 0..m {
            let xr = &x[r * k..(r + 1) * k];
            let sx = quantize_row(xr, &mut qx).1;
            for c in 0..n {
                let e: f32 = (0..k)
                    .map(|i| (xr[i] - sx * qx[i] as f32).abs() * (q.values[c * k + i] as f32).abs())
                    .sum();
                act_tol[r * n + c] = e * q.scales[c] + 4e-5 * mag[r * n + c] + 1e-6;
            }
        }
        let err_cpu = check("linear cuda vs cpu int8", &y_gpu, &y_cpu, &act_tol);
        println!(
            "Linear Int8 {xshape:?} -> {n}: max |cuda - reference| = {err_ref:e}, max |cuda - cpu int8| = {err_cpu:e}"
        );
    }
    // Keep the dtype contract: a bf16 input comes back bf16.
    let wt = Tensor::from_slice(&weight(&mut rng, 8, 16), (8, 16), &dev).expect("w");
    let lin = Linear::from_tensors_with(wt, None, Precision::Int8).expect("linear");
    let x = Tensor::ones((3, 16), DType::BF16, &dev).expect("x");
    assert_eq!(lin.forward(&x).expect("forward").dtype(), DType::BF16);
}

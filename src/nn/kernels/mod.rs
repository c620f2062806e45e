//! Hand-written CPU kernels: packed BF16 GEMM, INT8 weight-only GEMM/GEMV and blockwise
//! attention, with one implementation per instruction set chosen at run time.
//!
//! candle 0.11's CPU backend has no native bf16 GEMM and its f32 GEMM reaches a fraction of
//! what AMX / AVX512-BF16 can do (see `shared/spec/perf-notes.md`), so the hot matmuls of the
//! model go through these kernels instead (via [`crate::nn::Linear`]).
//!
//! Dispatch: the best [`KernelPath`] the CPU supports is detected once (`OnceLock`); the
//! environment variable `DSOCR_KERNEL=amx|avx512|avx2|portable` or [`force`] lowers it (a
//! request for a path the CPU lacks falls back to the best available one). Every kernel also
//! has a `*_with(path, ..)` form so tests can exercise each path without global state.
//!
//! Toolchain: the AVX-512 intrinsics (and `is_x86_feature_detected!("avx512bf16")`) are
//! stable since Rust 1.89, above the crate's declared `rust-version` (1.85); the lint is
//! silenced here until the manifest is bumped (which also needs a few `is_multiple_of`
//! fixes elsewhere that clippy asks for at 1.89).

mod amx;
mod avx2;
mod avx512;
mod portable;

pub mod attention;
pub mod gemm;
pub mod gemv_int8;
pub mod inplace_bf16;
pub mod inplace_int8;
pub mod pack;

pub use attention::{attention, attention_tensors, attention_with, AttnBias, AttnShape};
pub use gemm::{gemm_bf16, gemm_bf16_with};
pub use gemv_int8::{gemm_int8, gemm_int8_with, PackedInt8};
pub use inplace_bf16::{gemm_bf16_inplace, gemm_bf16_inplace_with, InplaceStrategy, RowMajorBf16, WeightBytes};
pub use inplace_int8::{gemm_int8_inplace, gemm_int8_inplace_with, RowMajorInt8};
pub use pack::PackedBf16;

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;

/// One implementation family of the kernels, from fastest to most portable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KernelPath {
    /// Plain Rust, any CPU.
    Portable,
    /// AVX2 + FMA (x86-64-v3).
    Avx2,
    /// AVX-512F/BW/VL with AVX512-BF16 and AVX512-VNNI.
    Avx512,
    /// Intel AMX tiles (BF16 and INT8) for M ≥ 16, AVX-512 for thinner products.
    Amx,
}

impl KernelPath {
    /// All paths, most portable first.
    pub const ALL: [KernelPath; 4] = [
        KernelPath::Portable,
        KernelPath::Avx2,
        KernelPath::Avx512,
        KernelPath::Amx,
    ];

    /// Short lowercase name, as accepted by `DSOCR_KERNEL`.
    pub fn name(self) -> &'static str {
        match self {
            KernelPath::Portable => "portable",
            KernelPath::Avx2 => "avx2",
            KernelPath::Avx512 => "avx512",
            KernelPath::Amx => "amx",
        }
    }

    /// Parses a name as accepted by `DSOCR_KERNEL` (case-insensitive).
    pub fn parse(s: &str) -> Option<KernelPath> {
        KernelPath::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(s.trim()))
    }

    /// Whether this CPU (and OS, for AMX) can run the path.
    pub fn is_available(self) -> bool {
        match self {
            KernelPath::Portable => true,
            KernelPath::Avx2 => cpu().avx2,
            KernelPath::Avx512 => cpu().avx512,
            KernelPath::Amx => cpu().amx,
        }
    }
}

impl std::fmt::Display for KernelPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What the CPU offers, probed once.
#[derive(Debug, Clone, Copy)]
struct CpuFeatures {
    avx2: bool,
    avx512: bool,
    amx: bool,
}

fn cpu() -> CpuFeatures {
    static CPU: OnceLock<CpuFeatures> = OnceLock::new();
    *CPU.get_or_init(probe)
}

#[cfg(target_arch = "x86_64")]
fn probe() -> CpuFeatures {
    let avx2 = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
    let avx512 = avx2
        && is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512vl")
        && is_x86_feature_detected!("avx512bf16")
        && is_x86_feature_detected!("avx512vnni");
    // std cannot detect AMX on stable yet: read CPUID leaf 7 (EDX bit 22 AMX-BF16, bit 24
    // AMX-TILE, bit 25 AMX-INT8), then ask Linux for the tile state, which it only grants
    // to processes that request it.
    // CPUID leaf 7 exists on every CPU that reports AVX2.
    let edx = if avx2 {
        core::arch::x86_64::__cpuid_count(7, 0).edx
    } else {
        0
    };
    let amx_cpu = edx & (1 << 22) != 0 && edx & (1 << 24) != 0 && edx & (1 << 25) != 0;
    let amx = avx512 && amx_cpu && amx::request_permission();
    CpuFeatures { avx2, avx512, amx }
}

#[cfg(not(target_arch = "x86_64"))]
fn probe() -> CpuFeatures {
    CpuFeatures {
        avx2: false,
        avx512: false,
        amx: false,
    }
}

/// The best path this CPU can run.
pub fn best_path() -> KernelPath {
    KernelPath::ALL
        .into_iter()
        .rev()
        .find(|p| p.is_available())
        .unwrap_or(KernelPath::Portable)
}

/// Falls back to the best available path at or below `wanted`.
fn clamp(wanted: KernelPath) -> KernelPath {
    KernelPath::ALL
        .into_iter()
        .rev()
        .find(|p| *p <= wanted && p.is_available())
        .unwrap_or(KernelPath::Portable)
}

/// 0 = not forced, otherwise `1 + index in ALL`.
static FORCED: AtomicU8 = AtomicU8::new(0);

/// The path from `DSOCR_KERNEL` (or the best one), decided once.
fn default_path() -> KernelPath {
    static DEFAULT: OnceLock<KernelPath> = OnceLock::new();
    *DEFAULT.get_or_init(
        || match std::env::var("DSOCR_KERNEL").ok().as_deref().map(KernelPath::parse) {
            Some(Some(p)) => clamp(p),
            Some(None) => {
                tracing::warn!("DSOCR_KERNEL is not one of amx|avx512|avx2|portable; ignoring it");
                best_path()
            }
            None => best_path(),
        },
    )
}

/// The path the kernels use now: the one set by [`force`], else `DSOCR_KERNEL`, else the best.
pub fn active_path() -> KernelPath {
    match FORCED.load(Ordering::Relaxed) {
        0 => default_path(),
        i => KernelPath::ALL[(i - 1) as usize],
    }
}

/// Forces every later kernel call of the process onto `path` (or the best available path
/// below it when the CPU lacks it); `None` returns to the default. Returns the path in use.
pub fn force(path: Option<KernelPath>) -> KernelPath {
    let code = match path {
        None => 0,
        Some(p) => {
            let p = clamp(p);
            1 + KernelPath::ALL.iter().position(|q| *q == p).unwrap_or(0) as u8
        }
    };
    FORCED.store(code, Ordering::Relaxed);
    active_path()
}

/// One line for `dsocr --version`: the active path and what the CPU offers.
pub fn describe() -> String {
    let avail: Vec<&str> = KernelPath::ALL
        .into_iter()
        .rev()
        .filter(|p| p.is_available())
        .map(|p| p.name())
        .collect();
    format!(
        "cpu kernels: {} (available: {}; threads: {})",
        active_path(),
        avail.join(", "),
        rayon::current_num_threads()
    )
}

/// A raw output pointer shared by parallel tasks that write disjoint elements.
#[derive(Clone, Copy)]
pub(crate) struct SendPtr(pub *mut f32);
// SAFETY: the pointer is only used by tasks that write disjoint index ranges, and the
// owning slice outlives the parallel scope that uses it.
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

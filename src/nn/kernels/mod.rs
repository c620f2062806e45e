//! Hand-written CPU kernels: packed BF16 GEMM, INT8 weight-only GEMM/GEMV and blockwise
//! attention, with one implementation per instruction set chosen at run time, per operation.
//!
//! candle 0.11's CPU backend has no native bf16 GEMM and its f32 GEMM reaches a fraction of
//! what AMX / AVX512-BF16 can do (see `shared/spec/perf-notes.md`), so the hot matmuls of the
//! model go through these kernels instead (via [`crate::nn::Linear`]).
//!
//! Dispatch. Each CPU feature is probed separately, once ([`CpuFeatures`]). A [`KernelPath`]
//! ("tier") names one instruction-set level; every [`Op`] has its own ladder of tiers
//! ([`Op::tiers`]) and runs on the best one the CPU has:
//!
//! | op | tiers, fastest first |
//! | --- | --- |
//! | bf16 GEMM | `amx` (AMX-BF16) → `avx512bf16` (`vdpbf16ps`) → `avx512` (AVX-512F, bf16→f32 widening) → `avx2` (FMA, widening) → `portable` |
//! | int8 GEMM/GEMV | `amx` (AMX-INT8) → `avx512vnni` (`vpdpbusd` zmm) → `avxvnni` (`vpdpbusd` ymm) → `avx2` (`vpmaddubsw`) → `portable` |
//! | attention | `avx512` (AVX-512F) → `avx2` (FMA) → `portable` |
//!
//! The in-place GEMMs (`inplace_bf16.rs`, `inplace_int8.rs`: weights in the checkpoint's
//! row-major layout) follow the bf16 and int8 ladders; below 64 activation rows they run the
//! row-dot driver of `dot.rs` with that tier's micro-kernel (every tier has one), from 64 rows
//! on they pack weight blocks per call for the packed micro-kernels.
//!
//! (f32 GEMMs of the parity mode are candle's, which dispatches on its own.) The tiers are
//! ordered `portable < avx2 < avxvnni < avx512 < avx512vnni < avx512bf16 < amx`; a path given
//! to a `*_with(path, ..)` kernel or to [`force`] is a *ceiling*: the op runs on its best tier
//! at or below it that the CPU has. The environment variable `DSOCR_KERNEL` sets the ceiling
//! for every op (`DSOCR_KERNEL=avx2`) or per op (`DSOCR_KERNEL=bf16=avx512,int8=avxvnni,attn=avx2`,
//! combinable with a global entry); [`force`] / [`force_op`] do the same at run time.
//!
//! Toolchain: the AVX-512 intrinsics (and `is_x86_feature_detected!("avx512bf16")`) are
//! stable since Rust 1.89, above the crate's declared `rust-version` (1.85); the lint is
//! silenced here until the manifest is bumped (which also needs a few `is_multiple_of`
//! fixes elsewhere that clippy asks for at 1.89).

mod amx;
mod avx2;
mod avx512;
mod avxvnni;
mod dot;
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

/// One instruction-set tier of the kernels, from most portable to fastest. Which ops have an
/// implementation on which tier: [`Op::tiers`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KernelPath {
    /// Plain Rust, any CPU.
    Portable,
    /// AVX2 + FMA (x86-64-v3): bf16 by widening to f32, int8 with `vpmaddubsw`.
    Avx2,
    /// AVX2 + AVX-VNNI (256-bit `vpdpbusd`, client Intel and Zen 5 without AVX-512 for int8).
    AvxVnni,
    /// AVX-512F/BW/VL: bf16 by widening to f32 in zmm registers, f32 attention.
    Avx512,
    /// AVX-512 + AVX512-VNNI (Ice Lake, Cascade Lake): int8 with 512-bit `vpdpbusd`.
    Avx512Vnni,
    /// AVX-512 + AVX512-BF16 (Cooper Lake, Zen 4/5): bf16 with `vdpbf16ps`.
    Avx512Bf16,
    /// Intel AMX tiles (BF16 and INT8) for M ≥ 16, AVX512-BF16/VNNI for thinner products.
    Amx,
}

impl KernelPath {
    /// All tiers, most portable first.
    pub const ALL: [KernelPath; 7] = [
        KernelPath::Portable,
        KernelPath::Avx2,
        KernelPath::AvxVnni,
        KernelPath::Avx512,
        KernelPath::Avx512Vnni,
        KernelPath::Avx512Bf16,
        KernelPath::Amx,
    ];

    /// Short lowercase name, as accepted by `DSOCR_KERNEL`.
    pub fn name(self) -> &'static str {
        match self {
            KernelPath::Portable => "portable",
            KernelPath::Avx2 => "avx2",
            KernelPath::AvxVnni => "avxvnni",
            KernelPath::Avx512 => "avx512",
            KernelPath::Avx512Vnni => "avx512vnni",
            KernelPath::Avx512Bf16 => "avx512bf16",
            KernelPath::Amx => "amx",
        }
    }

    /// Parses a name as accepted by `DSOCR_KERNEL` (case-insensitive).
    pub fn parse(s: &str) -> Option<KernelPath> {
        KernelPath::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(s.trim()))
    }

    /// Whether this CPU (and OS, for AMX) has every feature the tier's kernels use.
    pub fn is_available(self) -> bool {
        let c = cpu_features();
        match self {
            KernelPath::Portable => true,
            KernelPath::Avx2 => c.avx2 && c.fma,
            KernelPath::AvxVnni => c.avx2 && c.fma && c.avxvnni,
            KernelPath::Avx512 => c.avx2 && c.fma && c.avx512,
            KernelPath::Avx512Vnni => c.avx2 && c.fma && c.avx512 && c.avx512vnni,
            KernelPath::Avx512Bf16 => c.avx2 && c.fma && c.avx512 && c.avx512bf16,
            KernelPath::Amx => c.avx2 && c.fma && c.avx512 && c.avx512bf16 && c.avx512vnni && c.amx_bf16 && c.amx_int8,
        }
    }
}

impl std::fmt::Display for KernelPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// An operation with its own ladder of kernel tiers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// [`gemm_bf16`]: packed bf16 weight, f32 activation and output.
    Bf16Gemm,
    /// [`gemm_int8`]: per-channel int8 weight, per-row int8 activation (GEMM and GEMV).
    Int8Gemm,
    /// [`attention`]: f32 blockwise softmax attention.
    Attention,
}

impl Op {
    /// Every op.
    pub const ALL: [Op; 3] = [Op::Bf16Gemm, Op::Int8Gemm, Op::Attention];

    /// Short name, as accepted in `DSOCR_KERNEL=OP=TIER`.
    pub fn name(self) -> &'static str {
        match self {
            Op::Bf16Gemm => "bf16",
            Op::Int8Gemm => "int8",
            Op::Attention => "attn",
        }
    }

    /// Snake-case label for reports (`bf16_gemm`, `int8_gemm`, `attention`).
    pub fn label(self) -> &'static str {
        match self {
            Op::Bf16Gemm => "bf16_gemm",
            Op::Int8Gemm => "int8_gemm",
            Op::Attention => "attention",
        }
    }

    /// Parses an op name (`bf16`, `int8`, `attn` / `attention`; case-insensitive).
    pub fn parse(s: &str) -> Option<Op> {
        match s.trim().to_ascii_lowercase().as_str() {
            "bf16" | "bf16gemm" | "gemm_bf16" => Some(Op::Bf16Gemm),
            "int8" | "int8gemm" | "gemm_int8" => Some(Op::Int8Gemm),
            "attn" | "attention" => Some(Op::Attention),
            _ => None,
        }
    }

    /// The tiers that have an implementation of this op, most portable first.
    pub fn tiers(self) -> &'static [KernelPath] {
        use KernelPath::*;
        match self {
            Op::Bf16Gemm => &[Portable, Avx2, Avx512, Avx512Bf16, Amx],
            Op::Int8Gemm => &[Portable, Avx2, AvxVnni, Avx512Vnni, Amx],
            Op::Attention => &[Portable, Avx2, Avx512],
        }
    }

    /// The tiers of this op the CPU can run, most portable first.
    pub fn available_tiers(self) -> Vec<KernelPath> {
        self.tiers().iter().copied().filter(|t| t.is_available()).collect()
    }

    /// The tier this op runs on under the ceiling `ceiling`: its best implemented tier at
    /// or below it that the CPU has.
    pub fn tier_under(self, ceiling: KernelPath) -> KernelPath {
        self.tiers()
            .iter()
            .rev()
            .copied()
            .find(|t| *t <= ceiling && t.is_available())
            .unwrap_or(KernelPath::Portable)
    }

    /// The tier this op runs on now (after `DSOCR_KERNEL`, [`force`] and [`force_op`]).
    pub fn active_tier(self) -> KernelPath {
        let global = active_path();
        let own = match FORCED_OP[self as usize].load(Ordering::Relaxed) {
            0 => env_ceilings().ops[self as usize].unwrap_or(KernelPath::Amx),
            i => KernelPath::ALL[(i - 1) as usize],
        };
        self.tier_under(global.min(own))
    }
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What the CPU offers, each feature probed separately, once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuFeatures {
    /// AVX2.
    pub avx2: bool,
    /// FMA3.
    pub fma: bool,
    /// AVX-512 F, BW and VL together.
    pub avx512: bool,
    /// AVX512-BF16.
    pub avx512bf16: bool,
    /// AVX512-VNNI.
    pub avx512vnni: bool,
    /// AVX-VNNI (VEX-encoded 256-bit VNNI).
    pub avxvnni: bool,
    /// AMX-TILE + AMX-BF16, with the OS granting the tile state.
    pub amx_bf16: bool,
    /// AMX-TILE + AMX-INT8, with the OS granting the tile state.
    pub amx_int8: bool,
}

impl CpuFeatures {
    /// The features present, as a space-separated list of names.
    pub fn names(&self) -> String {
        let all = [
            (self.avx2, "avx2"),
            (self.fma, "fma"),
            (self.avx512, "avx512f/bw/vl"),
            (self.avx512bf16, "avx512bf16"),
            (self.avx512vnni, "avx512vnni"),
            (self.avxvnni, "avxvnni"),
            (self.amx_bf16, "amx-bf16"),
            (self.amx_int8, "amx-int8"),
        ];
        let v: Vec<&str> = all.iter().filter(|(on, _)| *on).map(|(_, n)| *n).collect();
        if v.is_empty() {
            "none".into()
        } else {
            v.join(" ")
        }
    }
}

/// The CPU's features, probed once.
pub fn cpu_features() -> CpuFeatures {
    static CPU: OnceLock<CpuFeatures> = OnceLock::new();
    *CPU.get_or_init(probe)
}

#[cfg(target_arch = "x86_64")]
fn probe() -> CpuFeatures {
    let avx2 = is_x86_feature_detected!("avx2");
    let fma = is_x86_feature_detected!("fma");
    let avx512 = is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512vl");
    let avx512bf16 = avx512 && is_x86_feature_detected!("avx512bf16");
    let avx512vnni = avx512 && is_x86_feature_detected!("avx512vnni");
    let avxvnni = avx2 && is_x86_feature_detected!("avxvnni");
    // std cannot detect AMX on stable yet: read CPUID leaf 7 (EDX bit 22 AMX-BF16, bit 24
    // AMX-TILE, bit 25 AMX-INT8), then ask Linux for the tile state, which it only grants
    // to processes that request it. CPUID leaf 7 exists on every CPU that reports AVX2.
    let edx = if avx2 {
        core::arch::x86_64::__cpuid_count(7, 0).edx
    } else {
        0
    };
    let tile = edx & (1 << 24) != 0;
    let (bf16_bit, int8_bit) = (edx & (1 << 22) != 0, edx & (1 << 25) != 0);
    let granted = tile && (bf16_bit || int8_bit) && avx512 && amx::request_permission();
    CpuFeatures {
        avx2,
        fma,
        avx512,
        avx512bf16,
        avx512vnni,
        avxvnni,
        amx_bf16: granted && bf16_bit,
        amx_int8: granted && int8_bit,
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn probe() -> CpuFeatures {
    CpuFeatures::default()
}

/// The best tier this CPU has (the default global ceiling).
pub fn best_path() -> KernelPath {
    KernelPath::ALL
        .into_iter()
        .rev()
        .find(|p| p.is_available())
        .unwrap_or(KernelPath::Portable)
}

/// 0 = not forced, otherwise `1 + index in ALL`.
static FORCED: AtomicU8 = AtomicU8::new(0);
/// Per-op forced ceilings, same coding, indexed by `Op as usize`.
static FORCED_OP: [AtomicU8; 3] = [AtomicU8::new(0), AtomicU8::new(0), AtomicU8::new(0)];

fn code(p: KernelPath) -> u8 {
    1 + KernelPath::ALL.iter().position(|q| *q == p).unwrap_or(0) as u8
}

/// The ceilings read from `DSOCR_KERNEL`.
#[derive(Debug, Clone, Copy)]
struct EnvCeilings {
    global: Option<KernelPath>,
    ops: [Option<KernelPath>; 3],
}

/// Parses a `DSOCR_KERNEL` value: comma-separated `TIER` (every op) or `OP=TIER` entries.
fn parse_ceilings(s: &str) -> std::result::Result<EnvCeilings, String> {
    let mut c = EnvCeilings {
        global: None,
        ops: [None; 3],
    };
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        match item.split_once('=') {
            Some((op, tier)) => {
                let op = Op::parse(op).ok_or_else(|| format!("unknown op `{op}`"))?;
                let t = KernelPath::parse(tier).ok_or_else(|| format!("unknown tier `{tier}`"))?;
                c.ops[op as usize] = Some(t);
            }
            None => c.global = Some(KernelPath::parse(item).ok_or_else(|| format!("unknown tier `{item}`"))?),
        }
    }
    Ok(c)
}

fn env_ceilings() -> EnvCeilings {
    static ENV: OnceLock<EnvCeilings> = OnceLock::new();
    *ENV.get_or_init(|| {
        let none = EnvCeilings {
            global: None,
            ops: [None; 3],
        };
        match std::env::var("DSOCR_KERNEL") {
            Ok(v) => parse_ceilings(&v).unwrap_or_else(|e| {
                tracing::warn!(
                    "DSOCR_KERNEL={v:?}: {e}; expected TIER or OP=TIER,… with tiers {} and ops bf16|int8|attn; ignoring it",
                    KernelPath::ALL.map(|p| p.name()).join("|")
                );
                none
            }),
            Err(_) => none,
        }
    })
}

/// The global ceiling now: the one set by [`force`], else `DSOCR_KERNEL`'s, else the best
/// tier of the CPU (clamped to what the CPU has).
pub fn active_path() -> KernelPath {
    let p = match FORCED.load(Ordering::Relaxed) {
        0 => env_ceilings().global.unwrap_or(KernelPath::Amx),
        i => KernelPath::ALL[(i - 1) as usize],
    };
    clamp(p)
}

/// The best tier at or below `wanted` that the CPU has.
fn clamp(wanted: KernelPath) -> KernelPath {
    KernelPath::ALL
        .into_iter()
        .rev()
        .find(|p| *p <= wanted && p.is_available())
        .unwrap_or(KernelPath::Portable)
}

/// Sets the global ceiling for every later kernel call of the process (`None` returns to
/// `DSOCR_KERNEL` / the best). Returns the ceiling in use, clamped to what the CPU has.
pub fn force(path: Option<KernelPath>) -> KernelPath {
    FORCED.store(path.map_or(0, code), Ordering::Relaxed);
    active_path()
}

/// Sets the ceiling of one op (`None` returns to `DSOCR_KERNEL`'s); returns the tier the op
/// runs on now.
pub fn force_op(op: Op, path: Option<KernelPath>) -> KernelPath {
    FORCED_OP[op as usize].store(path.map_or(0, code), Ordering::Relaxed);
    op.active_tier()
}

/// The tier each op runs on now, e.g. `bf16 gemm avx512bf16, int8 gemm avx512vnni,
/// attention avx512` (for `dsocr --version`, logs and the bench JSON).
pub fn tiers_summary() -> String {
    Op::ALL
        .iter()
        .map(|op| format!("{} {}", op.label().replace('_', " "), op.active_tier()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One line for `dsocr --version`: the tier of each op and what the CPU offers.
pub fn describe() -> String {
    format!(
        "cpu kernels: {}; f32 gemm candle (features: {}; threads: {})",
        tiers_summary(),
        cpu_features().names(),
        rayon::current_num_threads()
    )
}

/// A raw output pointer shared by parallel tasks that write disjoint elements.
#[derive(Clone, Copy)]
pub(crate) struct SendPtr(pub *mut f32);

impl SendPtr {
    /// The pointer. A closure that calls this captures the whole (Send + Sync) wrapper,
    /// where `ptr.0` would capture the bare raw pointer field.
    #[inline(always)]
    pub(crate) fn get(self) -> *mut f32 {
        self.0
    }
}
// SAFETY: the pointer is only used by tasks that write disjoint index ranges, and the
// owning slice outlives the parallel scope that uses it.
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceilings_parse_global_and_per_op() {
        let c = parse_ceilings("avx2").unwrap();
        assert_eq!(c.global, Some(KernelPath::Avx2));
        let c = parse_ceilings("bf16=avx512, int8=AVXVNNI,attn=portable").unwrap();
        assert_eq!(c.global, None);
        assert_eq!(
            c.ops,
            [
                Some(KernelPath::Avx512),
                Some(KernelPath::AvxVnni),
                Some(KernelPath::Portable)
            ]
        );
        assert!(parse_ceilings("sse").is_err());
        assert!(parse_ceilings("conv=avx2").is_err());
    }

    #[test]
    fn every_op_can_run_portable() {
        for op in Op::ALL {
            assert_eq!(op.tiers()[0], KernelPath::Portable);
            assert_eq!(op.tier_under(KernelPath::Portable), KernelPath::Portable);
        }
    }
}

//! The user's choice of weight precision for the linear layers on the CPU, and what `auto`
//! picks on this CPU.

use std::fmt;
use std::str::FromStr;

use super::kernels::{KernelPath, Op};

/// How [`crate::nn::Linear`] stores its weight and computes `x · Wᵀ` on the CPU.
///
/// Activations and outputs stay f32 in every mode; only the weight and the products change.
/// On other devices every mode runs as [`Precision::F32`] through candle.
///
/// Tested accuracy bounds (against the f32 goldens, `tests/vision_parity.rs`,
/// `tests/lm_parity.rs`): bf16 ≤ 1e-2 relative on the vision features and logits; int8 ≤
/// 6e-2 relative, ≥ 90% greedy top-1 agreement. `"auto"` parses to [`Precision::Auto`],
/// which [`crate::Engine::load`] resolves ([`Precision::resolve`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Precision {
    /// f32 weight, candle matmul: bit-for-bit the parity mode the goldens are checked in.
    F32,
    /// bf16 weight read in place from the checkpoint by the AMX / AVX512-BF16 / widening
    /// kernels, f32 accumulation (relative error ~1e-3..1e-2; half the memory of f32).
    Bf16,
    /// int8 weight with one scale per output channel, activation quantised per row
    /// (about 1% error; a quarter of the memory, the fastest mode for decode).
    Int8,
    /// Chosen when the model is loaded, from the checkpoint and this CPU's kernel tiers:
    /// see [`Precision::resolve`].
    Auto,
}

impl Default for Precision {
    /// [`Precision::Auto`] (f32 is chosen explicitly, for parity).
    fn default() -> Self {
        Precision::Auto
    }
}

impl Precision {
    /// The lowercase name accepted by [`FromStr`].
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
            Precision::Int8 => "int8",
            Precision::Auto => "auto",
        }
    }

    /// The precision a model runs with: `self`, or for [`Precision::Auto`] the fastest one with
    /// a tested accuracy bound whose weights need no conversion at load (load time is most of
    /// a one-page run, and a converted weight is memory the page cache cannot share):
    ///
    /// * int8 for a checkpoint written by `dsocr convert --precision int8`
    ///   (`int8_checkpoint`): its int8 weights are used in place;
    /// * otherwise bf16 wherever the bf16 GEMM has a SIMD tier (every x86-64 CPU with AVX2):
    ///   the checkpoint's bf16 weights are used in place, untouched experts are never read;
    /// * otherwise f32 (candle's matmul is the faster there).
    ///
    /// Forcing a lower tier with `DSOCR_KERNEL` changes the choice too.
    pub fn resolve(self, int8_checkpoint: bool) -> Precision {
        if self != Precision::Auto {
            return self;
        }
        if int8_checkpoint {
            Precision::Int8
        } else if Op::Bf16Gemm.active_tier() > KernelPath::Portable {
            Precision::Bf16
        } else {
            Precision::F32
        }
    }

    /// The precision the vision encoder's layers use when the model runs in `self`
    /// (`auto` resolved as for a plain checkpoint).
    ///
    /// Vision GEMMs are large (M = 4096 rows in SAM), so they are compute-bound: int8 only
    /// pays where the CPU has an int8 dot-product instruction (VNNI) but no bf16 one
    /// (Ice Lake, Cascade Lake, client Intel with AVX-VNNI). With AVX512-BF16 or AMX the bf16
    /// GEMM is the faster (measured on a Zen-4-class EPYC: vision 3.4 s in bf16, 4.8 s in
    /// int8), so int8 mode computes the vision encoder in bf16 and `int8` is never the slow
    /// choice. `dsocr convert` keeps the vision weights in bf16 for the same reason.
    pub fn for_vision(self) -> Precision {
        let p = self.resolve(false);
        if p != Precision::Int8 {
            return p;
        }
        let int8 = Op::Int8Gemm.active_tier();
        let bf16 = Op::Bf16Gemm.active_tier();
        let vnni = matches!(int8, KernelPath::AvxVnni | KernelPath::Avx512Vnni | KernelPath::Amx);
        if vnni && bf16 < KernelPath::Avx512Bf16 {
            Precision::Int8
        } else {
            Precision::Bf16
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Precision {
    type Err = crate::error::Error;

    /// `f32`, `bf16`, `int8` (with a few aliases), or `auto` ([`Precision::Auto`]).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "f32" | "fp32" | "float32" => Ok(Precision::F32),
            "bf16" | "bfloat16" => Ok(Precision::Bf16),
            "int8" | "i8" | "q8" => Ok(Precision::Int8),
            "auto" => Ok(Precision::Auto),
            other => Err(crate::error::Error::request(
                format!("unknown precision `{other}`"),
                "use one of: auto, f32, bf16, int8",
            )),
        }
    }
}

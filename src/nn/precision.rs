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
/// 6e-2 relative, ≥ 90% greedy top-1 agreement. `"auto"` parses to [`Precision::auto`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Precision {
    /// f32 weight, candle matmul: bit-for-bit the parity mode the goldens are checked in.
    F32,
    /// bf16 weight packed for the AMX / AVX512-BF16 kernels, f32 accumulation
    /// (relative error ~1e-3..1e-2; half the memory of f32, the fastest mode at M > 1).
    Bf16,
    /// int8 weight with one scale per output channel, activation quantised per row
    /// (about 1% error; a quarter of the memory, the fastest mode for decode).
    Int8,
}

impl Default for Precision {
    /// [`Precision::auto`]: the fastest tested precision on this CPU (f32 is chosen
    /// explicitly, for parity).
    fn default() -> Self {
        Precision::auto()
    }
}

impl Precision {
    /// The lowercase name accepted by [`FromStr`].
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
            Precision::Int8 => "int8",
        }
    }

    /// What `--precision auto` resolves to on this CPU: the fastest precision with a tested
    /// accuracy bound, decided from the kernel tiers of [`crate::nn::kernels`] (so forcing
    /// a lower tier with `DSOCR_KERNEL` changes the choice too).
    ///
    /// * int8 whenever the int8 GEMM has a SIMD tier (AVX2 `vpmaddubsw` or better): the
    ///   decode step is bound by weight bytes and int8 reads half of bf16's; the vision
    ///   encoder then uses [`Precision::for_vision`].
    /// * bf16 where only the bf16 GEMM has one (never, on x86 today);
    /// * f32 on CPUs without SIMD tiers (candle's matmul is the faster there).
    pub fn auto() -> Precision {
        let int8 = Op::Int8Gemm.active_tier();
        let bf16 = Op::Bf16Gemm.active_tier();
        if int8 > KernelPath::Portable {
            Precision::Int8
        } else if bf16 > KernelPath::Portable {
            Precision::Bf16
        } else {
            Precision::F32
        }
    }

    /// The precision the vision encoder's layers use when the model runs in `self`.
    ///
    /// Vision GEMMs are large (M = 4096 rows in SAM), so they are compute-bound: int8 only
    /// pays where the CPU has an int8 multiply-add at least as wide as its bf16 one (AMX,
    /// AVX512-VNNI next to a bf16 tier at most as fast, AVX-VNNI next to AVX2). Elsewhere
    /// int8 mode computes the vision encoder in bf16, so `int8` is never the slow choice.
    pub fn for_vision(self) -> Precision {
        if self != Precision::Int8 {
            return self;
        }
        let int8 = Op::Int8Gemm.active_tier();
        let bf16 = Op::Bf16Gemm.active_tier();
        let fast = match int8 {
            KernelPath::Amx | KernelPath::Avx512Vnni => true,
            KernelPath::AvxVnni => bf16 <= KernelPath::Avx2,
            KernelPath::Avx2 => bf16 <= KernelPath::Avx2,
            _ => false,
        };
        if fast {
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

    /// `f32`, `bf16`, `int8` (with a few aliases), or `auto` ([`Precision::auto`]).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "f32" | "fp32" | "float32" => Ok(Precision::F32),
            "bf16" | "bfloat16" => Ok(Precision::Bf16),
            "int8" | "i8" | "q8" => Ok(Precision::Int8),
            "auto" => {
                let p = Precision::auto();
                tracing::debug!(
                    "precision auto resolves to {p} on this CPU ({})",
                    crate::nn::kernels::tiers_summary()
                );
                Ok(p)
            }
            other => Err(crate::error::Error::request(
                format!("unknown precision `{other}`"),
                "use one of: auto, f32, bf16, int8",
            )),
        }
    }
}

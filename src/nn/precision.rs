//! The user's choice of weight precision for the linear layers on the CPU.

use std::fmt;
use std::str::FromStr;

/// How [`crate::nn::Linear`] stores its weight and computes `x · Wᵀ` on the CPU.
///
/// Activations and outputs stay f32 in every mode; only the weight and the products change.
/// On other devices every mode runs as [`Precision::F32`] through candle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Precision {
    /// f32 weight, candle matmul: bit-for-bit the parity mode the goldens are checked in.
    #[default]
    F32,
    /// bf16 weight packed for the AMX / AVX512-BF16 kernels, f32 accumulation
    /// (relative error ~1e-3..1e-2; half the memory of f32, the fastest mode at M > 1).
    Bf16,
    /// int8 weight with one scale per output channel, activation quantised per row
    /// (about 1% error; a quarter of the memory, the fastest mode for decode).
    Int8,
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
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Precision {
    type Err = crate::error::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "f32" | "fp32" | "float32" => Ok(Precision::F32),
            "bf16" | "bfloat16" => Ok(Precision::Bf16),
            "int8" | "i8" | "q8" => Ok(Precision::Int8),
            other => Err(crate::error::Error::request(
                format!("unknown precision `{other}`"),
                "use one of: f32, bf16, int8",
            )),
        }
    }
}

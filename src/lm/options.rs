//! How the decoder is loaded: RoPE frequency rounding and the precision of its linears.

use crate::lm::rope::RopeFrequencies;
use crate::nn::precision::Precision;

/// Load-time choices of [`DeepseekV2`](crate::lm::DeepseekV2).
///
/// The default (f32 frequencies, [`Precision::F32`]) is the parity profile the goldens are
/// checked in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LmOptions {
    /// Rounding of the RoPE inverse frequencies.
    pub freqs: RopeFrequencies,
    /// Weight precision of every projection, expert and `lm_head` on the CPU. The router
    /// stays f32 whatever this says: a rounding there could flip which experts run.
    pub precision: Precision,
}

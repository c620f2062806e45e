//! No-repeat n-gram guards (spec §9.2, trap 21): which next ids would repeat an n-gram.
//!
//! Two official variants exist and differ on purpose:
//! * HF transformers: the history is the whole sequence (prompt included), no window,
//!   no whitelist.
//! * vLLM scripts: the history is the generated ids only, scanned within a window, and
//!   whitelisted ids (`<td>`, `</td>`) are never banned.

use crate::generate::options::NgramGuard;
use crate::text::Tokenizer;

/// Table-cell tokens the vLLM guard never bans (V-NG comments them as `<td>, </td>`).
pub const VLLM_WHITELIST_TOKENS: [&str; 2] = ["<td>", "</td>"];

/// The vLLM guard with its whitelist ids looked up in `tokenizer` (tokens it lacks are skipped).
pub fn vllm_guard(tokenizer: &Tokenizer, size: usize, window: usize) -> NgramGuard {
    let whitelist = VLLM_WHITELIST_TOKENS
        .iter()
        .filter_map(|t| tokenizer.token_to_id(t))
        .collect();
    NgramGuard::Vllm {
        size,
        window,
        whitelist,
    }
}

/// Ids banned for the next step by the HF guard of size `n` over the whole sequence `seq`.
///
/// With `L = |seq|`: nothing if `n == 0` or `L + 1 < n`; else with `P` the last `n − 1`
/// ids, every `seq[i + n − 1]` with `seq[i .. i + n − 1] == P`, `0 ≤ i ≤ L − n`.
/// Sorted, without duplicates.
pub fn banned_hf(seq: &[u32], n: usize) -> Vec<u32> {
    let len = seq.len();
    if n == 0 || len + 1 < n || len < n {
        // `len < n` with `len + 1 >= n` means `len == n − 1`: the prefix exists but there
        // is no earlier start position to compare it with.
        return Vec::new();
    }
    let prefix = &seq[len - (n - 1)..];
    let mut banned: Vec<u32> = (0..=len - n)
        .filter(|&i| &seq[i..i + n - 1] == prefix)
        .map(|i| seq[i + n - 1])
        .collect();
    banned.sort_unstable();
    banned.dedup();
    banned
}

/// Ids banned by the vLLM guard of size `n` over the generated ids `gen`, looking back
/// `window` positions, never banning an id in `whitelist`.
///
/// With `m = |gen|`: nothing if `n == 0` or `m < n`; else with `P` the last `n − 1` ids,
/// every `gen[i + n − 1]` with `gen[i .. i + n − 1] == P`, `max(0, m − window) ≤ i ≤ m − n`,
/// minus the whitelist. Sorted, without duplicates.
pub fn banned_vllm(gen: &[u32], n: usize, window: usize, whitelist: &[u32]) -> Vec<u32> {
    let m = gen.len();
    if n == 0 || m < n {
        return Vec::new();
    }
    let prefix = &gen[m - (n - 1)..];
    let first = m.saturating_sub(window);
    if first > m - n {
        return Vec::new();
    }
    let mut banned: Vec<u32> = (first..=m - n)
        .filter(|&i| &gen[i..i + n - 1] == prefix)
        .map(|i| gen[i + n - 1])
        .filter(|id| !whitelist.contains(id))
        .collect();
    banned.sort_unstable();
    banned.dedup();
    banned
}

/// Ids banned by `guard` for the next step. `seq` is the whole sequence so far, of which
/// the first `prompt_len` ids are the prompt.
pub fn banned_tokens(guard: &NgramGuard, seq: &[u32], prompt_len: usize) -> Vec<u32> {
    match guard {
        NgramGuard::Off => Vec::new(),
        NgramGuard::Hf { size } => banned_hf(seq, *size),
        NgramGuard::Vllm {
            size,
            window,
            whitelist,
        } => banned_vllm(seq.get(prompt_len..).unwrap_or(&[]), *size, *window, whitelist),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// transformers' definition, literally: collect every n-gram of `seq` into a map from
    /// its first n−1 ids to the set of last ids, then look the last n−1 ids up.
    fn brute_hf(seq: &[u32], n: usize) -> Vec<u32> {
        if n == 0 || seq.len() + 1 < n {
            return vec![];
        }
        let mut map: std::collections::HashMap<Vec<u32>, std::collections::BTreeSet<u32>> = Default::default();
        for w in seq.windows(n) {
            map.entry(w[..n - 1].to_vec()).or_default().insert(w[n - 1]);
        }
        let key = seq[seq.len() + 1 - n..].to_vec();
        map.get(&key).map(|s| s.iter().copied().collect()).unwrap_or_default()
    }

    /// V-NG's loop, literally (for n ≥ 2).
    fn brute_vllm(g: &[u32], n: usize, window: usize, white: &[u32]) -> Vec<u32> {
        if g.len() < n {
            return vec![];
        }
        let prefix = g[g.len() - (n - 1)..].to_vec();
        let start = g.len().saturating_sub(window) as isize;
        let end = g.len() as isize - n as isize + 1;
        let mut out = std::collections::BTreeSet::new();
        let mut i = start;
        while i < end {
            let ng = &g[i as usize..i as usize + n];
            if ng[..n - 1] == prefix[..] {
                out.insert(ng[n - 1]);
            }
            i += 1;
        }
        out.into_iter().filter(|t| !white.contains(t)).collect()
    }

    /// A small deterministic generator of repetitive sequences.
    fn sequences() -> Vec<Vec<u32>> {
        let mut state = 12345u64;
        let mut out = Vec::new();
        for len in 0..60 {
            for alphabet in [2u64, 3, 5] {
                let s: Vec<u32> = (0..len)
                    .map(|_| {
                        state = state
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        ((state >> 33) % alphabet) as u32
                    })
                    .collect();
                out.push(s);
            }
        }
        out
    }

    #[test]
    fn hf_matches_brute_force() {
        let mut nonempty = 0;
        for s in sequences() {
            for n in 1..8 {
                let got = banned_hf(&s, n);
                assert_eq!(got, brute_hf(&s, n), "seq {s:?} n {n}");
                nonempty += usize::from(!got.is_empty());
            }
        }
        assert!(nonempty > 100, "the test sequences must exercise bans");
    }

    #[test]
    fn vllm_matches_brute_force() {
        let mut nonempty = 0;
        for s in sequences() {
            for n in 2..7 {
                for window in [0, 3, 7, 20, 100] {
                    for white in [&[][..], &[1u32][..]] {
                        let got = banned_vllm(&s, n, window, white);
                        assert_eq!(got, brute_vllm(&s, n, window, white), "seq {s:?} n {n} w {window}");
                        nonempty += usize::from(!got.is_empty());
                    }
                }
            }
        }
        assert!(nonempty > 100);
    }

    #[test]
    fn variants_see_different_histories() {
        // Prompt [7, 8], generated [7]: HF (n = 2) bans 8 from the prompt's bigram; vLLM
        // only sees the generated id and bans nothing.
        let seq = [7, 8, 7];
        assert_eq!(banned_tokens(&NgramGuard::Hf { size: 2 }, &seq, 2), vec![8]);
        let v = NgramGuard::Vllm {
            size: 2,
            window: 90,
            whitelist: vec![],
        };
        assert!(banned_tokens(&v, &seq, 2).is_empty());
        assert_eq!(banned_tokens(&v, &[0, 7, 8, 7], 1), vec![8]);
        let w = NgramGuard::Vllm {
            size: 2,
            window: 90,
            whitelist: vec![8],
        };
        assert!(banned_tokens(&w, &[0, 7, 8, 7], 1).is_empty());
    }
}

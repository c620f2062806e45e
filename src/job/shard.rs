//! Sharding a job over machines: shard K of N takes a deterministic, contiguous 1/N of
//! the job's *pages* (all inputs in sorted order, each image one page, each selected PDF
//! page one page), so shards are balanced by page count (sizes differ by at most one),
//! stable across reruns and machines, and never write the same file.
//!
//! K/N comes from `--shard K/N` (1-based), or from the scheduler: a Kubernetes Indexed
//! Job's `JOB_COMPLETION_INDEX` (0-based) with the count in `DSOCR_SHARD_COUNT`, or a
//! Slurm job array's `SLURM_ARRAY_TASK_ID` (relative to `SLURM_ARRAY_TASK_MIN`, default 0)
//! and `SLURM_ARRAY_TASK_COUNT`.

use std::fmt;
use std::ops::Range;
use std::str::FromStr;

use crate::error::{Error, Result};

/// Largest accepted shard count.
pub const MAX_SHARDS: usize = 1_000_000;

/// Shard `index` (1-based) of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

const SHARD_HINT: &str = "write --shard K/N with 1 <= K <= N, e.g. --shard 2/8";

impl FromStr for Shard {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || Error::request(format!("bad shard `{s}`"), SHARD_HINT);
        let (k, n) = s.trim().split_once('/').ok_or_else(bad)?;
        let index: usize = k.trim().parse().map_err(|_| bad())?;
        let count: usize = n.trim().parse().map_err(|_| bad())?;
        Shard::new(index, count)
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl Shard {
    /// Checks `1 <= index <= count <= MAX_SHARDS`.
    pub fn new(index: usize, count: usize) -> Result<Self> {
        if count == 0 || count > MAX_SHARDS || index == 0 || index > count {
            return Err(Error::request(
                format!("shard {index}/{count} does not exist"),
                format!("{SHARD_HINT} (at most {MAX_SHARDS} shards)"),
            ));
        }
        Ok(Self { index, count })
    }

    /// The shard from scheduler variables (`get` reads one; [`std::env::var`] in practice):
    /// `JOB_COMPLETION_INDEX` + `count` or `DSOCR_SHARD_COUNT`, else
    /// `SLURM_ARRAY_TASK_ID` + `SLURM_ARRAY_TASK_COUNT`. `None` when none is set.
    pub fn from_env(get: &dyn Fn(&str) -> Option<String>, count: Option<usize>) -> Result<Option<Self>> {
        let num = |name: &str, v: String| {
            v.trim().parse::<usize>().map_err(|_| {
                Error::request(
                    format!("{name}={v} is not a number"),
                    "unset it or fix the job definition",
                )
            })
        };
        if let Some(v) = get("JOB_COMPLETION_INDEX") {
            let i = num("JOB_COMPLETION_INDEX", v)?;
            let n = match count {
                Some(n) => n,
                None => match get("DSOCR_SHARD_COUNT") {
                    Some(v) => num("DSOCR_SHARD_COUNT", v)?,
                    None => {
                        return Err(Error::request(
                            "JOB_COMPLETION_INDEX is set but the number of shards is not",
                            "set DSOCR_SHARD_COUNT (or --shard-count) to the Job's `completions`",
                        ))
                    }
                },
            };
            return Shard::new(i + 1, n).map(Some);
        }
        if let Some(v) = get("SLURM_ARRAY_TASK_ID") {
            let id = num("SLURM_ARRAY_TASK_ID", v)?;
            let min = match get("SLURM_ARRAY_TASK_MIN") {
                Some(v) => num("SLURM_ARRAY_TASK_MIN", v)?,
                None => 0,
            };
            let n = match count {
                Some(n) => n,
                None => match get("SLURM_ARRAY_TASK_COUNT") {
                    Some(v) => num("SLURM_ARRAY_TASK_COUNT", v)?,
                    None => {
                        return Err(Error::request(
                            "SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not",
                            "submit with --array, or pass --shard K/N",
                        ))
                    }
                },
            };
            let k = id.checked_sub(min).ok_or_else(|| {
                Error::request(
                    format!("SLURM_ARRAY_TASK_ID {id} is below SLURM_ARRAY_TASK_MIN {min}"),
                    "pass --shard K/N",
                )
            })?;
            return Shard::new(k + 1, n).map(Some);
        }
        Ok(None)
    }

    /// The positions `[start, end)` of this shard among `total` pages.
    pub fn range(&self, total: usize) -> Range<usize> {
        let at = |k: usize| (k as u128 * total as u128 / self.count as u128) as usize;
        at(self.index - 1)..at(self.index)
    }

    /// The name of this shard's summary file: `batch.shard-K-of-N.json`.
    pub fn summary_name(&self) -> String {
        format!("batch.shard-{}-of-{}.json", self.index, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_partition_the_pages_evenly() {
        for total in [0usize, 1, 2, 7, 30, 31, 1000] {
            for n in 1..=9 {
                let mut next = 0;
                let mut sizes = Vec::new();
                for k in 1..=n {
                    let r = Shard::new(k, n).unwrap().range(total);
                    assert_eq!(r.start, next);
                    next = r.end;
                    sizes.push(r.len());
                }
                assert_eq!(next, total);
                let (lo, hi) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
                assert!(hi - lo <= 1, "{total}/{n}: {sizes:?}");
            }
        }
    }

    #[test]
    fn shard_flags_parse_and_bad_ones_are_refused() {
        assert_eq!("2/8".parse::<Shard>().unwrap(), Shard { index: 2, count: 8 });
        for bad in ["0/3", "4/3", "1/0", "x/2", "3", "-1/2", ""] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
    }

    #[test]
    fn scheduler_variables_pick_the_shard() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
        };
        let k8s = env(&[("JOB_COMPLETION_INDEX", "0"), ("DSOCR_SHARD_COUNT", "3")]);
        assert_eq!(Shard::from_env(&k8s, None).unwrap(), Some(Shard { index: 1, count: 3 }));
        let k8s_flag = env(&[("JOB_COMPLETION_INDEX", "2")]);
        assert_eq!(
            Shard::from_env(&k8s_flag, Some(3)).unwrap(),
            Some(Shard { index: 3, count: 3 })
        );
        assert!(Shard::from_env(&k8s_flag, None).is_err());
        let slurm = env(&[
            ("SLURM_ARRAY_TASK_ID", "5"),
            ("SLURM_ARRAY_TASK_MIN", "4"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
        ]);
        assert_eq!(
            Shard::from_env(&slurm, None).unwrap(),
            Some(Shard { index: 2, count: 4 })
        );
        assert_eq!(Shard::from_env(&env(&[]), None).unwrap(), None);
    }
}

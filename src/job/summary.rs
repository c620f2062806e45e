//! The summary of a batch run (`--out/batch.json`, or `batch.shard-K-of-N.json` per
//! shard): counts of inputs and pages done, skipped as already done, and failed, tokens,
//! time, and per input what happened, so `dsocr merge` can assemble the shards.

use serde::{Deserialize, Serialize};

use super::shard::Shard;

/// Version of the summary schema.
pub const SUMMARY_SCHEMA_VERSION: u32 = 1;

/// Done / skipped / failed counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub done: usize,
    pub skipped: usize,
    pub failed: usize,
}

impl Counts {
    /// All three together.
    pub fn total(&self) -> usize {
        self.done + self.skipped + self.failed
    }
    fn add(&mut self, s: Status) {
        match s {
            Status::Done => self.done += 1,
            Status::Skipped => self.skipped += 1,
            Status::Failed => self.failed += 1,
        }
    }
}

/// What happened to an input or a page in this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Processed now.
    Done,
    /// Already finished by an earlier run.
    Skipped,
    /// Failed; see its `.error.json`.
    Failed,
}

/// One page of an input in the summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageSummary {
    /// 1-based PDF page; absent for an image.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub page: Option<usize>,
    pub status: Status,
}

/// One input in the summary (only its pages in this shard).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputSummary {
    /// The file as given.
    pub source: String,
    /// Output name (`NAME.*`).
    pub name: String,
    /// `image`, `pdf`, or `unknown` when the file could not be inspected.
    pub kind: String,
    /// Pages in the PDF (1 for an image).
    pub page_count: usize,
    /// Every selected page of the input (1-based), in all shards.
    pub selected_pages: Vec<usize>,
    /// The pages of this run.
    pub pages: Vec<PageSummary>,
    pub status: Status,
}

impl InputSummary {
    /// Failed when a page failed, skipped when every page was already done, else done.
    pub fn settle(&mut self) {
        self.status = if self.pages.iter().any(|p| p.status == Status::Failed) {
            Status::Failed
        } else if self.pages.iter().all(|p| p.status == Status::Skipped) {
            Status::Skipped
        } else {
            Status::Done
        };
    }
}

/// The summary of one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchSummary {
    pub schema_version: u32,
    /// The engine version that ran the batch.
    pub version: String,
    /// This run's shard, when sharded.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub shard: Option<Shard>,
    /// Output format (`md`, `json`, `txt`).
    pub format: String,
    pub inputs: Counts,
    pub pages: Counts,
    /// Tokens generated in this run.
    pub tokens: usize,
    /// Wall-clock seconds of this run.
    pub seconds: f64,
    pub items: Vec<InputSummary>,
}

impl BatchSummary {
    /// An empty summary.
    pub fn new(shard: Option<Shard>, format: &str) -> Self {
        Self {
            schema_version: SUMMARY_SCHEMA_VERSION,
            version: env!("CARGO_PKG_VERSION").to_string(),
            shard,
            format: format.to_string(),
            inputs: Counts::default(),
            pages: Counts::default(),
            tokens: 0,
            seconds: 0.0,
            items: Vec::new(),
        }
    }

    /// Recomputes the counts from the items.
    pub fn recount(&mut self) {
        self.inputs = Counts::default();
        self.pages = Counts::default();
        for i in &mut self.items {
            i.settle();
            self.inputs.add(i.status);
            for p in &i.pages {
                self.pages.add(p.status);
            }
        }
    }

    /// The one-line summary printed on stderr.
    pub fn line(&self) -> String {
        format!(
            "{}inputs: {} done, {} already done, {} failed; pages: {} done, {} already done, {} failed; {} tokens; {:.1} s",
            self.shard.map(|s| format!("shard {s}: ")).unwrap_or_default(),
            self.inputs.done,
            self.inputs.skipped,
            self.inputs.failed,
            self.pages.done,
            self.pages.skipped,
            self.pages.failed,
            self.tokens,
            self.seconds
        )
    }

    /// The summary file name in the output folder.
    pub fn file_name(&self) -> String {
        match self.shard {
            Some(s) => s.summary_name(),
            None => "batch.json".to_string(),
        }
    }
}

//! Assembling a sharded run: once every shard `K/N` has written its
//! `batch.shard-K-of-N.json`, [`merge`] checks that every page exists, writes the
//! combined per-document files of PDFs split over shards, and one `batch.json`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::inputs::{Input, InputKind};
use super::layout::{write_json, Layout};
use super::request::Format;
use super::resume;
use super::summary::{BatchSummary, InputSummary, PageSummary, Status};
use crate::error::{Error, Result};

/// Shard summaries by shard count, then by shard index: the file and its summary.
type ShardSummaries = BTreeMap<usize, BTreeMap<usize, (PathBuf, BatchSummary)>>;

/// Reads the shard summaries in `out`, grouped by shard count.
fn shard_summaries(out: &Path) -> Result<ShardSummaries> {
    let mut by_count: ShardSummaries = BTreeMap::new();
    let entries = std::fs::read_dir(out).map_err(|e| Error::io(out, e))?;
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !(name.starts_with("batch.shard-") && name.ends_with(".json")) {
            continue;
        }
        let path = e.path();
        let text = std::fs::read_to_string(&path).map_err(|err| Error::io(&path, err))?;
        let s: BatchSummary = serde_json::from_str(&text).map_err(|err| {
            Error::input(
                &path,
                format!("unreadable shard summary: {err}"),
                "rerun that shard to rewrite it",
            )
        })?;
        let Some(shard) = s.shard else { continue };
        by_count.entry(shard.count).or_default().insert(shard.index, (path, s));
    }
    Ok(by_count)
}

/// Merges the shards of the run in `out`: writes the combined files of every PDF whose
/// pages all exist and `out/batch.json`; returns the merged summary (its failed counts
/// include pages that are missing or failed).
pub fn merge(out: &Path) -> Result<BatchSummary> {
    let by_count = shard_summaries(out)?;
    let Some((&count, shards)) = by_count.iter().next_back() else {
        return Err(Error::input(
            out,
            "holds no shard summaries (batch.shard-K-of-N.json)",
            "run `dsocr ocr ... --shard K/N --out DIR` for every shard first",
        ));
    };
    if by_count.len() > 1 {
        tracing::warn!(
            counts = ?by_count.keys().collect::<Vec<_>>(),
            "shard summaries of several shard counts; merging those of {count}"
        );
    }
    let missing: Vec<String> = (1..=count)
        .filter(|k| !shards.contains_key(k))
        .map(|k| format!("{k}/{count}"))
        .collect();
    if !missing.is_empty() {
        return Err(Error::request(
            format!(
                "shards {} have not finished (no summary in {})",
                missing.join(", "),
                out.display()
            ),
            "wait for them (or rerun them), then merge again",
        ));
    }
    let format: Format = shards
        .values()
        .next()
        .map(|(_, s)| s.format.parse().unwrap_or_default())
        .unwrap_or_default();
    let layout = Layout::new(out, format);
    let mut merged = BatchSummary::new(None, &format.to_string());
    // Shards hold contiguous page ranges in job order: concatenating keeps the order.
    let mut items: Vec<InputSummary> = Vec::new();
    for (_, s) in shards.values() {
        merged.tokens += s.tokens;
        merged.seconds = merged.seconds.max(s.seconds);
        for item in &s.items {
            match items.last_mut() {
                Some(last) if last.name == item.name && last.source == item.source => {
                    last.pages.extend(item.pages.iter().cloned())
                }
                _ => items.push(item.clone()),
            }
        }
    }
    for item in &mut items {
        if item.kind != "pdf" {
            continue;
        }
        let input = Input {
            path: PathBuf::from(&item.source),
            kind: InputKind::Pdf,
            name: item.name.clone(),
            pages: item.selected_pages.iter().map(|p| p.saturating_sub(1)).collect(),
            page_count: item.page_count,
        };
        // The files decide: a page is finished when its record is there.
        let mut pages = Vec::new();
        for &p in &input.pages {
            let done = resume::page_done(&layout.page_target(&input, Some(p)));
            let before = item.pages.iter().find(|s| s.page == Some(p + 1)).map(|s| s.status);
            let status = match (done, before) {
                (false, _) => Status::Failed,
                (true, Some(Status::Done)) => Status::Done,
                (true, _) => Status::Skipped,
            };
            pages.push(PageSummary {
                page: Some(p + 1),
                status,
            });
        }
        item.pages = pages;
        if item.pages.iter().all(|p| p.status != Status::Failed) {
            let records = input
                .pages
                .iter()
                .map(|&p| resume::read_record(&layout.page_target(&input, Some(p)).json()))
                .collect::<Result<Vec<_>>>()?;
            layout.write_combined(&input, records)?;
        }
    }
    merged.items = items;
    merged.recount();
    write_json(&out.join(merged.file_name()), &merged)?;
    Ok(merged)
}

//! The official Markdown rewrite of the raw model output (spec §10.3, §10.4).
//!
//! Image references become links to cropped figures, every other reference (the
//! layout headers in front of each block) is deleted, and two LaTeX macros that
//! common renderers lack are spelled out.

use super::grounding::{self, Ref};

/// What the rewrite produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Rewritten {
    /// The Markdown text.
    pub markdown: String,
    /// The `image` references in order; the k-th one was linked as `{prefix}k.png`.
    pub image_refs: Vec<Ref>,
}

/// Rewrites raw model output to Markdown, linking the k-th image reference as
/// `![]({link_prefix}{k}.png)` (k from 0).
///
/// This follows the official scripts, quirks included: k counts image *matches*
/// (a multi-box image reference still gets one link, while crops are numbered per
/// box, see [`crop_jobs`]); every occurrence of a matched string is replaced; the
/// `\coloneqq` → `:=` and `\eqqcolon` → `=:` replacements run only when at least one
/// non-image reference exists. With `collapse_newlines` (the PDF script) runs of
/// four and then three newlines become two, in the same place as the official loop.
pub fn rewrite(text: &str, link_prefix: &str, collapse_newlines: bool) -> Rewritten {
    let refs = grounding::parse_refs(text);
    let (images, others): (Vec<Ref>, Vec<Ref>) =
        refs.into_iter().partition(|r| r.whole.contains("<|ref|>image<|/ref|>"));
    let mut out = text.to_string();
    for (k, r) in images.iter().enumerate() {
        out = out.replace(&r.whole, &format!("![]({link_prefix}{k}.png)\n"));
    }
    for r in &others {
        out = out.replace(&r.whole, "");
        out = out.replace("\\coloneqq", ":=").replace("\\eqqcolon", "=:");
        if collapse_newlines {
            out = out.replace("\n\n\n\n", "\n\n").replace("\n\n\n", "\n\n");
        }
    }
    Rewritten {
        markdown: out,
        image_refs: images,
    }
}

/// Removes every grounding reference (image ones included): plain text.
pub fn strip_refs(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut pos = 0;
    for r in grounding::parse_refs(text) {
        out.push_str(&text[pos..r.span.start]);
        pos = r.span.end;
    }
    out.push_str(&text[pos..]);
    out
}

/// One figure crop to save: box `norm_box` of image reference `ref_index`, saved as
/// `{crop_index}.png`.
#[derive(Debug, Clone, PartialEq)]
pub struct CropJob {
    /// File number: counts image boxes over the whole output, as in the official scripts.
    pub crop_index: usize,
    /// Which image reference the box belongs to.
    pub ref_index: usize,
    /// The box in the 0..999 grid.
    pub norm_box: [f64; 4],
}

/// The crops of the image references, numbered per box across the whole output.
pub fn crop_jobs(image_refs: &[Ref]) -> Vec<CropJob> {
    image_refs
        .iter()
        .enumerate()
        .flat_map(|(ref_index, r)| r.boxes.iter().map(move |b| (ref_index, *b)))
        .enumerate()
        .map(|(crop_index, (ref_index, norm_box))| CropJob {
            crop_index,
            ref_index,
            norm_box,
        })
        .collect()
}

/// The separator the official PDF script writes after every page.
pub const PAGE_SPLIT: &str = "\n\n<--- Page Split --->\n";

/// Joins per-page Markdown into one document, each page followed by [`PAGE_SPLIT`].
pub fn join_pages<'a>(pages: impl IntoIterator<Item = &'a str>) -> String {
    let mut out = String::new();
    for p in pages {
        out.push_str(p);
        out.push_str(PAGE_SPLIT);
    }
    out
}

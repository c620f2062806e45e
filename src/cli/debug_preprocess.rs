//! `dsocr debug preprocess IMAGE --mode MODE --out DIR [--compat pillow]`
//!
//! Writes what the engine feeds the vision encoder, for comparison with the reference:
//! `decoded_rgb.png` (decoded, oriented RGB page), `global_view.png`, `tile_NN.png`
//! (row-major) and `preprocess.json` (mode, sizes, tile grid, token count, pad geometry).

use std::path::{Path, PathBuf};

use anyhow::Context;
use image::RgbImage;
use serde_json::json;

use crate::input::image::{load_image, Bits16, LoadOptions};
use crate::model::ModelVariant;
use crate::vision::preprocess::{global_geometry, GlobalGeometry};
use crate::vision::vision_encoder::rules;

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The image file.
    pub image: PathBuf,
    /// tiny, small, base, large, gundam (= dynamic), nocrop768 or custom:BASE:IMAGE[:crop]
    #[arg(long, default_value = "gundam")]
    pub mode: crate::vision::Mode,
    /// Model variant whose preprocessing to run: ocr (DeepSeek-OCR) or ocr2 (DeepSeek-OCR-2).
    #[arg(long, default_value = "ocr", value_parser = crate::cli::parse_variant)]
    pub variant: ModelVariant,
    /// Output folder.
    #[arg(long)]
    pub out: PathBuf,
    /// Reproduce the reference's Pillow behaviour bit for bit (16-bit images clamped).
    #[arg(long, value_enum)]
    pub compat: Option<Compat>,
}

/// Compatibility profiles.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Compat {
    /// Pillow as used by the reference implementation.
    Pillow,
}

fn save(img: &RgbImage, dir: &Path, name: &str) -> anyhow::Result<()> {
    let path = dir.join(name);
    img.save_with_format(&path, image::ImageFormat::Png)
        .with_context(|| format!("{}: cannot write", path.display()))
}

/// Runs the command.
pub fn run(args: Args) -> anyhow::Result<()> {
    let bits16 = match args.compat {
        Some(Compat::Pillow) => Bits16::PillowClamp,
        None => Bits16::Scale,
    };
    let opts = LoadOptions {
        bits16,
        ..LoadOptions::default()
    };
    let page = load_image(&args.image, &opts)?;
    let p = rules::preprocess(args.variant, &page, args.mode)?;
    let mode = p.mode;

    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("{}: cannot create the output folder", args.out.display()))?;
    save(&page, &args.out, "decoded_rgb.png")?;
    save(&p.global, &args.out, "global_view.png")?;
    let mut tiles = Vec::new();
    for (k, tile) in p.tiles.iter().enumerate() {
        let name = format!("tile_{k:02}.png");
        save(tile, &args.out, &name)?;
        let (row, col) = (k / p.grid.0, k % p.grid.0);
        tiles.push(json!({ "file": name, "tile_row_col": [row, col] }));
    }

    let (w, h) = p.image_size;
    let global = match args.variant {
        ModelVariant::DeepSeekOcr => global_geometry(mode, w, h),
        ModelVariant::DeepSeekOcr2 => match crate::vision::ocr2::preprocess::global_pad_geometry(mode, w, h) {
            Some(g) => GlobalGeometry::Pad(g),
            None => GlobalGeometry::Squash {
                side: mode.image_size as u32,
            },
        },
    };
    let geometry = match global {
        GlobalGeometry::Squash { side } => json!({ "kind": "squash", "resized_wh": [side, side], "offset_xy": [0, 0] }),
        GlobalGeometry::Pad(g) => json!({
            "kind": "pad",
            "resized_wh": [g.resized.0, g.resized.1],
            "offset_xy": [g.offset.0, g.offset.1],
            "offset_before_rounding_xy": [g.offset_before_rounding.0, g.offset_before_rounding.1],
            "pad_rgb": [127, 127, 127],
        }),
    };
    let report = json!({
        "image": args.image.display().to_string(),
        "mode": {
            "name": mode.name(),
            "base_size": mode.base_size,
            "image_size": mode.image_size,
            "crop_mode": mode.crop,
            "max_tiles": mode.max_tiles,
        },
        "variant": args.variant.to_string(),
        "compat": if args.compat.is_some() { "pillow" } else { "default" },
        "decoded_size_wh": [w, h],
        "global_view": { "file": "global_view.png", "size_wh": [p.global.width(), p.global.height()] },
        "global_view_geometry": geometry,
        "tile_grid": { "width_tiles": p.grid.0, "height_tiles": p.grid.1 },
        "images_spatial_crop": [p.grid.0, p.grid.1],
        "n_tiles": p.tiles.len(),
        "tiles": tiles,
        "num_image_tokens": p.num_image_tokens,
    });
    let path = args.out.join("preprocess.json");
    let text = serde_json::to_string_pretty(&report)?;
    std::fs::write(&path, text + "\n").with_context(|| format!("{}: cannot write", path.display()))?;
    eprintln!(
        "{}: {w}x{h}, mode {}, grid {}x{}, {} tiles, {} image tokens -> {}",
        args.image.display(),
        mode,
        p.grid.0,
        p.grid.1,
        p.tiles.len(),
        p.num_image_tokens,
        args.out.display()
    );
    Ok(())
}

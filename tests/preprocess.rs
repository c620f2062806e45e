//! Image preprocessing against the reference goldens (`golden-preprocess/` and the mini
//! model's cases): decoding, views, tile grid, token counts and the normalised tensors.
//!
//! Exactness as stated by the goldens' README: views made from `decoded_rgb.png` are
//! byte-identical; PNG inputs decode exactly (with `Bits16::PillowClamp`); JPEG inputs,
//! decoded by zune-jpeg instead of libjpeg-turbo, stay within max |diff| ≤ 3 with < 2 % of
//! the u8 values differing, for the decode and for the views.

mod common;

use std::path::{Path, PathBuf};

use candle_core::Device;
use deepseek_ocr::input::image::{load_image, Bits16, LoadOptions};
use deepseek_ocr::vision::normalize::views_to_tensor;
use deepseek_ocr::vision::preprocess::{global_geometry, preprocess, GlobalGeometry, Preprocessed};
use deepseek_ocr::vision::Mode;
use image::RgbImage;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// JPEG acceptance bound (README "Suggested acceptance").
const JPEG_MAX_DIFF: u8 = 3;
const JPEG_MAX_FRAC: f64 = 0.02;

fn json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn png(path: &Path) -> RgbImage {
    image::open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .to_rgb8()
}

fn hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn pillow() -> LoadOptions {
    LoadOptions {
        bits16: Bits16::PillowClamp,
        ..LoadOptions::default()
    }
}

fn mode_of(m: &Value) -> Mode {
    let u = |k: &str| m[k].as_u64().unwrap_or_else(|| panic!("mode.{k}")) as usize;
    let crop = m["crop_mode"].as_bool().expect("mode.crop_mode");
    Mode {
        base_size: u("base_size"),
        image_size: u("image_size"),
        crop,
        max_tiles: 9,
    }
}

/// (max |diff|, number of differing values) of two same-sized images.
fn diff(a: &RgbImage, b: &RgbImage) -> (u8, usize) {
    assert_eq!(a.dimensions(), b.dimensions(), "image sizes differ");
    a.as_raw().iter().zip(b.as_raw()).fold((0, 0), |(m, n), (x, y)| {
        let d = x.abs_diff(*y);
        (m.max(d), n + usize::from(d != 0))
    })
}

/// The golden-preprocess inputs, from index.json, checked against the folders on disk.
struct Input {
    name: String,
    file: PathBuf,
    format: String,
    decoded: PathBuf,
    decoded_sha: String,
    /// (mode name, case folder).
    cases: Vec<(String, PathBuf)>,
}

fn inputs(shared: &Path) -> Vec<Input> {
    let root = shared.join("golden-preprocess");
    let index = json(&root.join("index.json"));
    let list = index["inputs"].as_array().expect("index.inputs");
    let mut out = Vec::new();
    for i in list {
        let s = |v: &Value| v.as_str().expect("string field").to_string();
        let mut cases: Vec<(String, PathBuf)> = i["cases"]
            .as_object()
            .expect("cases")
            .iter()
            .map(|(m, c)| (m.clone(), root.join(s(&c["dir"]))))
            .collect();
        cases.sort();
        // Every case folder on disk is in the index, and the other way round.
        let folder = root.join(s(&i["name"]));
        let mut on_disk: Vec<PathBuf> = std::fs::read_dir(&folder)
            .expect("input folder")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.join("golden.json").is_file())
            .collect();
        on_disk.sort();
        let mut listed: Vec<PathBuf> = cases.iter().map(|(_, d)| d.clone()).collect();
        listed.sort();
        assert_eq!(on_disk, listed, "{}: case folders vs index.json", folder.display());
        out.push(Input {
            name: s(&i["name"]),
            file: root.join(s(&i["file"])),
            format: s(&i["format"]),
            decoded: root.join(s(&i["decoded"]["file"])),
            decoded_sha: s(&i["decoded"]["sha256_u8_rgb_hwc"]),
            cases,
        });
    }
    assert!(out.len() >= 10, "expected the 10 public inputs, found {}", out.len());
    out
}

/// Hash of the bf16-rounded model input (`views_to_tensor`) as little-endian f32 CHW.
fn bf16_hash(view: &RgbImage) -> String {
    let t = views_to_tensor(&[view], &Device::Cpu).expect("views_to_tensor");
    let v = t.flatten_all().and_then(|t| t.to_vec1::<f32>()).expect("tensor data");
    hex(&v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>())
}

/// Hash of the f32 normalisation before bf16 rounding, computed as the reference does.
fn f32_hash(view: &RgbImage) -> String {
    let (w, h) = view.dimensions();
    let mut bytes = Vec::with_capacity((w * h * 12) as usize);
    for c in 0..3 {
        for p in view.pixels() {
            let x = ((f32::from(p.0[c]) / 255.0) - 0.5) / 0.5;
            bytes.extend_from_slice(&x.to_le_bytes());
        }
    }
    hex(&bytes)
}

/// Views of a case in order: global first, then tiles.
fn golden_views(case: &Path, g: &Value) -> Vec<RgbImage> {
    let mut v = vec![png(
        &case.join(g["global_view"]["file"].as_str().expect("global_view.file"))
    )];
    for t in g["tiles"].as_array().expect("tiles") {
        v.push(png(&case.join(t["file"].as_str().expect("tile file"))));
    }
    v
}

fn our_views(p: &Preprocessed) -> Vec<&RgbImage> {
    std::iter::once(&p.global).chain(&p.tiles).collect()
}

#[test]
fn decoding_matches_the_reference() {
    let shared = shared_or_skip!();
    for input in inputs(&shared) {
        let golden = png(&input.decoded);
        assert_eq!(
            hex(golden.as_raw()),
            input.decoded_sha,
            "{}: golden decode hash",
            input.name
        );
        let ours = load_image(&input.file, &pillow()).unwrap_or_else(|e| panic!("{}: {e}", input.name));
        let (max, n) = diff(&ours, &golden);
        let frac = n as f64 / golden.as_raw().len() as f64;
        eprintln!("{}: decode max |diff| {max}, {:.4} % differ", input.name, 100.0 * frac);
        match input.format.as_str() {
            "JPEG" => assert!(
                max <= JPEG_MAX_DIFF && frac < JPEG_MAX_FRAC,
                "{}: JPEG decode out of bound",
                input.name
            ),
            _ => assert_eq!(max, 0, "{}: lossless decode must be exact", input.name),
        }
    }
}

#[test]
fn sixteen_bit_gray_scales_by_default_and_clamps_for_pillow() {
    let shared = shared_or_skip!();
    let dir = shared.join("golden-preprocess/gray16_png");
    let clamp = load_image(&dir.join("input.png"), &pillow()).expect("decode");
    let scale = load_image(&dir.join("input.png"), &LoadOptions::default()).expect("decode");
    assert_eq!(clamp, png(&dir.join("decoded_rgb.png")));
    // Pillow's clamp makes the full-range scan black and white ...
    assert!(clamp.as_raw().iter().all(|&v| v == 0 || v == 255));
    // ... while scaling keeps the grey levels: the file holds 8-bit gray × 257, so scaling
    // recovers the 8-bit gray exactly, and it is everywhere ≤ the clamped value.
    let greys = scale.as_raw().iter().filter(|&&v| v != 0 && v != 255).count();
    assert!(
        greys > scale.as_raw().len() / 100,
        "scaled decode should keep grey levels"
    );
    assert!(scale
        .as_raw()
        .iter()
        .zip(clamp.as_raw())
        .all(|(s, c)| s <= c && (*s == 0) == (*c == 0)));
    let (max, n) = diff(&scale, &clamp);
    eprintln!("gray16_png: Scale vs PillowClamp max |diff| {max}, {n} values differ");
}

#[test]
fn views_from_decoded_rgb_are_exact() {
    let shared = shared_or_skip!();
    let mut cases = 0;
    for input in inputs(&shared) {
        let decoded = png(&input.decoded);
        for (mode_name, case) in &input.cases {
            let name = format!("{}/{mode_name}", input.name);
            let g = json(&case.join("golden.json"));
            let mode = mode_of(&g["mode"]);
            assert_eq!(mode.name(), mode_name.as_str(), "{name}: mode");
            let p = preprocess(&decoded, mode);

            // (c) grid, images_spatial_crop, token count, tile count.
            let grid = &g["tiling"]["tile_grid"];
            let want_grid = (
                grid["width_tiles"].as_u64().unwrap_or(0) as usize,
                grid["height_tiles"].as_u64().unwrap_or(0) as usize,
            );
            assert_eq!(p.grid, want_grid, "{name}: grid");
            assert_eq!(
                vec![p.grid.0 as u64, p.grid.1 as u64],
                g["images_spatial_crop"]
                    .as_array()
                    .expect("isc")
                    .iter()
                    .filter_map(Value::as_u64)
                    .collect::<Vec<_>>(),
                "{name}: images_spatial_crop"
            );
            assert_eq!(
                p.num_image_tokens as u64,
                g["num_image_tokens"].as_u64().expect("tokens"),
                "{name}: num_image_tokens"
            );
            assert_eq!(
                p.tiles.len() as u64,
                g["tiling"]["n_tiles"].as_u64().expect("n_tiles"),
                "{name}: n_tiles"
            );

            // Pad geometry.
            let geo = &g["global_view_geometry"];
            let pair = |v: &Value| {
                (
                    v[0].as_u64().unwrap_or(u64::MAX) as u32,
                    v[1].as_u64().unwrap_or(u64::MAX) as u32,
                )
            };
            match global_geometry(mode, decoded.width(), decoded.height()) {
                GlobalGeometry::Squash { .. } => assert_eq!(geo["kind"], "squash", "{name}"),
                GlobalGeometry::Pad(pg) => {
                    assert_eq!(geo["kind"], "pad", "{name}");
                    assert_eq!(pg.resized, pair(&geo["resized_wh"]), "{name}: resized");
                    assert_eq!(pg.offset, pair(&geo["offset_xy"]), "{name}: offset");
                }
            }

            // (b) exact views, (d) hashes of the normalised tensors.
            let want = golden_views(case, &g);
            let ours = our_views(&p);
            assert_eq!(ours.len(), want.len(), "{name}: number of views");
            let meta: Vec<&Value> = std::iter::once(&g["global_view"])
                .chain(g["tiles"].as_array().expect("tiles"))
                .collect();
            for (k, ((o, w), m)) in ours.iter().zip(&want).zip(meta).enumerate() {
                assert_eq!(o.dimensions(), w.dimensions(), "{name}: view {k} size");
                let (max, n) = diff(o, w);
                assert_eq!((max, n), (0, 0), "{name}: view {k} differs (max {max}, {n} values)");
                assert_eq!(hex(o.as_raw()), m["sha256_u8_rgb_hwc"], "{name}: view {k} u8 hash");
                assert_eq!(f32_hash(o), m["sha256_f32_normalised_chw"], "{name}: view {k} f32 hash");
                assert_eq!(
                    bf16_hash(o),
                    m["sha256_bf16_model_input_as_f32_chw"],
                    "{name}: view {k} bf16 hash"
                );
            }
            cases += 1;
        }
    }
    eprintln!("{cases} cases: all views byte-identical, all hashes equal");
    assert!(cases >= 30);
}

#[test]
fn views_from_original_files_within_bounds() {
    let shared = shared_or_skip!();
    for input in inputs(&shared) {
        let page = load_image(&input.file, &pillow()).unwrap_or_else(|e| panic!("{}: {e}", input.name));
        for (mode_name, case) in &input.cases {
            let name = format!("{}/{mode_name}", input.name);
            let g = json(&case.join("golden.json"));
            let p = preprocess(&page, mode_of(&g["mode"]));
            let want = golden_views(case, &g);
            let ours = our_views(&p);
            assert_eq!(ours.len(), want.len(), "{name}: number of views");
            let (mut max, mut n, mut total) = (0u8, 0usize, 0usize);
            for (o, w) in ours.iter().zip(&want) {
                let (m, k) = diff(o, w);
                max = max.max(m);
                n += k;
                total += w.as_raw().len();
            }
            let frac = n as f64 / total as f64;
            eprintln!(
                "{name}: views from the file: max |diff| {max}, {:.4} % differ",
                100.0 * frac
            );
            if input.format == "JPEG" {
                assert!(
                    max <= JPEG_MAX_DIFF && frac < JPEG_MAX_FRAC,
                    "{name}: views out of the JPEG bound"
                );
            } else {
                assert_eq!(max, 0, "{name}: views from a lossless file must be exact");
            }
        }
    }
}

#[test]
fn mini_golden_cases_preprocess_exactly() {
    let shared = shared_or_skip!();
    for dir in common::golden_cases(&shared) {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let g = json(&dir.join("golden.json"));
        let pre = &g["preprocessing"];
        let page = load_image(&dir.join("input.png"), &pillow()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let p = preprocess(&page, mode_of(&g["mode"]));

        let grid = &pre["tile_grid"];
        assert_eq!(
            p.grid,
            (
                grid["width_tiles"].as_u64().unwrap_or(0) as usize,
                grid["height_tiles"].as_u64().unwrap_or(0) as usize
            ),
            "{name}: grid"
        );
        assert_eq!(
            vec![p.grid.0 as u64, p.grid.1 as u64],
            pre["images_spatial_crop"]
                .as_array()
                .expect("isc")
                .iter()
                .filter_map(Value::as_u64)
                .collect::<Vec<_>>(),
            "{name}: images_spatial_crop"
        );
        assert_eq!(
            p.num_image_tokens as u64,
            pre["num_image_tokens"].as_u64().expect("tokens"),
            "{name}: num_image_tokens"
        );

        let global = png(&dir.join("view_global.png"));
        assert_eq!(diff(&p.global, &global), (0, 0), "{name}: global view");
        assert_eq!(
            bf16_hash(&p.global),
            pre["global_view"]["sha256_model_input_bf16_as_f32"],
            "{name}: global bf16 hash"
        );
        let crops = pre["local_crops"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        assert_eq!(p.tiles.len(), crops.len(), "{name}: number of tiles");
        for (k, (tile, c)) in p.tiles.iter().zip(crops).enumerate() {
            let want = png(&dir.join(c["file"].as_str().expect("crop file")));
            assert_eq!(diff(tile, &want), (0, 0), "{name}: tile {k}");
            assert_eq!(
                bf16_hash(tile),
                c["sha256_model_input_bf16_as_f32"],
                "{name}: tile {k} bf16 hash"
            );
        }
        eprintln!(
            "{name}: global + {} tiles exact, {} image tokens",
            p.tiles.len(),
            p.num_image_tokens
        );
    }
}

#[test]
fn debug_preprocess_command_writes_the_golden_views() {
    // The command line lives in the binary (not the library), so the test runs it.
    let dsocr = |args: &[&std::ffi::OsStr]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_dsocr"))
            .args(["debug", "preprocess"])
            .args(args)
            .output()
            .expect("run dsocr")
    };
    let shared = shared_or_skip!();
    let case = shared.join("golden-preprocess/gray16_png/gundam");
    let out = tempfile::tempdir().expect("tempdir");
    let input = shared.join("golden-preprocess/gray16_png/input.png");
    let o = dsocr(&[
        input.as_os_str(),
        "--mode".as_ref(),
        "gundam".as_ref(),
        "--out".as_ref(),
        out.path().as_os_str(),
        "--compat".as_ref(),
        "pillow".as_ref(),
    ]);
    assert!(
        o.status.success(),
        "debug preprocess: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let g = json(&case.join("golden.json"));
    let report = json(&out.path().join("preprocess.json"));
    assert_eq!(report["num_image_tokens"], g["num_image_tokens"]);
    assert_eq!(report["tile_grid"], g["tiling"]["tile_grid"]);
    assert_eq!(
        report["global_view_geometry"]["offset_xy"],
        g["global_view_geometry"]["offset_xy"]
    );
    assert_eq!(
        report["global_view_geometry"]["resized_wh"],
        g["global_view_geometry"]["resized_wh"]
    );
    assert_eq!(
        png(&out.path().join("decoded_rgb.png")),
        png(&shared.join("golden-preprocess/gray16_png/decoded_rgb.png"))
    );
    for (k, want) in golden_views(&case, &g).iter().enumerate() {
        let name = if k == 0 {
            "global_view.png".to_string()
        } else {
            format!("tile_{:02}.png", k - 1)
        };
        assert_eq!(&png(&out.path().join(&name)), want, "{name}");
    }
    // A missing input is an error, not a panic.
    let missing = out.path().join("missing.png");
    let x = out.path().join("x");
    let o = dsocr(&[missing.as_os_str(), "--out".as_ref(), x.as_os_str()]);
    assert!(!o.status.success());
    assert!(!String::from_utf8_lossy(&o.stderr).contains("panicked"));
}

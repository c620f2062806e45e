//! Resolution modes of DeepSeek-OCR (spec §3.2).

use std::fmt;
use std::str::FromStr;

/// How a page is turned into views.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mode {
    /// Side of the global view (512, 640, 1024, 1280).
    pub base_size: usize,
    /// Side of the single view (no crop) or of the tiles (crop).
    pub image_size: usize,
    /// Whether the page is cut into `image_size` tiles (plus a `base_size` global view).
    pub crop: bool,
    /// Tile-count limit (9 in the HF reference, 6 in vLLM).
    pub max_tiles: usize,
}

impl Mode {
    pub const TINY: Mode = Mode {
        base_size: 512,
        image_size: 512,
        crop: false,
        max_tiles: 9,
    };
    pub const SMALL: Mode = Mode {
        base_size: 640,
        image_size: 640,
        crop: false,
        max_tiles: 9,
    };
    pub const BASE: Mode = Mode {
        base_size: 1024,
        image_size: 1024,
        crop: false,
        max_tiles: 9,
    };
    pub const LARGE: Mode = Mode {
        base_size: 1280,
        image_size: 1280,
        crop: false,
        max_tiles: 9,
    };
    pub const GUNDAM: Mode = Mode {
        base_size: 1024,
        image_size: 640,
        crop: true,
        max_tiles: 9,
    };

    /// One 768² stretched view: DeepSeek-OCR 2's no-crop 768 mode (HF `crop_mode=False`,
    /// `image_size=768`); on DeepSeek-OCR a 768² letterboxed view.
    pub const NOCROP768: Mode = Mode {
        base_size: 1024,
        image_size: 768,
        crop: false,
        max_tiles: 9,
    };

    /// The official mode name, or `custom`.
    pub fn name(&self) -> &'static str {
        match (self.base_size, self.image_size, self.crop) {
            (512, 512, false) => "tiny",
            (640, 640, false) => "small",
            (1024, 1024, false) => "base",
            (1280, 1280, false) => "large",
            (1024, 640, true) => "gundam",
            (1024, 768, true) => "dynamic",
            (1024, 768, false) => "nocrop768",
            _ => "custom",
        }
    }
}

impl Default for Mode {
    /// Gundam, the official default.
    fn default() -> Self {
        Mode::GUNDAM
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            "custom" => write!(
                f,
                "custom:{}:{}:{}",
                self.base_size,
                self.image_size,
                if self.crop { "crop" } else { "nocrop" }
            ),
            n => f.write_str(n),
        }
    }
}

impl FromStr for Mode {
    type Err = String;
    /// `tiny|small|base|large|gundam|dynamic|nocrop768` or `custom:BASE:IMAGE[:crop]`.
    ///
    /// `dynamic` is `gundam` by its DeepSeek-OCR-2 name (the engine maps either onto the
    /// model's tile size); `nocrop768` is one 768² view.
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "tiny" => Ok(Mode::TINY),
            "small" => Ok(Mode::SMALL),
            "base" => Ok(Mode::BASE),
            "large" => Ok(Mode::LARGE),
            "gundam" | "dynamic" => Ok(Mode::GUNDAM),
            "nocrop768" => Ok(Mode::NOCROP768),
            other => {
                let parts: Vec<&str> = other.split(':').collect();
                let bad = || {
                    format!("unknown mode `{s}`: use tiny, small, base, large, gundam (= dynamic), nocrop768 or custom:BASE:IMAGE[:crop]")
                };
                if parts.len() < 3 || parts[0] != "custom" {
                    return Err(bad());
                }
                let base: usize = parts[1].parse().map_err(|_| bad())?;
                let image: usize = parts[2].parse().map_err(|_| bad())?;
                let crop = matches!(parts.get(3), Some(&"crop"));
                if base == 0 || image == 0 || !base.is_multiple_of(64) || !image.is_multiple_of(64) {
                    return Err(format!("mode `{s}`: sizes must be positive multiples of 64"));
                }
                Ok(Mode {
                    base_size: base,
                    image_size: image,
                    crop,
                    max_tiles: 9,
                })
            }
        }
    }
}

//! Inputs: images (decode, EXIF, colour modes) and PDF pages.

pub mod pdf;

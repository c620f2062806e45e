//! Inputs: images (decode, EXIF, colour modes) and PDF pages.

pub mod convert;
pub mod image;
pub mod orientation;
pub mod pdf;

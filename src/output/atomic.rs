//! Crash-safe file writing: write a temporary file next to the target, then rename.
//!
//! A rename within one folder is atomic on POSIX file systems, so a reader (or a
//! resumed batch checking which outputs exist) sees either no file or the complete
//! file, never a truncated one, even when the process is killed mid-write.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use image::RgbImage;

use crate::error::{Error, Result};

/// Marker in the names of temporary files, so leftovers of a killed run can be recognised.
pub const TEMP_MARKER: &str = ".dsocr-tmp";

/// A temporary name in the target's folder, unique within this process and across processes.
fn temp_path(target: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = target
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    target.with_file_name(format!(".{name}{TEMP_MARKER}-{}-{n}", std::process::id()))
}

/// Writes `bytes` to `path` atomically (temporary file, flush to disk, rename).
pub fn write_bytes(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = temp_path(path);
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        // Without the sync a crash after the rename could leave an empty file behind.
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(Error::io(path, e));
    }
    Ok(())
}

/// Writes UTF-8 text atomically.
pub fn write_text(path: &Path, text: &str) -> Result<()> {
    write_bytes(path, text.as_bytes())
}

/// Encodes an RGB image as PNG and writes it atomically.
pub fn write_png(path: &Path, image: &RgbImage) -> Result<()> {
    let mut buf = std::io::Cursor::new(Vec::new());
    image
        .write_to(&mut buf, image::ImageFormat::Png)
        .map_err(|e| Error::io(path, std::io::Error::other(e)))?;
    write_bytes(path, buf.get_ref())
}

/// Creates a folder and its parents, with the path in the error.
pub fn create_dir_all(path: &Path) -> Result<()> {
    fs::create_dir_all(path).map_err(|e| Error::io(path, e))
}

/// Removes temporary files a killed run left in `dir` (not recursive; missing folder is fine).
pub fn remove_stale_temps(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        if e.file_name().to_string_lossy().contains(TEMP_MARKER) {
            let _ = fs::remove_file(e.path());
        }
    }
}

/// Removes the temporary files a killed run left in `dir` for the targets named `names`
/// only, so that concurrent writers of other files in the same folder are not disturbed.
pub fn remove_stale_temps_of(dir: &Path, names: &[String]) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let file = e.file_name().to_string_lossy().into_owned();
        if names.iter().any(|n| file.starts_with(&format!(".{n}{TEMP_MARKER}-"))) {
            let _ = fs::remove_file(e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_whole_files_and_leaves_no_temporaries() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.md");
        write_text(&target, "first").unwrap();
        write_text(&target, "second").unwrap();
        assert_eq!(fs::read_to_string(&target).unwrap(), "second");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("out.md")]);
    }

    #[test]
    fn failed_write_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("missing-folder").join("out.md");
        let e = write_text(&target, "x").unwrap_err();
        assert!(e.to_string().contains("missing-folder"), "{e}");
        assert!(!dir.path().join("missing-folder").exists());
    }

    #[test]
    fn stale_temporaries_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let stale = temp_path(&dir.path().join("page.json"));
        fs::write(&stale, "partial").unwrap();
        fs::write(dir.path().join("keep.json"), "{}").unwrap();
        remove_stale_temps(dir.path());
        assert!(!stale.exists());
        assert!(dir.path().join("keep.json").exists());
    }
}

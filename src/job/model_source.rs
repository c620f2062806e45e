//! Where the model comes from: a local folder, or a Hugging Face Hub repository
//! downloaded into (or found in) the standard Hub cache.
//!
//! `HF_HOME` moves the cache (hf-hub reads it); `HF_HUB_OFFLINE=1` forbids network
//! access, so only an already cached snapshot can be used. Hub ids need the `hub` cargo
//! feature (on by default with `cli`); without it only local folders resolve.

use std::path::{Path, PathBuf};

#[cfg(feature = "hub")]
use hf_hub::api::sync::ApiBuilder;
#[cfg(feature = "hub")]
use hf_hub::{Cache, Repo};

use crate::error::{Error, Result};

/// The official checkpoint, used when `--model` is not given.
pub const DEFAULT_REPO: &str = "deepseek-ai/DeepSeek-OCR";

/// The official DeepSeek-OCR-2 checkpoint (`--model deepseek-ai/DeepSeek-OCR-2`); its
/// config.json selects the OCR-2 encoder.
pub const OCR2_REPO: &str = "deepseek-ai/DeepSeek-OCR-2";

/// Files every model folder needs besides the weights.
const REQUIRED: [&str; 2] = ["config.json", "tokenizer.json"];
const INDEX: &str = "model.safetensors.index.json";

/// Resolves `--model` (a folder, or a Hub repo id; `None` = [`DEFAULT_REPO`]) to a
/// complete local model folder. `show_progress` shows download bars on stderr.
pub fn resolve(spec: Option<&str>, show_progress: bool) -> Result<PathBuf> {
    let spec = spec.unwrap_or(DEFAULT_REPO);
    let path = Path::new(spec);
    if path.exists() {
        if !path.is_dir() {
            return Err(Error::model(
                path,
                "is a file, not a model folder",
                "pass the folder holding config.json, tokenizer.json and *.safetensors",
            ));
        }
        check_folder(path)?;
        return Ok(path.to_path_buf());
    }
    if !is_repo_id(spec) {
        return Err(Error::model(
            path,
            "no such model folder",
            format!("pass an existing folder or a Hugging Face repo id such as {DEFAULT_REPO}"),
        ));
    }
    from_hub(spec, show_progress)
}

#[cfg(feature = "hub")]
fn from_hub(spec: &str, show_progress: bool) -> Result<PathBuf> {
    if offline() {
        from_cache(spec)
    } else {
        download(spec, show_progress)
    }
}

#[cfg(not(feature = "hub"))]
fn from_hub(spec: &str, _show_progress: bool) -> Result<PathBuf> {
    Err(Error::model(
        spec,
        "no such model folder, and this build cannot download from the Hugging Face Hub",
        "pass a local model folder, or build with the `hub` cargo feature",
    ))
}

/// `owner/name` with the characters the Hub allows.
fn is_repo_id(s: &str) -> bool {
    let ok = |p: &str| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    matches!(s.split_once('/'), Some((a, b)) if ok(a) && ok(b) && !a.starts_with('.'))
}

/// `HF_HUB_OFFLINE` set to a true value.
pub fn offline() -> bool {
    std::env::var("HF_HUB_OFFLINE")
        .is_ok_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
}

#[cfg(feature = "hub")]
fn get_hint(repo: &str) -> String {
    format!(
        "download it with network access (`dsocr ocr --model {repo} ...` without HF_HUB_OFFLINE, or `huggingface-cli download {repo}`), \
         or pass --model with a local folder"
    )
}

/// Checks that a local folder holds config, tokenizer and every weight shard.
pub fn check_folder(dir: &Path) -> Result<()> {
    for f in REQUIRED {
        if !dir.join(f).is_file() {
            return Err(Error::model(
                dir,
                format!("incomplete model folder: {f} is missing"),
                "copy or re-download the whole model folder",
            ));
        }
    }
    let shards = weight_files(dir)?;
    if shards.is_empty() {
        return Err(Error::model(
            dir,
            "incomplete model folder: no .safetensors weights",
            "copy or re-download the whole model folder",
        ));
    }
    if let Some(missing) = shards.iter().find(|s| !dir.join(s).is_file()) {
        return Err(Error::model(
            dir,
            format!("incomplete model folder: weight file {missing} is missing"),
            "copy or re-download the whole model folder",
        ));
    }
    Ok(())
}

/// Weight files named by the index (if any), else the `*.safetensors` present.
fn weight_files(dir: &Path) -> Result<Vec<String>> {
    let index = dir.join(INDEX);
    if index.is_file() {
        return shards_of_index(&index);
    }
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    Ok(entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".safetensors"))
        .collect())
}

fn shards_of_index(index: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(index).map_err(|e| Error::io(index, e))?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::model(index, format!("not valid JSON: {e}"), "re-download the model"))?;
    let map = v
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| Error::model(index, "has no `weight_map`", "re-download the model"))?;
    let mut names: Vec<String> = map.values().filter_map(|s| s.as_str().map(String::from)).collect();
    names.sort();
    names.dedup();
    Ok(names)
}

#[cfg(feature = "hub")]
/// A snapshot already in the Hub cache, without network access.
fn from_cache(repo: &str) -> Result<PathBuf> {
    let cache = Cache::from_env();
    let cached = cache.repo(Repo::model(repo.to_string()));
    let not_cached = |what: &str| {
        Error::model(
            cache.path().join(format!("models--{}", repo.replace('/', "--"))),
            format!("{repo} is not in the Hugging Face cache ({what} missing) and HF_HUB_OFFLINE is set"),
            get_hint(repo),
        )
    };
    let config = cached.get("config.json").ok_or_else(|| not_cached("config.json"))?;
    let dir = config
        .parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| not_cached("snapshot folder"))?;
    check_folder(&dir).map_err(|_| not_cached("some files"))?;
    Ok(dir)
}

#[cfg(feature = "hub")]
/// Downloads (or reuses) the files of `repo` into the Hub cache.
fn download(repo: &str, show_progress: bool) -> Result<PathBuf> {
    let failed = |file: &str, e: hf_hub::api::sync::ApiError| {
        Error::model(
            PathBuf::from(repo),
            format!("cannot download {file} from the Hugging Face Hub: {e}"),
            "check the repo id and your network connection, set HF_HUB_OFFLINE=1 to use the cache only, or pass --model with a local folder",
        )
    };
    let api = ApiBuilder::from_env()
        .with_progress(show_progress)
        .build()
        .map_err(|e| failed("anything", e))?;
    let hub = api.model(repo.to_string());
    let config = hub.get("config.json").map_err(|e| failed("config.json", e))?;
    hub.get("tokenizer.json").map_err(|e| failed("tokenizer.json", e))?;
    // Sharded checkpoints list their shards in the index; single-file ones have none.
    let shards = match hub.get(INDEX) {
        Ok(index) => shards_of_index(&index)?,
        Err(_) => vec!["model.safetensors".to_string()],
    };
    for s in &shards {
        hub.get(s).map_err(|e| failed(s, e))?;
    }
    let dir = config
        .parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| Error::model(&config, "unexpected cache layout", "pass --model with a local folder"))?;
    check_folder(&dir)?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::{check_folder, is_repo_id};
    use std::fs;

    #[test]
    fn folder_checks() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let msg = |d: &std::path::Path| check_folder(d).unwrap_err().to_string();
        assert!(msg(d).contains("config.json is missing"));
        fs::write(d.join("config.json"), "{}").unwrap();
        assert!(msg(d).contains("tokenizer.json is missing"));
        fs::write(d.join("tokenizer.json"), "{}").unwrap();
        assert!(msg(d).contains("no .safetensors"));
        fs::write(
            d.join(super::INDEX),
            r#"{"weight_map": {"a": "model-1.safetensors", "b": "model-2.safetensors"}}"#,
        )
        .unwrap();
        fs::write(d.join("model-1.safetensors"), "").unwrap();
        assert!(msg(d).contains("model-2.safetensors is missing"));
        fs::write(d.join("model-2.safetensors"), "").unwrap();
        check_folder(d).unwrap();
    }

    #[test]
    fn repo_ids() {
        assert!(is_repo_id(super::DEFAULT_REPO));
        assert!(is_repo_id(super::OCR2_REPO));
        assert!(is_repo_id("a_b/c.d-e"));
        assert!(!is_repo_id("no-slash"));
        assert!(!is_repo_id("a/b/c"));
        assert!(!is_repo_id("./model"));
        assert!(!is_repo_id("/abs"));
    }
}

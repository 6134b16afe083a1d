//! Copies of the shipped lab files (policies/lab) with a setting changed in the
//! `[media]` table of both instance files.

use super::ua::R;
use std::path::{Path, PathBuf};

/// policies/lab, as shipped.
pub fn shipped_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/lab")
}

/// Write `bytes` to `path` atomically (temporary file + rename): a concurrent run of a test
/// starting an instance never reads a half-written file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> R<()> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(|e| format!("write {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("rename to {}: {e}", path.display()))
}

/// Copy `from` into `to` (files replaced atomically); `patch` may rewrite a file's text.
pub fn copy_dir(from: &Path, to: &Path, patch: &dyn Fn(&Path, String) -> String) -> R<()> {
    std::fs::create_dir_all(to).map_err(|e| format!("mkdir {}: {e}", to.display()))?;
    for e in std::fs::read_dir(from).map_err(|e| format!("{}: {e}", from.display()))? {
        let e = e.map_err(|e| e.to_string())?;
        let (src, dst) = (e.path(), to.join(e.file_name()));
        if src.is_dir() {
            copy_dir(&src, &dst, patch)?;
        } else {
            let text = std::fs::read_to_string(&src)
                .map_err(|e| format!("read {}: {e}", src.display()))?;
            write_atomic(&dst, patch(&src, text).as_bytes())?;
        }
    }
    Ok(())
}

/// `toml` with `key = value` in its `[media]` table (replacing any `key` there; the table
/// is added at the end if absent).
pub fn with_media_setting(toml: &str, key: &str, value: &str) -> String {
    let setting = format!("{key} = {value}");
    let mut out = Vec::new();
    let mut in_media = false;
    let mut done = false;
    for line in toml.lines() {
        let t = line.split('#').next().unwrap_or("").trim();
        if t.starts_with('[') {
            in_media = t == "[media]";
            out.push(line.to_string());
            if in_media && !done {
                out.push(setting.clone());
                done = true;
            }
            continue;
        }
        if in_media && t.split('=').next().map(str::trim) == Some(key) {
            continue; // replaced by the line inserted under [media]
        }
        out.push(line.to_string());
    }
    let mut s = out.join("\n");
    s.push('\n');
    if !done {
        s.push_str(&format!("\n[media]\n{setting}\n"));
    }
    s
}

/// A copy of the shipped lab files (peer policies included: they are referenced relatively)
/// in `to`, with `[media] key = value` in the two instance files (the top-level `.toml`s).
pub fn lab_copy_with_media(to: &Path, key: &str, value: &str) -> R<PathBuf> {
    let shipped = shipped_dir();
    let top = |p: &Path| p.parent() == Some(shipped.as_path());
    copy_dir(&shipped, to, &|p, text| {
        if top(p) && p.extension().is_some_and(|x| x == "toml") {
            with_media_setting(&text, key, value)
        } else {
            text
        }
    })?;
    Ok(to.to_path_buf())
}

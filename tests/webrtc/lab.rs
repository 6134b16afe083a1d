//! The two Palisade instances of the lab (common::instance, as tests/lab.rs uses it),
//! and the kernel-mode copy of the lab configuration.

use crate::common::instance::{self, Instance};
use crate::common::labfiles;
use std::path::{Path, PathBuf};

pub type R<T> = Result<T, String>;

pub use crate::common::labfiles::shipped_dir;

pub fn work_dir() -> PathBuf {
    instance::work_dir("webrtc")
}

/// Both instances; dropping it stops both (also on panic).
pub struct Lab {
    pub a: Instance,
    pub b: Instance,
}

impl Lab {
    pub fn start(dir: &Path, tag: &str) -> R<Lab> {
        Lab::start_logs(dir, tag, &work_dir())
    }

    /// [`Lab::start`] with the logs in `logs` (`TAG-operator-a.log`...).
    pub fn start_logs(dir: &Path, tag: &str, logs: &Path) -> R<Lab> {
        Lab::start_keylog(dir, tag, logs, None)
    }

    /// [`Lab::start_logs`], both instances writing their TLS session keys to `keylog`
    /// (`SSLKEYLOGFILE`), so a capture of the interconnect can be decrypted.
    pub fn start_keylog(dir: &Path, tag: &str, logs: &Path, keylog: Option<&Path>) -> R<Lab> {
        let env: Vec<(&str, String)> = keylog
            .map(|k| ("SSLKEYLOGFILE", k.display().to_string()))
            .into_iter()
            .collect();
        let start = |name: &str| {
            let log = logs.join(format!("{tag}-{name}.log"));
            Instance::start_env(name, &dir.join(format!("{name}.toml")), log, &env)
        };
        let a = start("operator-a")?;
        let b = start("operator-b")?;
        Ok(Lab { a, b })
    }

    pub fn alive(&mut self) -> R<()> {
        self.a.alive()?;
        self.b.alive()
    }
}

/// `toml` with `kernel = true` in its `[media]` table (added if absent).
pub fn with_kernel_switch(toml: &str) -> String {
    labfiles::with_media_setting(toml, "kernel", "true")
}

/// A copy of the shipped lab files in target/tmp/webrtc/lab-kernel with the kernel switch on.
pub fn kernel_dir() -> R<PathBuf> {
    kernel_dir_in(&work_dir())
}

/// [`kernel_dir`] under `work` (work/lab-kernel).
pub fn kernel_dir_in(work: &Path) -> R<PathBuf> {
    let dir = work.join("lab-kernel");
    let _ = std::fs::remove_dir_all(&dir);
    labfiles::lab_copy_with_media(&dir, "kernel", "true")
}

/// `nft list ruleset`.
pub fn nft_ruleset() -> R<String> {
    let out = std::process::Command::new("nft")
        .args(["list", "ruleset"])
        .output()
        .map_err(|e| format!("cannot run `nft list ruleset` (package nftables): {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`nft list ruleset` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Which of `ports` the current nftables ruleset does not mention.
pub fn nft_mentions(ports: &[u16]) -> R<Vec<u16>> {
    let text = nft_ruleset()?;
    let words: Vec<&str> = text
        .split(|c: char| !c.is_ascii_digit())
        .filter(|w| !w.is_empty())
        .collect();
    Ok(ports
        .iter()
        .filter(|p| !words.contains(&p.to_string().as_str()))
        .copied()
        .collect())
}

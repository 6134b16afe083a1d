//! Running the `nft` binary: one process per transaction (`nft -f -`, script on stdin) or per
//! listing (`nft -j list ...`, JSON on stdout), with its failures mapped to [`KernelError`]s
//! (permission, missing binary, rejected script).

use std::io::Write;
use std::process::{Command, Stdio};

use super::KernelError;

/// Runs `nft -f -` with `text` on stdin (one transaction).
pub(crate) fn script(text: &str) -> Result<(), KernelError> {
    run(&["-f", "-"], Some(text)).map(|_| ())
}

pub(crate) fn run(args: &[&str], stdin: Option<&str>) -> Result<Vec<u8>, KernelError> {
    let mut child = Command::new("nft")
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| KernelError::NftMissing(e.to_string()))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // Errors here surface as nft's exit status below.
        let _ = pipe.write_all(text.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| KernelError::NftMissing(e.to_string()))?;
    if out.status.success() {
        return Ok(out.stdout);
    }
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    if stderr.contains("Operation not permitted") || stderr.contains("Permission denied") {
        return Err(KernelError::NotPermitted(stderr));
    }
    let mut command = args.join(" ");
    if let Some(text) = stdin {
        let first: String = text.lines().take(3).collect::<Vec<_>>().join(" / ");
        command = format!(
            "{command} <<< {}",
            first.chars().take(300).collect::<String>()
        );
    }
    Err(KernelError::Nft {
        command,
        stderr: stderr.chars().take(2000).collect(),
    })
}

/// `nft -j list KIND inet TABLE [NAME]`, parsed.
pub(super) fn list_json(
    table: &str,
    kind: &str,
    name: Option<&str>,
) -> Result<serde_json::Value, KernelError> {
    let mut args = vec!["-j", "list", kind, "inet", table];
    args.extend(name);
    let out = run(&args, None)?;
    serde_json::from_slice(&out).map_err(|e| KernelError::Parse(e.to_string()))
}

/// Number of elements in all maps and sets of the table, as the kernel lists them.
pub(super) fn count_elements(table: &str) -> Result<usize, KernelError> {
    let v = list_json(table, "table", None)?;
    let mut n = 0;
    for obj in v["nftables"].as_array().into_iter().flatten() {
        for kind in ["set", "map"] {
            n += obj[kind]["elem"].as_array().map_or(0, Vec::len);
        }
    }
    Ok(n)
}

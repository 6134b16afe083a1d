//! Runs the SIPp UAC/UAS pair of this folder and judges the outcome.
//! Used by tests/lab.rs (through the lab) and by the tooling self-test (directly).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct SippRun {
    pub uac_ip: String,
    pub uac_port: u16,
    pub target: String,
    pub uas_ip: String,
    pub uas_port: u16,
    pub service: String,
    pub calls: u32,
    pub rate: u32,
    pub limit: u32,
    /// Folder for stat/error/log files.
    pub work: PathBuf,
    pub timeout: Duration,
}

pub fn sipp_available() -> bool {
    Command::new("sipp")
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

fn scenario_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sipp")
}

struct Kill(Option<Child>);
impl Drop for Kill {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn wait_bounded(k: &mut Kill, limit: Duration) -> Option<i32> {
    let end = Instant::now() + limit;
    let c = k.0.as_mut()?;
    while Instant::now() < end {
        if let Ok(Some(st)) = c.try_wait() {
            k.0 = None;
            return Some(st.code().unwrap_or(-1));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// Parse sipp's -trace_stat CSV: (successful, failed) cumulative counters of the last line.
pub fn parse_stat(csv: &str) -> Option<(u64, u64)> {
    let mut lines = csv.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines.next()?.split(';').collect();
    let last: Vec<&str> = lines.next_back()?.split(';').collect();
    let idx = |name: &str| header.iter().position(|h| h.trim() == name);
    let s = last.get(idx("SuccessfulCall(C)")?)?.trim().parse().ok()?;
    let f = last.get(idx("FailedCall(C)")?)?.trim().parse().ok()?;
    Some((s, f))
}

/// Run UAS then UAC (uac.xml, uas.xml); Ok(summary) iff all calls succeeded and none failed.
pub fn run(r: &SippRun) -> Result<String, String> {
    run_pair(r, "uac.xml", "uas.xml")
}

/// Like [`run`] with the UAC and UAS scenario files `uac_xml` and `uas_xml` of this folder.
pub fn run_pair(r: &SippRun, uac_xml: &str, uas_xml: &str) -> Result<String, String> {
    std::fs::create_dir_all(&r.work).map_err(|e| e.to_string())?;
    let dir = scenario_dir();
    let secs = format!("{}s", r.timeout.as_secs().max(5));
    let out = |n: &str| -> Result<std::fs::File, String> {
        std::fs::File::create(r.work.join(n)).map_err(|e| e.to_string())
    };
    let mut uas = Kill(Some(
        Command::new("sipp")
            .arg("-sf")
            .arg(dir.join(uas_xml))
            .args(["-i", &r.uas_ip, "-p", &r.uas_port.to_string()])
            .args(["-m", &r.calls.to_string(), "-nostdin", "-timeout", &secs])
            .arg("-trace_err")
            .arg("-error_file")
            .arg(r.work.join("uas_errors.log"))
            .stdin(Stdio::null())
            .stdout(out("uas.stdout")?)
            .stderr(out("uas.stderr")?)
            .spawn()
            .map_err(|e| format!("spawn sipp uas: {e}"))?,
    ));
    std::thread::sleep(Duration::from_millis(500));
    let stat = r.work.join("uac_stat.csv");
    let _ = std::fs::remove_file(&stat);
    let mut uac = Kill(Some(
        Command::new("sipp")
            .arg("-sf")
            .arg(dir.join(uac_xml))
            .args(["-i", &r.uac_ip, "-p", &r.uac_port.to_string()])
            .args(["-m", &r.calls.to_string()])
            .args(["-r", &r.rate.to_string(), "-l", &r.limit.to_string()])
            .args([
                "-s",
                &r.service,
                "-nostdin",
                "-timeout",
                &secs,
                "-timeout_error",
            ])
            .arg("-trace_stat")
            .arg("-stf")
            .arg(&stat)
            .args(["-fd", "1"])
            .arg("-trace_err")
            .arg("-error_file")
            .arg(r.work.join("uac_errors.log"))
            .arg(&r.target)
            .stdin(Stdio::null())
            .stdout(out("uac.stdout")?)
            .stderr(out("uac.stderr")?)
            .spawn()
            .map_err(|e| format!("spawn sipp uac: {e}"))?,
    ));
    let uac_code = wait_bounded(&mut uac, r.timeout + Duration::from_secs(15));
    let uas_code = wait_bounded(&mut uas, Duration::from_secs(10));
    drop(uac);
    drop(uas);
    let csv = std::fs::read_to_string(&stat).unwrap_or_default();
    let counts = parse_stat(&csv);
    let summary = format!(
        "uac exit {:?}, uas exit {:?}, (successful, failed) = {:?}; logs in {}",
        uac_code,
        uas_code,
        counts,
        r.work.display()
    );
    match (uac_code, counts) {
        (Some(0), Some((s, 0))) if s == u64::from(r.calls) => Ok(summary),
        _ => Err(summary),
    }
}

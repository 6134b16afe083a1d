//! Starting and stopping Palisade lab instances (`palisade run --config FILE`), the
//! registry of every child process a test binary started (for its global watchdog)
//! and the process helpers around it.

use super::ua::R;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);

/// The fixed SIP addresses (UDP) of the lab: only one lab can run on a machine at a time.
pub const LAB_SIP_ADDRS: [&str; 4] = [
    "127.0.10.1:5060",
    "127.0.10.2:5060",
    "127.0.40.2:5060",
    "127.0.40.1:5060",
];

/// The lab's TLS interconnect listeners (TCP).
pub const LAB_TLS_ADDRS: [&str; 2] = ["127.0.20.2:5061", "127.0.30.2:5061"];

/// Waits (bounded by `limit`) until no socket holds a lab SIP address: another lab test may
/// be running. A plain UDP bind probes each address and takes nothing away.
pub fn wait_lab_free(limit: Duration) -> R<()> {
    let end = Instant::now() + limit;
    let mut said = false;
    loop {
        let mut busy: Vec<&str> = LAB_SIP_ADDRS
            .into_iter()
            .filter(|a| std::net::UdpSocket::bind(a).is_err())
            .collect();
        busy.extend(
            LAB_TLS_ADDRS
                .into_iter()
                .filter(|a| std::net::TcpListener::bind(a).is_err()),
        );
        if busy.is_empty() {
            return Ok(());
        }
        if Instant::now() >= end {
            return Err(format!(
                "lab addresses still busy after {limit:?}: {busy:?}"
            ));
        }
        if !said {
            eprintln!(
                "lab addresses busy ({busy:?}; another lab test running?); waiting up to {limit:?}"
            );
            said = true;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// PIDs of every child we started, for the global watchdog.
static CHILDREN: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// Record a child process for the watchdog.
pub fn register_child(pid: u32) {
    CHILDREN.lock().unwrap().push(pid);
}

/// The child has ended (or was stopped): the watchdog no longer needs it.
pub fn forget_child(pid: u32) {
    CHILDREN.lock().unwrap().retain(|p| *p != pid);
}

/// Send `sig` (a name such as `TERM`) to `pid` with kill(1).
pub fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Wait up to `limit` for `c` to exit; true when it did.
pub fn wait_child(c: &mut Child, limit: Duration) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if let Ok(Some(_)) = c.try_wait() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Global watchdog, so a test binary never hangs CI: after `limit`, SIGKILL every
/// registered child and exit with status 3.
pub fn watchdog(label: &'static str, limit: Duration) {
    std::thread::spawn(move || {
        std::thread::sleep(limit);
        eprintln!("{label}: global timeout {limit:?} reached; terminating children");
        for pid in CHILDREN.lock().unwrap().iter() {
            signal(*pid, "KILL");
        }
        std::process::exit(3);
    });
}

/// target/tmp/`name`, created if needed.
pub fn work_dir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::create_dir_all(&d);
    d
}

pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// One running Palisade; dropping it stops it (SIGTERM, SIGKILL after 5 s).
pub struct Instance {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Instance {
    /// Start `palisade run --config config` with its stderr written to `log`, and wait
    /// (at most STARTUP_TIMEOUT) for its `palisade ready` line (every listener is up then).
    pub fn start(name: &str, config: &Path, log: PathBuf) -> R<Instance> {
        Instance::start_env(name, config, log, &[])
    }

    /// [`Instance::start`] with extra environment variables (e.g. `NOTIFY_SOCKET`).
    pub fn start_env(
        name: &str,
        config: &Path,
        log: PathBuf,
        env: &[(&str, String)],
    ) -> R<Instance> {
        if !config.exists() {
            return Err(format!("lab config {} does not exist", config.display()));
        }
        let mut child = Command::new(env!("CARGO_BIN_EXE_palisade"))
            .arg("run")
            .arg("--config")
            .arg(config)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawn palisade: {e}"))?;
        register_child(child.id());
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let log2 = log.clone();
        std::thread::spawn(move || {
            let mut f = std::fs::File::create(&log2).ok();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(f) = f.as_mut() {
                    let _ = writeln!(f, "{line}");
                }
                let _ = tx.send(line);
            }
        });
        let mut inst = Instance {
            name: name.to_string(),
            child,
            log,
        };
        let end = Instant::now() + STARTUP_TIMEOUT;
        let mut ready = false;
        while !ready {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!(
                    "{name}: no `palisade ready` line after {STARTUP_TIMEOUT:?}; log tail:\n{}",
                    inst.tail()
                ));
            }
            if let Ok(l) = rx.recv_timeout(left.min(Duration::from_millis(200))) {
                ready = l.contains("palisade ready");
            }
            if let Ok(Some(st)) = inst.child.try_wait() {
                std::thread::sleep(Duration::from_millis(100));
                return Err(format!(
                    "{name} exited during startup ({st}); log tail:\n{}",
                    inst.tail()
                ));
            }
        }
        Ok(inst)
    }

    /// Waits up to `limit` for the process to exit; its exit code (None: still running or
    /// killed by a signal).
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        if wait_child(&mut self.child, limit) {
            self.child.try_wait().ok().flatten().and_then(|s| s.code())
        } else {
            None
        }
    }

    /// The whole log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last 15 lines of the instance's log.
    pub fn tail(&self) -> String {
        let s = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// Ok while the process runs; otherwise its exit status and log tail.
    pub fn alive(&mut self) -> R<()> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(st)) => Err(format!(
                "{} died ({st}); log tail:\n{}",
                self.name,
                self.tail()
            )),
            Err(e) => Err(e.to_string()),
        }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let pid = self.child.id();
        if self.child.try_wait().ok().flatten().is_none() {
            signal(pid, "TERM");
            // The first SIGTERM drains (calls in progress may go on); a second one hangs up
            // what is left at once.
            if !wait_child(&mut self.child, Duration::from_secs(5)) {
                signal(pid, "TERM");
            }
            if !wait_child(&mut self.child, Duration::from_secs(5)) {
                eprintln!("{} ignored SIGTERM twice for 5 s; killing", self.name);
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
        forget_child(pid);
    }
}

//! Starting and stopping the two Palisade instances of the lab (as tests/lab.rs does),
//! and the kernel-mode copy of the lab configuration.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub type R<T> = Result<T, String>;

const LISTENERS_PER_INSTANCE: usize = 4;
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);

/// PIDs of every child we started, for the global watchdog.
pub static CHILDREN: Mutex<Vec<u32>> = Mutex::new(Vec::new());

pub fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

fn wait_child(c: &mut Child, limit: Duration) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if let Ok(Some(_)) = c.try_wait() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

pub fn work_dir() -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("webrtc");
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

pub struct Instance {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Instance {
    pub fn start(name: &str, config: &Path, tag: &str) -> R<Instance> {
        if !config.exists() {
            return Err(format!("lab config {} does not exist", config.display()));
        }
        let log = work_dir().join(format!("{tag}-{name}.log"));
        let mut child = Command::new(env!("CARGO_BIN_EXE_palisade"))
            .arg("run")
            .arg("--config")
            .arg(config)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawn palisade: {e}"))?;
        CHILDREN.lock().unwrap().push(child.id());
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
        let mut n = 0;
        while n < LISTENERS_PER_INSTANCE {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!(
                    "{name}: only {n}/{LISTENERS_PER_INSTANCE} `listening on` lines after {STARTUP_TIMEOUT:?}; log tail:\n{}",
                    inst.tail()
                ));
            }
            if let Ok(l) = rx.recv_timeout(left.min(Duration::from_millis(200))) {
                if l.contains("listening on") {
                    n += 1;
                }
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

    pub fn tail(&self) -> String {
        let s = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

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
            if !wait_child(&mut self.child, Duration::from_secs(5)) {
                eprintln!("{} ignored SIGTERM for 5 s; killing", self.name);
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
        CHILDREN.lock().unwrap().retain(|p| *p != pid);
    }
}

/// Both instances; dropping it stops both (also on panic).
pub struct Lab {
    pub a: Instance,
    pub b: Instance,
}

impl Lab {
    pub fn start(dir: &Path, tag: &str) -> R<Lab> {
        let a = Instance::start("operator-a", &dir.join("operator-a.toml"), tag)?;
        let b = Instance::start("operator-b", &dir.join("operator-b.toml"), tag)?;
        Ok(Lab { a, b })
    }

    pub fn alive(&mut self) -> R<()> {
        self.a.alive()?;
        self.b.alive()
    }
}

pub fn shipped_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/lab")
}

fn copy_dir(from: &Path, to: &Path) -> R<()> {
    std::fs::create_dir_all(to).map_err(|e| format!("mkdir {}: {e}", to.display()))?;
    for e in std::fs::read_dir(from).map_err(|e| format!("{}: {e}", from.display()))? {
        let e = e.map_err(|e| e.to_string())?;
        let (src, dst) = (e.path(), to.join(e.file_name()));
        if src.is_dir() {
            copy_dir(&src, &dst)?;
        } else {
            std::fs::copy(&src, &dst)
                .map_err(|e| format!("copy {} to {}: {e}", src.display(), dst.display()))?;
        }
    }
    Ok(())
}

/// `toml` with `kernel = true` in its `[media]` table (added if absent).
pub fn with_kernel_switch(toml: &str) -> String {
    let mut out = Vec::new();
    let mut in_media = false;
    let mut done = false;
    for line in toml.lines() {
        let t = line.split('#').next().unwrap_or("").trim();
        if t.starts_with('[') {
            in_media = t == "[media]";
            out.push(line.to_string());
            if in_media && !done {
                out.push("kernel = true".to_string());
                done = true;
            }
            continue;
        }
        if in_media && t.split('=').next().map(str::trim) == Some("kernel") {
            continue; // replaced by the line inserted under [media]
        }
        out.push(line.to_string());
    }
    let mut s = out.join("\n");
    s.push('\n');
    if !done {
        s.push_str("\n[media]\nkernel = true\n");
    }
    s
}

/// A copy of the shipped lab files in target/tmp/webrtc/lab-kernel with the kernel switch on.
pub fn kernel_dir() -> R<PathBuf> {
    let dir = work_dir().join("lab-kernel");
    let _ = std::fs::remove_dir_all(&dir);
    copy_dir(&shipped_dir(), &dir)?;
    for f in ["operator-a.toml", "operator-b.toml"] {
        let p = dir.join(f);
        let s = std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        std::fs::write(&p, with_kernel_switch(&s)).map_err(|e| e.to_string())?;
    }
    Ok(dir)
}

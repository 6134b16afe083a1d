//! A real authoritative DNS server for the tests: Knot DNS (`knotd`, Debian package `knot`,
//! installed by scripts/test) started on a loopback address with a copy of zone files, its
//! zones reloaded after a test rewrites them (`knotc zone-reload`), and stopped and resumed
//! (SIGSTOP / SIGCONT) to play a name server that no longer answers.

use super::instance::{forget_child, register_child, signal, wait_child};
use super::ua::R;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `knotd`/`knotc` from PATH, or from /usr/sbin where Debian puts them (not always on a
/// non-login PATH).
fn bin(name: &str) -> PathBuf {
    let sbin = Path::new("/usr/sbin").join(name);
    if sbin.exists() {
        sbin
    } else {
        PathBuf::from(name)
    }
}

pub fn available() -> bool {
    Command::new(bin("knotd"))
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// One running knotd; dropping it stops it.
pub struct Knot {
    child: Child,
    dir: PathBuf,
    pub zones: PathBuf,
}

impl Knot {
    /// Starts knotd on `listen` (`127.0.53.53@53` form is built here) serving each
    /// `(origin, file)` of `zone_src` copied into `dir/zones`; waits (bounded) until it runs.
    pub fn start(
        dir: &Path,
        listen: std::net::SocketAddr,
        zone_src: &Path,
        zones: &[(&str, &str)],
    ) -> R<Knot> {
        let _ = std::fs::remove_dir_all(dir);
        let zdir = dir.join("zones");
        std::fs::create_dir_all(dir.join("db")).map_err(|e| e.to_string())?;
        std::fs::create_dir_all(&zdir).map_err(|e| e.to_string())?;
        let mut conf = format!(
            "server:\n    listen: {}@{}\n    rundir: {d}\ndatabase:\n    storage: {d}/db\n\
             control:\n    listen: {d}/knot.sock\nlog:\n  - target: stderr\n    any: info\n\
             template:\n  - id: default\n    storage: {z}\n    zonefile-sync: -1\n\
             \x20   zonefile-load: whole\n    journal-content: none\nzone:\n",
            listen.ip(),
            listen.port(),
            d = dir.display(),
            z = zdir.display()
        );
        for (origin, file) in zones {
            std::fs::copy(zone_src.join(file), zdir.join(file))
                .map_err(|e| format!("copy zone {file}: {e}"))?;
            conf.push_str(&format!("  - domain: {origin}\n    file: {file}\n"));
        }
        let conf_path = dir.join("knot.conf");
        std::fs::write(&conf_path, conf).map_err(|e| e.to_string())?;
        let log = std::fs::File::create(dir.join("knot.log")).map_err(|e| e.to_string())?;
        let child = Command::new(bin("knotd"))
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("spawn knotd: {e}"))?;
        register_child(child.id());
        let mut k = Knot {
            child,
            dir: dir.to_path_buf(),
            zones: zdir,
        };
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(st)) = k.child.try_wait() {
                return Err(format!("knotd exited ({st}):\n{}", k.log()));
            }
            if k.ctl(&["zone-status"])
                .is_ok_and(|o| zones.iter().all(|(z, _)| o.contains(z)))
            {
                return Ok(k);
            }
            if Instant::now() >= end {
                return Err(format!("knotd not ready after 10 s:\n{}", k.log()));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("knot.log")).unwrap_or_default()
    }

    fn ctl(&self, args: &[&str]) -> R<String> {
        let out = Command::new(bin("knotc"))
            .arg("-s")
            .arg(self.dir.join("knot.sock"))
            .arg("-t")
            .arg("5")
            .args(args)
            .output()
            .map_err(|e| format!("knotc: {e}"))?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        if out.status.success() {
            Ok(text)
        } else {
            Err(format!("knotc {args:?}: {text}"))
        }
    }

    /// Replaces zone `file` of `origin` with `text` and makes knotd serve it (blocking reload).
    pub fn set_zone(&self, origin: &str, file: &str, text: &str) -> R<()> {
        std::fs::write(self.zones.join(file), text).map_err(|e| e.to_string())?;
        self.ctl(&["-b", "zone-reload", origin]).map(|_| ())
    }

    /// SIGSTOP: the server keeps its sockets but answers nothing.
    pub fn pause(&self) {
        signal(self.child.id(), "STOP");
    }

    pub fn resume(&self) {
        signal(self.child.id(), "CONT");
    }
}

impl Drop for Knot {
    fn drop(&mut self) {
        self.resume();
        signal(self.child.id(), "TERM");
        if !wait_child(&mut self.child, Duration::from_secs(5)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        forget_child(self.child.id());
    }
}

//! Interoperability with an independent SIP user agent: baresip (Debian package `baresip`)
//! on operator A's core (127.0.10.1:5060) calls baresip on operator B's core
//! (127.0.40.1:5060) through both Palisade borders of the shipped lab (`policies/lab`).
//! B answers automatically, each side sends a sine tone (A 440 Hz, B 880 Hz, baresip's
//! `ausine` source), A hangs up after a few seconds; the audio each side decoded (dumped to
//! WAV by baresip's `sndfile` filter) must be dominated by the other side's tone.
//!
//! harness = false: run with `cargo test --test interop_baresip` (optionally followed by
//! `-- NAME...`). Prints `test <name> ... ok|FAILED|skipped` and `N passed, N failed`.
//!
//! Scenarios (each with its own pair of instances):
//! - `baresip_udp_call_with_audio`: the call over UDP, lab files as shipped.
//! - `baresip_tcp_caller`: A's baresip sends its requests over TCP to 127.0.10.2:5060.
//!   baresip 1.0 (libre) does not bind its outgoing TCP connections to `sip_listen`, so
//!   they come from 127.0.0.1, which the shipped lab files accept as a core source
//!   (Palisade silently drops requests from any unconfigured source, as designed).
//!
//! Skipped when baresip (with the modules used here) is not installed; a failure with
//! PALISADE_REQUIRE_ROOT_TESTS=1 (scripts/test installs `baresip-core`).
//!
//! The lab uses fixed loopback addresses: the start waits (bounded) while another lab holds
//! them. Palisade runs with PALISADE_LOG=palisade=debug; when tcpdump is available the SIP
//! on `lo` is captured and its ladder is printed on failure. Logs, baresip configs, WAVs and
//! the capture are kept in target/tmp/interop_baresip. Only processes started here are
//! stopped, by their pid.

mod common;
#[allow(dead_code)]
#[path = "webrtc/tone.rs"]
mod tone;

use common::harness::{self, ensure, skip, Tally};
use common::instance::{self, Instance};
use common::labfiles;
use common::pcap;
use common::ua::R;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

const TO_CINDY: &str = "sip:cindy@operator-b.example";
const A_IP: &str = "127.0.10.1";
const B_IP: &str = "127.0.40.1";
const A_BORDER: &str = "127.0.10.2";
const B_BORDER: &str = "127.0.40.2";
const A_TONE: f64 = 440.0;
const B_TONE: f64 = 880.0;
/// How long the call runs once both sides report it established.
const TALK_FOR: Duration = Duration::from_secs(3);
/// At least this much decoded audio on each side (8 kHz samples).
const MIN_AUDIO_SAMPLES: usize = 8000 * 2;
const READY_LIMIT: Duration = Duration::from_secs(10);
const ESTABLISH_LIMIT: Duration = Duration::from_secs(15);
const HANGUP_LIMIT: Duration = Duration::from_secs(8);
/// baresip's own `-t` bound: it quits after this many seconds whatever happens.
const BARESIP_MAX_S: u64 = 45;
const BUSY_RETRY_FOR: Duration = Duration::from_secs(240);
const GLOBAL_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// Modules every instance loads (all in Debian's baresip-core 1.0).
const MODULES: [&str; 8] = [
    "stdio.so",
    "g711.so",
    "ausine.so",
    "aubridge.so",
    "sndfile.so",
    "uuid.so",
    "account.so",
    "menu.so",
];
const MODULE_DIRS: [&str; 4] = [
    "/usr/lib/baresip/modules",
    "/usr/lib/x86_64-linux-gnu/baresip/modules",
    "/usr/local/lib/baresip/modules",
    "/usr/lib64/baresip/modules",
];

fn work_dir() -> PathBuf {
    instance::work_dir("interop_baresip")
}

// ---------------------------------------------------------------- baresip availability

/// The module directory of an installed baresip holding every module in MODULES.
fn baresip_modules() -> R<PathBuf> {
    let out = Command::new("baresip")
        .arg("-h")
        .stdin(Stdio::null())
        .output();
    let out = match out {
        Ok(o) => o,
        Err(e) => {
            return skip(&format!(
                "baresip not installed ({e}); apt-get install baresip"
            ))
            .map(|_| PathBuf::new())
        }
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !text.contains("baresip") {
        return skip("`baresip -h` does not look like baresip").map(|_| PathBuf::new());
    }
    for d in MODULE_DIRS {
        let d = Path::new(d);
        if MODULES.iter().all(|m| d.join(m).exists()) {
            return Ok(d.to_path_buf());
        }
    }
    skip(&format!(
        "baresip installed but no module directory of {MODULE_DIRS:?} holds all of {MODULES:?}"
    ))
    .map(|_| PathBuf::new())
}

// ---------------------------------------------------------------- processes

/// A child process started here, its output in `log`; dropping it stops it (by pid).
struct Proc {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    log: PathBuf,
}

impl Proc {
    fn spawn(name: &str, cmd: &mut Command, log: PathBuf) -> R<Proc> {
        let f = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let f2 = f.try_clone().map_err(|e| e.to_string())?;
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(f)
            .stderr(f2)
            .spawn()
            .map_err(|e| format!("spawn {name}: {e}"))?;
        instance::register_child(child.id());
        let stdin = child.stdin.take();
        Ok(Proc {
            name: name.to_string(),
            child,
            stdin,
            log,
        })
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log).unwrap_or_default()).into_owned()
    }

    /// The log without baresip's status line updates, last `n` lines.
    fn tail(&self, n: usize) -> String {
        let t = self.text();
        let lines: Vec<&str> = t
            .lines()
            .filter(|l| !l.contains("audio=") && !l.starts_with("//"))
            .collect();
        lines[lines.len().saturating_sub(n)..].join("\n      ")
    }

    /// Wait (bounded) for `needle` in the log.
    fn wait_for(&mut self, needle: &str, limit: Duration) -> R<()> {
        let end = Instant::now() + limit;
        loop {
            if self.text().contains(needle) {
                return Ok(());
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                return Err(format!(
                    "{} exited ({st}) before `{needle}`; log tail:\n      {}",
                    self.name,
                    self.tail(20)
                ));
            }
            if Instant::now() >= end {
                return Err(format!(
                    "{}: no `{needle}` within {limit:?}; log tail:\n      {}",
                    self.name,
                    self.tail(20)
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Type a command line on its stdin (baresip's stdio UI).
    fn send(&mut self, line: &str) -> R<()> {
        let w = self.stdin.as_mut().ok_or("stdin closed")?;
        w.write_all(format!("{line}\n").as_bytes())
            .and_then(|_| w.flush())
            .map_err(|e| format!("{}: write `{line}`: {e}", self.name))
    }

    /// Ask it to quit (`quit_cmd` on stdin, if any), then SIGTERM, then SIGKILL; bounded.
    fn stop(&mut self, quit_cmd: Option<&str>) {
        let pid = self.child.id();
        if self.child.try_wait().ok().flatten().is_none() {
            if let Some(q) = quit_cmd {
                let _ = self.send(q);
            }
            if !instance::wait_child(&mut self.child, Duration::from_secs(3)) {
                instance::signal(pid, "TERM");
                if !instance::wait_child(&mut self.child, Duration::from_secs(3)) {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                }
            }
        }
        self.stdin = None;
        instance::forget_child(pid);
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop(None);
    }
}

// ---------------------------------------------------------------- capture

/// tcpdump of SIP on `lo` (best effort: None without tcpdump or permission).
struct Capture {
    proc: Proc,
    file: PathBuf,
}

impl Capture {
    fn start(dir: &Path) -> Option<Capture> {
        let file = dir.join("sip.pcap");
        let _ = std::fs::remove_file(&file);
        let mut cmd = Command::new("tcpdump");
        cmd.args(["-i", "lo", "--immediate-mode", "-U", "-n", "-s", "0", "-w"])
            .arg(&file)
            .arg("port 5060");
        let mut proc = Proc::spawn("tcpdump", &mut cmd, dir.join("tcpdump.log")).ok()?;
        match proc.wait_for("listening on", Duration::from_secs(5)) {
            Ok(()) => Some(Capture { proc, file }),
            Err(e) => {
                eprintln!("no SIP capture: {e}");
                None
            }
        }
    }

    /// Stop tcpdump (SIGINT flushes the file) and read the SIP ladder.
    fn ladder(mut self) -> R<Vec<String>> {
        let pid = self.proc.child.id();
        // --immediate-mode: no 1 s packet-block delay; still let the last packets land
        std::thread::sleep(Duration::from_millis(500));
        instance::signal(pid, "INT");
        let _ = instance::wait_child(&mut self.proc.child, Duration::from_secs(3));
        self.proc.stop(None);
        let data =
            std::fs::read(&self.file).map_err(|e| format!("{}: {e}", self.file.display()))?;
        let pkts = pcap::read_pcap(&data)?;
        Ok(pkts
            .iter()
            .filter(|p| !p.payload.is_empty())
            .map(|p| {
                let first = String::from_utf8_lossy(&p.payload)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_string();
                format!(
                    "{}:{} -> {}:{} {} {first}",
                    ip(p.src),
                    p.sport,
                    ip(p.dst),
                    p.dport,
                    if p.tcp { "tcp" } else { "udp" },
                )
            })
            .collect())
    }
}

fn ip(a: [u8; 4]) -> String {
    format!("{}.{}.{}.{}", a[0], a[1], a[2], a[3])
}

// ---------------------------------------------------------------- lab

/// The lab files as shipped: they accept 127.0.0.1 as a core source, which baresip's unbound
/// TCP connections come from.
fn lab_files(_dir: &Path, _tcp: bool) -> R<PathBuf> {
    Ok(labfiles::shipped_dir())
}

// ---------------------------------------------------------------- baresip config

/// A baresip config directory for one side: `config`, `accounts`, and `rec/` for the
/// sndfile dumps.
fn baresip_dir(dir: &Path, modules: &Path, ip: &str, tone: f64, account: &str) -> R<PathBuf> {
    let rec = dir.join("rec");
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(&rec).map_err(|e| format!("mkdir {}: {e}", rec.display()))?;
    let mut config = format!(
        "# generated by tests/interop_baresip.rs\n\
         module_path {}\n\
         poll_method epoll\n\
         sip_listen {ip}:5060\n\
         call_local_timeout 20\n\
         call_max_calls 1\n\
         # no sound card: the decoded audio goes to an aubridge device nobody reads, the\n\
         # sndfile filter dumps it (and the encoded side) to rec/dump-*-dec.wav / -enc.wav\n\
         audio_player aubridge,none\n\
         audio_alert aubridge,none\n\
         audio_source ausine,{tone}\n\
         ausrc_srate 48000\n\
         ausrc_channels 2\n\
         audio_level no\n\
         rtp_stats no\n\
         rtcp_mux no\n\
         jitter_buffer_delay 5-10\n\
         snd_path {}\n",
        modules.display(),
        rec.display()
    );
    for m in MODULES {
        let kind = match m {
            "uuid.so" | "account.so" => "module_tmp",
            "menu.so" => "module_app",
            _ => "module",
        };
        config.push_str(&format!("{kind} {m}\n"));
    }
    std::fs::write(dir.join("config"), config).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("accounts"), format!("{account}\n")).map_err(|e| e.to_string())?;
    Ok(dir.to_path_buf())
}

fn baresip(name: &str, cfg: &Path, ip: &str, extra: &[&str], log: PathBuf) -> R<Proc> {
    let mut cmd = Command::new("baresip");
    cmd.arg("-f")
        .arg(cfg)
        .args(["-n", ip, "-t", &BARESIP_MAX_S.to_string()])
        .args(extra)
        .current_dir(cfg);
    let mut p = Proc::spawn(name, &mut cmd, log)?;
    p.wait_for("baresip is ready", READY_LIMIT)?;
    Ok(p)
}

// ---------------------------------------------------------------- audio

/// 16-bit mono PCM samples and the rate of a WAV file.
fn read_wav(path: &Path) -> R<(u32, Vec<i16>)> {
    let d = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if d.len() < 12 || &d[0..4] != b"RIFF" || &d[8..12] != b"WAVE" {
        return Err(format!("{}: not a WAV file", path.display()));
    }
    let (mut pos, mut rate, mut fmt_ok) = (12usize, 0u32, false);
    while pos + 8 <= d.len() {
        let id = &d[pos..pos + 4];
        let len = u32::from_le_bytes([d[pos + 4], d[pos + 5], d[pos + 6], d[pos + 7]]) as usize;
        let body = &d[pos + 8..(pos + 8 + len).min(d.len())];
        if id == b"fmt " && body.len() >= 16 {
            let format = u16::from_le_bytes([body[0], body[1]]);
            let channels = u16::from_le_bytes([body[2], body[3]]);
            rate = u32::from_le_bytes([body[4], body[5], body[6], body[7]]);
            let bits = u16::from_le_bytes([body[14], body[15]]);
            fmt_ok = format == 1 && channels == 1 && bits == 16;
            if !fmt_ok {
                return Err(format!(
                    "{}: format {format}, {channels} channels, {bits} bits (want PCM mono 16)",
                    path.display()
                ));
            }
        } else if id == b"data" && fmt_ok {
            let s = body
                .chunks_exact(2)
                .map(|c| i16::from_le_bytes([c[0], c[1]]))
                .collect();
            return Ok((rate, s));
        }
        pos += 8 + len + (len & 1);
    }
    Err(format!("{}: no fmt/data chunk", path.display()))
}

/// The audio a side decoded (all its `*-dec.wav` dumps, in name order), at 8 kHz.
fn decoded_audio(rec: &Path) -> R<Vec<i16>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(rec)
        .map_err(|e| format!("{}: {e}", rec.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with("-dec.wav"))
        .collect();
    files.sort();
    ensure(!files.is_empty(), || {
        format!("no decoded-audio dump in {}", rec.display())
    })?;
    let mut all = Vec::new();
    for f in files {
        let (rate, s) = read_wav(&f)?;
        ensure(rate == 8000, || {
            format!("{}: {rate} Hz, want 8000 (PCMU)", f.display())
        })?;
        all.extend(s);
    }
    Ok(all)
}

// ---------------------------------------------------------------- scenarios

fn scenarios() -> Vec<(&'static str, bool)> {
    vec![
        ("baresip_udp_call_with_audio", false),
        ("baresip_tcp_caller", true),
    ]
}

fn run_one(name: &str, tcp: bool) -> R<()> {
    let modules = baresip_modules()?;
    let dir = work_dir().join(name);
    let _ = std::fs::create_dir_all(&dir);
    let lab = lab_files(&dir, tcp)?;
    instance::wait_lab_free(BUSY_RETRY_FOR)?;
    let start = |inst: &str| {
        Instance::start(
            inst,
            &lab.join(format!("{inst}.toml")),
            dir.join(format!("{inst}.log")),
        )
    };
    let mut pa = start("operator-a")?;
    let mut pb = start("operator-b")?;
    let cap = Capture::start(&dir);
    let res = call(&dir, &modules, tcp);
    let ladder = cap.map(|c| c.ladder());
    let alive = pa.alive().and(pb.alive());
    drop((pa, pb));
    let ladder_text = match &ladder {
        Some(Ok(l)) => format!("\n    SIP on lo:\n      {}", l.join("\n      ")),
        Some(Err(e)) => format!("\n    (capture unreadable: {e})"),
        None => String::new(),
    };
    if let Some(Ok(l)) = &ladder {
        for x in l {
            println!("    {x}");
        }
    }
    res.map_err(|e| format!("{e}{ladder_text}"))?;
    alive?;
    if let Some(Ok(l)) = &ladder {
        // The INVITE reached A's border over the transport under test.
        let via = if tcp {
            format!("-> {A_BORDER}:5060 tcp INVITE ")
        } else {
            format!("{A_IP}:5060 -> {A_BORDER}:5060 udp INVITE ")
        };
        ensure(l.iter().any(|x| x.contains(&via)), || {
            format!("no `{via}` in the capture{ladder_text}")
        })?;
        // The hangup crossed both borders and reached B's core.
        ensure(
            l.iter().any(|x| {
                x.starts_with(&format!("{B_BORDER}:5060 -> {B_IP}:5060")) && x.contains(" BYE ")
            }),
            || format!("no BYE from B's border to B's core{ladder_text}"),
        )?;
    }
    Ok(())
}

/// The call between the two baresips through the running lab.
fn call(dir: &Path, modules: &Path, tcp: bool) -> R<()> {
    let transport = if tcp { ";transport=tcp" } else { "" };
    let a_account = format!(
        "<sip:alice@operator-a.example>;regint=0;audio_codecs=PCMU;outbound=\"sip:{A_BORDER}:5060{transport}\""
    );
    let b_account = "<sip:cindy@operator-b.example>;regint=0;audio_codecs=PCMU;answermode=auto";
    let a_dir = baresip_dir(&dir.join("baresip-a"), modules, A_IP, A_TONE, &a_account)?;
    let b_dir = baresip_dir(&dir.join("baresip-b"), modules, B_IP, B_TONE, b_account)?;
    let mut b = baresip("baresip-b", &b_dir, B_IP, &[], dir.join("baresip-b.log"))?;
    let mut a = baresip(
        "baresip-a",
        &a_dir,
        A_IP,
        &["-e", &format!("/dial {TO_CINDY}")],
        dir.join("baresip-a.log"),
    )?;
    let res = (|| -> R<()> {
        a.wait_for("Call established", ESTABLISH_LIMIT)?;
        b.wait_for("Call established", ESTABLISH_LIMIT)?;
        // Media is anchored: each side receives RTP from its own border's relay.
        a.wait_for(
            &format!("receiving from {A_BORDER}:"),
            Duration::from_secs(5),
        )?;
        b.wait_for(
            &format!("receiving from {B_BORDER}:"),
            Duration::from_secs(5),
        )?;
        std::thread::sleep(TALK_FOR);
        a.send("/hangup")?;
        a.wait_for(&format!("Call with {TO_CINDY} terminated"), HANGUP_LIMIT)?;
        b.wait_for(
            "Call with sip:alice@operator-a.example terminated",
            HANGUP_LIMIT,
        )?;
        Ok(())
    })();
    a.stop(Some("/quit"));
    b.stop(Some("/quit"));
    res?;
    let heard_by_b = decoded_audio(&b_dir.join("rec"))?;
    let heard_by_a = decoded_audio(&a_dir.join("rec"))?;
    let b_sum = tone::check_dominant(&heard_by_b, A_TONE, B_TONE, 10.0, MIN_AUDIO_SAMPLES)
        .map_err(|e| format!("B (cindy) did not hear A's tone: {e}"))?;
    let a_sum = tone::check_dominant(&heard_by_a, B_TONE, A_TONE, 10.0, MIN_AUDIO_SAMPLES)
        .map_err(|e| format!("A (alice) did not hear B's tone: {e}"))?;
    println!("    B heard: {b_sum}");
    println!("    A heard: {a_sum}");
    Ok(())
}

fn main() {
    // Inherited by the Palisade instances.
    std::env::set_var("PALISADE_LOG", "palisade=debug");
    let selected = harness::select(scenarios());
    instance::watchdog("interop_baresip", GLOBAL_TIMEOUT);
    println!("\nrunning {} baresip interop scenarios", selected.len());
    let mut tally = Tally::new();
    for (name, tcp) in &selected {
        tally.run(name, || run_one(name, *tcp));
    }
    println!("\nlogs: {}", work_dir().display());
    std::process::exit(tally.finish());
}

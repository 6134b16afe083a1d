//! The lab's interconnect as the peer sees it: a tcpdump capture of what passes between the
//! two borders' peer-side addresses (127.0.20.2 and 127.0.30.2), decrypted with the key log
//! the instances write (`SSLKEYLOGFILE`), and the checks that nothing of either home network
//! crossed it. `tests/lab.rs` runs one capture over all its scenarios; `tests/case2.rs` one per
//! scenario (each starts its own lab).

use super::instance::{forget_child, is_root, register_child, signal, wait_child};
use super::pcap;
use super::ua::R;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The borders' peer-side addresses: the only ones the interconnect may name.
pub const BORDERS: [&str; 2] = ["127.0.20.2", "127.0.30.2"];
/// The port of the TLS interconnect (both borders listen on it).
pub const TLS_PORT: u16 = 5061;

/// Both home networks (cores and the borders' home sides) and their host names: none may
/// appear on the interconnect.
pub const HOME_NEEDLES: [&str; 4] = [
    "127.0.10.",
    "127.0.40.",
    "operator-a-core",
    "operator-b-core",
];

pub fn have(cmd: &str, arg: &str) -> bool {
    Command::new(cmd)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// Why an interconnect capture cannot be taken here, if it cannot.
pub fn unavailable() -> Option<String> {
    if !is_root() {
        Some("the interconnect capture needs root (tcpdump on lo)".into())
    } else if !have("tcpdump", "--version") {
        Some("tcpdump not installed".into())
    } else if !have("tshark", "--version") {
        Some("tshark not installed: cannot decrypt the TLS interconnect".into())
    } else {
        None
    }
}

/// A running tcpdump of the interconnect into a pcap file; stopped on drop.
pub struct Capture {
    child: Option<Child>,
    pub file: PathBuf,
}

impl Capture {
    /// Starts capturing into `file` (replaced), returning once tcpdump says it listens
    /// (bounded: 5 s, after which the packet count check guards against an empty capture).
    pub fn start(file: PathBuf) -> R<Capture> {
        let _ = std::fs::remove_file(&file);
        let filter = format!("host {} or host {}", BORDERS[0], BORDERS[1]);
        // --immediate-mode: without it libpcap hands packets over a ring block at a time, and
        // the block still filling when tcpdump is stopped (the last second: the BYEs) is lost.
        let mut child = Command::new("tcpdump")
            .args(["-i", "lo", "--immediate-mode", "-U", "-s", "0", "-w"])
            .arg(&file)
            .arg(filter)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawn tcpdump: {e}"))?;
        register_child(child.id());
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || {
            for l in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        let end = Instant::now() + Duration::from_secs(5);
        loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(l) if l.contains("listening on") => break,
                _ => {}
            }
            if let Ok(Some(st)) = child.try_wait() {
                return Err(format!("tcpdump exited: {st}"));
            }
            if Instant::now() > end {
                break;
            }
        }
        Ok(Capture {
            child: Some(child),
            file,
        })
    }

    /// Stops tcpdump (after a moment, so the last packets are written).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            std::thread::sleep(Duration::from_millis(300));
            signal(c.id(), "INT");
            if !wait_child(&mut c, Duration::from_secs(5)) {
                let _ = c.kill();
                let _ = c.wait();
            }
            forget_child(c.id());
        }
    }

    /// Stops the capture and reads it: what crossed, the TLS part decrypted with `keylog`.
    pub fn finish(&mut self, keylog: &Path) -> R<Interconnect> {
        self.stop();
        Interconnect::read(&self.file, keylog)
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What crossed the interconnect: one byte stream per connection (or UDP flow) and direction.
pub struct Interconnect {
    pub packets: usize,
    /// SIP messages in it (plain packets and decrypted TLS).
    pub sip: usize,
    pub streams: Vec<(String, Vec<u8>)>,
}

impl Interconnect {
    pub fn read(file: &Path, keylog: &Path) -> R<Interconnect> {
        let data = std::fs::read(file).map_err(|e| format!("read {}: {e}", file.display()))?;
        let pkts = pcap::read_pcap(&data)?;
        let decrypted = pcap::tls_streams(file, keylog, TLS_PORT)?;
        let sip = pcap::sip_packet_count(&pkts) + pcap::sip_messages_in(&decrypted);
        let mut streams = pcap::streams(&pkts);
        // The TLS connections' ciphertext is searched in its decrypted form only: random bytes
        // can hold a line that looks like `m=...` (a false "unanchored SDP").
        let tls = format!(":{TLS_PORT}");
        streams.retain(|(name, _)| !(name.ends_with(" tcp") && name.contains(&tls)));
        streams.extend(decrypted);
        Ok(Interconnect {
            packets: pkts.len(),
            sip,
            streams,
        })
    }

    /// An error unless at least `min` SIP messages crossed (else every check is vacuous).
    pub fn holds_sip(&self, min: usize) -> R<()> {
        if self.sip >= min {
            return Ok(());
        }
        Err(format!(
            "the interconnect capture holds only {} SIP messages ({} packets, {} streams); the check would be vacuous",
            self.sip,
            self.packets,
            self.streams.len()
        ))
    }

    /// The request methods that crossed (start lines `METHOD uri SIP/2.0`).
    pub fn methods(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for (_, d) in &self.streams {
            for line in String::from_utf8_lossy(d).split("\r\n") {
                let Some(rest) = line.strip_suffix(" SIP/2.0") else {
                    continue;
                };
                if let Some((m, _)) = rest.split_once(' ') {
                    if !m.is_empty() && m.bytes().all(|b| b.is_ascii_uppercase()) {
                        out.insert(m.to_string());
                    }
                }
            }
        }
        out
    }

    /// Every leak: a needle (an address or host of a home network, an identifier a test user
    /// agent made) anywhere in what crossed, and every SDP line naming anything but a border's
    /// relay (`relay_ports` is the lab's relay port range).
    pub fn leaks(&self, needles: &[String], relay_ports: (u16, u16)) -> Vec<String> {
        let mut hits = pcap::find_leaks(&self.streams, needles);
        hits.extend(sdp_not_anchored(&self.streams, relay_ports));
        hits
    }
}

/// The needles every interconnect check searches for: both home networks and `ids`.
pub fn needles(ids: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut v: Vec<String> = HOME_NEEDLES.iter().map(|s| s.to_string()).collect();
    v.extend(ids);
    v
}

/// SDP lines in `streams` that name anything but a border's relay: media and RTCP ports outside
/// the relay range, connection/origin addresses and ICE candidates other than the borders'.
pub fn sdp_not_anchored(streams: &[(String, Vec<u8>)], (lo, hi): (u16, u16)) -> Vec<String> {
    let relay_port = |p: &str| {
        p.parse::<u16>()
            .is_ok_and(|p| p == 0 || (lo..=hi).contains(&p))
    };
    let border_ip = |a: &str| BORDERS.contains(&a);
    let mut bad = Vec::new();
    for (name, data) in streams {
        let text = String::from_utf8_lossy(data);
        for line in text.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            let ok = if let Some(rest) = line.strip_prefix("m=") {
                rest.split_whitespace()
                    .nth(1)
                    .is_some_and(|p| relay_port(p.split('/').next().unwrap_or("")))
            } else if let Some(rest) = line.strip_prefix("a=rtcp:") {
                let parts: Vec<&str> = rest.split_whitespace().collect();
                parts.first().is_some_and(|p| relay_port(p))
                    && parts.get(2).is_none_or(|a| border_ip(a))
            } else if line.starts_with("c=") || line.starts_with("o=") {
                f.last().is_some_and(|a| border_ip(a))
            } else if line.starts_with("a=candidate:") {
                f.get(4).is_some_and(|a| border_ip(a)) && f.get(5).is_some_and(|p| relay_port(p))
            } else {
                true
            };
            if !ok {
                bad.push(format!(
                    "{name}: SDP line not anchored on the border: {line}"
                ));
            }
        }
    }
    bad
}

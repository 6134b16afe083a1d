//! Palisade behind and in front of a real record-routing proxy (issue #14): Kamailio (Debian
//! package `kamailio`, configured here) as the S-CSCF stand-in of operator A's core, between the
//! caller and Palisade A, and as a proxy in front of Palisade B's core side. Both borders run
//! from `tests/fixtures/kamailio/` on their own loopback addresses (no clash with the lab):
//!
//! ```text
//!  caller (SIPp UAC) 127.0.71.1 ─► Kamailio-A 127.0.71.3 ─► Palisade A home 127.0.71.2
//!                      Palisade A interconnect 127.0.72.2 ◄─► Palisade B interconnect 127.0.72.3
//!  callee (SIPp UAS) 127.0.73.1 ◄─ Kamailio-B 127.0.73.3 ◄─ Palisade B home 127.0.73.2
//! ```
//!
//! Each Kamailio record-routes initial INVITEs, relays them to a fixed next hop and relays
//! in-dialog requests only when `loose_route()` finds its own Route header (anything else gets
//! 404), so an ACK or BYE logged as relayed proves the sender used the route set (RFC 3261
//! §12.1.1/§12.1.2). Every relayed request and every reply is written to Kamailio's stderr as a
//! `KAMTRACE` line, which the scenarios read:
//! - `caller_hangs_up`: the caller's ACK and BYE pass Kamailio-A (from the caller) and
//!   Kamailio-B (from Palisade B), the 200s to INVITE and BYE pass both.
//! - `callee_hangs_up`: the ACK as above; the callee's BYE passes Kamailio-B (from the callee)
//!   and Kamailio-A (from Palisade A, toward the caller).
//!
//! harness = false: `cargo test --test kamailio [-- NAME...]`. Without `kamailio` or `sipp`
//! the scenarios are skipped; PALISADE_REQUIRE_ROOT_TESTS=1 makes a skip a failure.

mod common;
#[path = "sipp/runner.rs"]
#[allow(dead_code)]
mod sipp_runner;

use common::harness::{self, ensure, skip, Tally};
use common::instance::{self, forget_child, register_child, signal, wait_child, Instance};
use common::ua::R;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CALLER_IP: &str = "127.0.71.1";
const A_HOME_IP: &str = "127.0.71.2";
const KAM_A_IP: &str = "127.0.71.3";
const CALLEE_IP: &str = "127.0.73.1";
const B_HOME_IP: &str = "127.0.73.2";
const KAM_B_IP: &str = "127.0.73.3";
const CALLS: u32 = 5;
const GLOBAL_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// Bound on the wait for Kamailio's log lines after SIPp ended.
const LOG_WAIT: Duration = Duration::from_secs(5);

fn work_dir() -> PathBuf {
    instance::work_dir("kamailio")
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kamailio")
}

fn kamailio_available() -> bool {
    Command::new("kamailio")
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A minimal record-routing proxy on `ip`:5060 relaying initial requests to `next_hop`.
fn kamailio_cfg(ip: &str, next_hop: &str) -> String {
    format!(
        r#"#!KAMAILIO
debug=2
log_stderror=yes
children=2
listen=udp:{ip}:5060
disable_tcp=yes
dns=no
rev_dns=no
auto_aliases=no

loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "textops.so"
loadmodule "maxfwd.so"
loadmodule "siputils.so"
loadmodule "xlog.so"
loadmodule "pv.so"

modparam("rr", "append_fromtag", 1)

request_route {{
    if (!mf_process_maxfwd_header("10")) {{
        sl_send_reply("483", "Too Many Hops");
        exit;
    }}
    if (has_totag()) {{
        if (loose_route()) {{
            xlog("L_NOTICE", "KAMTRACE in-dialog $rm call-id=$ci src=$si:$sp ruri=$ru\n");
            if (!t_relay()) {{
                sl_reply_error();
            }}
            exit;
        }}
        if ($rm == "ACK" && t_check_trans()) {{
            t_relay();
            exit;
        }}
        xlog("L_NOTICE", "KAMTRACE no-route $rm call-id=$ci src=$si:$sp ruri=$ru\n");
        sl_send_reply("404", "Not here");
        exit;
    }}
    if ($rm == "CANCEL") {{
        if (t_check_trans()) {{
            t_relay();
        }}
        exit;
    }}
    if ($rm == "INVITE") {{
        record_route();
    }}
    $du = "sip:{next_hop}";
    xlog("L_NOTICE", "KAMTRACE initial $rm call-id=$ci src=$si:$sp du=$du\n");
    if (!t_relay()) {{
        sl_reply_error();
    }}
}}

onreply_route {{
    xlog("L_NOTICE", "KAMTRACE reply $rs $rm call-id=$ci src=$si:$sp\n");
}}
"#
    )
}

/// One `KAMTRACE` line: kind (`initial`, `in-dialog`, `no-route`, `reply`), method, status
/// (replies), Call-ID and source IP.
#[derive(Debug, Clone)]
struct Trace {
    kind: String,
    method: String,
    status: u16,
    call_id: String,
    src_ip: String,
}

fn parse_trace(line: &str) -> Option<Trace> {
    let rest = &line[line.find("KAMTRACE ")? + 9..];
    let mut f = rest.split_whitespace();
    let kind = f.next()?.to_string();
    let status = if kind == "reply" {
        f.next()?.parse().ok()?
    } else {
        0
    };
    let method = f.next()?.to_string();
    let mut call_id = String::new();
    let mut src_ip = String::new();
    for w in f {
        if let Some(v) = w.strip_prefix("call-id=") {
            call_id = v.to_string();
        } else if let Some(v) = w.strip_prefix("src=") {
            src_ip = v.rsplit_once(':').map_or(v, |(ip, _)| ip).to_string();
        }
    }
    Some(Trace {
        kind,
        method,
        status,
        call_id,
        src_ip,
    })
}

/// A running Kamailio (`kamailio -DD -E`); dropping it stops it (SIGTERM to its main process,
/// which stops its workers; SIGKILL after 5 s).
struct Kamailio {
    name: String,
    child: Option<Child>,
    lines: Arc<Mutex<Vec<String>>>,
    log: PathBuf,
}

impl Kamailio {
    fn start(name: &str, ip: &str, next_hop: &str) -> R<Kamailio> {
        let dir = work_dir().join(name);
        std::fs::create_dir_all(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
        let cfg = dir.join("kamailio.cfg");
        std::fs::write(&cfg, kamailio_cfg(ip, next_hop))
            .map_err(|e| format!("write {}: {e}", cfg.display()))?;
        let log = dir.join("kamailio.log");
        let mut child = Command::new("kamailio")
            .args(["-DD", "-E", "-m", "32", "-M", "4", "-f"])
            .arg(&cfg)
            .arg("-Y")
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawn kamailio: {e}"))?;
        register_child(child.id());
        let stderr = child.stderr.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (lines2, log2) = (lines.clone(), log.clone());
        std::thread::spawn(move || {
            let mut f = std::fs::File::create(&log2).ok();
            for l in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(f) = f.as_mut() {
                    let _ = writeln!(f, "{l}");
                }
                lines2.lock().unwrap().push(l);
            }
        });
        let mut k = Kamailio {
            name: name.to_string(),
            child: Some(child),
            lines,
            log,
        };
        // Up once its UDP socket is bound (a probe bind fails), bounded.
        let addr = format!("{ip}:5060");
        let end = Instant::now() + Duration::from_secs(10);
        while std::net::UdpSocket::bind(&addr).is_ok() {
            if let Some(Ok(Some(st))) = k.child.as_mut().map(Child::try_wait) {
                std::thread::sleep(Duration::from_millis(100));
                return Err(format!("{name} exited at start ({st}):\n{}", k.tail()));
            }
            if Instant::now() >= end {
                return Err(format!("{name} did not bind {addr} in 10 s:\n{}", k.tail()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(k)
    }

    /// The last 15 lines of its log, and where the whole log is.
    fn tail(&self) -> String {
        let l = self.lines.lock().unwrap();
        format!(
            "{}\n(log: {})",
            l[l.len().saturating_sub(15)..].join("\n"),
            self.log.display()
        )
    }

    fn line_count(&self) -> usize {
        self.lines.lock().unwrap().len()
    }

    /// The KAMTRACE lines logged after the first `from` lines.
    fn traces_since(&self, from: usize) -> Vec<Trace> {
        let l = self.lines.lock().unwrap();
        l.iter().skip(from).filter_map(|s| parse_trace(s)).collect()
    }

    fn alive(&mut self) -> R<()> {
        match self.child.as_mut().map(Child::try_wait) {
            Some(Ok(None)) => Ok(()),
            _ => Err(format!("{} is not running:\n{}", self.name, self.tail())),
        }
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let pid = c.id();
            if c.try_wait().ok().flatten().is_none() {
                signal(pid, "TERM");
                if !wait_child(&mut c, Duration::from_secs(5)) {
                    eprintln!("{} ignored SIGTERM for 5 s; killing", self.name);
                    let _ = c.kill();
                    let _ = c.wait();
                }
            }
            forget_child(pid);
        }
    }
}

struct Setup {
    kam_a: Kamailio,
    kam_b: Kamailio,
    a: Instance,
    b: Instance,
}

impl Setup {
    fn start() -> R<Setup> {
        let kam_a = Kamailio::start("kamailio-a", KAM_A_IP, &format!("{A_HOME_IP}:5060"))?;
        let kam_b = Kamailio::start("kamailio-b", KAM_B_IP, &format!("{CALLEE_IP}:5060"))?;
        let dir = fixtures();
        let a = Instance::start(
            "palisade-a",
            &dir.join("operator-a.toml"),
            work_dir().join("palisade-a.log"),
        )?;
        let b = Instance::start(
            "palisade-b",
            &dir.join("operator-b.toml"),
            work_dir().join("palisade-b.log"),
        )?;
        Ok(Setup { kam_a, kam_b, a, b })
    }

    fn alive(&mut self) -> R<()> {
        self.kam_a.alive()?;
        self.kam_b.alive()?;
        self.a.alive()?;
        self.b.alive()
    }
}

/// Per Call-ID: the (kind, method, status, source IP) of every trace.
fn by_call(traces: &[Trace]) -> BTreeMap<String, Vec<&Trace>> {
    let mut m: BTreeMap<String, Vec<&Trace>> = BTreeMap::new();
    for t in traces {
        m.entry(t.call_id.clone()).or_default().push(t);
    }
    m
}

/// What one Kamailio must have seen of each of the `CALLS` calls: the INVITE relayed as an
/// initial request from `invite_from`, its 200, the ACK relayed by loose routing from
/// `invite_from`, the BYE relayed by loose routing from `bye_from`, and the BYE's 200.
fn check_kamailio(
    name: &str,
    traces: &[Trace],
    invite_from: &str,
    bye_from: &str,
) -> Result<(), Vec<String>> {
    let mut problems = Vec::new();
    let unrouted: BTreeSet<String> = traces
        .iter()
        .filter(|t| t.kind == "no-route")
        .map(|t| format!("{} of {} from {}", t.method, t.call_id, t.src_ip))
        .collect();
    for u in unrouted {
        problems.push(format!(
            "{name}: in-dialog {u} carried no Route to it (404)"
        ));
    }
    let calls = by_call(traces);
    let invited: BTreeSet<&String> = calls
        .iter()
        .filter(|(_, ts)| {
            ts.iter()
                .any(|t| t.kind == "initial" && t.method == "INVITE" && t.src_ip == invite_from)
        })
        .map(|(c, _)| c)
        .collect();
    if invited.len() != CALLS as usize {
        problems.push(format!(
            "{name}: relayed {} INVITEs from {invite_from}, want {CALLS}",
            invited.len()
        ));
    }
    for cid in invited {
        let ts = &calls[cid];
        let has = |kind: &str, method: &str, status: u16, src: Option<&str>| {
            ts.iter().any(|t| {
                t.kind == kind
                    && t.method == method
                    && t.status == status
                    && src.is_none_or(|s| t.src_ip == s)
            })
        };
        let wants = [
            ("reply", "INVITE", 200, None, "200 to the INVITE"),
            (
                "in-dialog",
                "ACK",
                0,
                Some(invite_from),
                "ACK (loose-routed) from the caller's side",
            ),
            (
                "in-dialog",
                "BYE",
                0,
                Some(bye_from),
                "BYE (loose-routed) from the hanging-up side",
            ),
            ("reply", "BYE", 200, None, "200 to the BYE"),
        ];
        for (kind, method, status, src, what) in wants {
            if !has(kind, method, status, src) {
                problems.push(format!(
                    "{name}: call {cid}: no {what}{}; saw {:?}",
                    src.map(|s| format!(" ({s})")).unwrap_or_default(),
                    ts.iter()
                        .map(|t| format!("{} {} {} from {}", t.kind, t.method, t.status, t.src_ip))
                        .collect::<BTreeSet<_>>()
                ));
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

fn through_kamailio(s: &mut Setup, caller_hangs_up: bool) -> R<()> {
    let (label, uac, uas) = if caller_hangs_up {
        ("caller-bye", "uac.xml", "uas_record_route.xml")
    } else {
        ("callee-bye", "uac_callee_bye.xml", "uas_callee_bye.xml")
    };
    let (from_a, from_b) = (s.kam_a.line_count(), s.kam_b.line_count());
    let r = sipp_runner::SippRun {
        uac_ip: CALLER_IP.into(),
        uac_port: 5060,
        target: format!("{KAM_A_IP}:5060"),
        uas_ip: CALLEE_IP.into(),
        uas_port: 5060,
        service: "cindy".into(),
        calls: CALLS,
        rate: 10,
        limit: CALLS,
        work: work_dir().join(format!("sipp-{label}")),
        timeout: Duration::from_secs(30),
    };
    let sipp = sipp_runner::run_pair(&r, uac, uas);
    // B's side hears the caller's side first: A from the caller, B from Palisade B.
    let (bye_a, bye_b) = if caller_hangs_up {
        (CALLER_IP, B_HOME_IP)
    } else {
        (A_HOME_IP, CALLEE_IP)
    };
    // Kamailio's lines arrive through a pipe: wait for them, bounded.
    let end = Instant::now() + LOG_WAIT;
    let result = loop {
        let ta = s.kam_a.traces_since(from_a);
        let tb = s.kam_b.traces_since(from_b);
        let mut problems = Vec::new();
        if let Err(p) = check_kamailio("kamailio-a", &ta, CALLER_IP, bye_a) {
            problems.extend(p);
        }
        if let Err(p) = check_kamailio("kamailio-b", &tb, B_HOME_IP, bye_b) {
            problems.extend(p);
        }
        if problems.is_empty() || Instant::now() >= end {
            break problems;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let sipp = sipp.map_err(|e| format!("SIPp {uac}/{uas}: {e}"));
    match (sipp, result.is_empty()) {
        (Ok(_), true) => Ok(()),
        (sipp, _) => {
            let mut all: Vec<String> = sipp.err().into_iter().collect();
            all.extend(result);
            ensure(false, || {
                format!(
                    "{}\n    (logs in {})",
                    all.join("\n    "),
                    work_dir().display()
                )
            })
        }
    }
}

type Scenario = (&'static str, fn(&mut Setup) -> R<()>);

fn scenarios() -> Vec<Scenario> {
    vec![
        ("caller_hangs_up", |s| through_kamailio(s, true)),
        ("callee_hangs_up", |s| through_kamailio(s, false)),
    ]
}

fn main() {
    std::process::exit(run());
}

fn run() -> i32 {
    let selected = harness::select(scenarios());
    instance::watchdog("kamailio", GLOBAL_TIMEOUT);
    println!("\nrunning {} kamailio scenarios", selected.len());
    let mut tally = Tally::new();
    let missing = if !kamailio_available() {
        Some("kamailio (package kamailio) not installed")
    } else if !sipp_runner::sipp_available() {
        Some("sipp (package sip-tester) not installed")
    } else {
        None
    };
    if let Some(reason) = missing {
        for (name, _) in &selected {
            tally.record(name, Duration::ZERO, skip(reason));
        }
        return tally.finish();
    }
    let mut setup = match Setup::start() {
        Ok(s) => s,
        Err(e) => {
            println!("kamailio setup FAILED: {e}");
            for (name, _) in &selected {
                tally.record(name, Duration::ZERO, Err("setup did not start".into()));
            }
            return tally.finish();
        }
    };
    for (name, f) in &selected {
        tally.run(name, || f(&mut setup).and_then(|()| setup.alive()));
    }
    drop(setup);
    println!("\nkamailio logs: {}", work_dir().display());
    tally.finish()
}

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
//! - `forked_early_dialogs` (`kamailio/forking.rs`): Kamailio-B forks an INVITE to two user
//!   agents, each with a reliable 183 from its own early dialog; the caller's PRACK and UPDATE
//!   in each reach the right fork, one fork answers, the other is cancelled (487).
//!
//! - `tls_partner_border`: Kamailio with its tls module as operator B's border (own addresses
//!   127.0.75.x/127.0.76.x): mutual TLS with a Palisade A that pins Kamailio's certificate,
//!   Kamailio verifying A's against the lab CA; SIPp calls each way (A's core → Palisade →
//!   TLS → Kamailio → B's core, and back), all answered and hung up; Kamailio's trace shows the
//!   INVITEs over TLS in both directions.
//!
//! harness = false: `cargo test --test kamailio [-- NAME...]`. Without `kamailio` or `sipp`
//! the scenarios are skipped; PALISADE_REQUIRE_ROOT_TESTS=1 makes a skip a failure.

mod common;
#[path = "kamailio/forking.rs"]
mod forking;
use forking::FORK_USER;
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

/// A minimal record-routing proxy on `ip`:5060 relaying initial requests to `next_hop`; with
/// `fork`, an INVITE for `FORK_USER` is forked in parallel to both addresses instead.
fn kamailio_cfg(ip: &str, next_hop: &str, fork: Option<[&str; 2]>) -> String {
    let fork = fork.map_or(String::new(), |[f1, f2]| {
        format!(
            r#"if ($rm == "INVITE" && $rU == "{FORK_USER}") {{
        $ru = "sip:{FORK_USER}@{f1}";
        append_branch("sip:{FORK_USER}@{f2}");
        xlog("L_NOTICE", "KAMTRACE initial $rm call-id=$ci src=$si:$sp du=fork\n");
        if (!t_relay()) {{
            sl_reply_error();
        }}
        exit;
    }}"#
        )
    });
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
loadmodule "corex.so"

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
    {fork}
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
    fn start(name: &str, ip: &str, next_hop: &str, fork: Option<[&str; 2]>) -> R<Kamailio> {
        Kamailio::start_with(name, &kamailio_cfg(ip, next_hop, fork), ip)
    }

    /// Starts Kamailio with the configuration `text` (its folder is `work_dir()/name`); it is
    /// up once it has bound UDP `ip`:5060.
    fn start_with(name: &str, text: &str, ip: &str) -> R<Kamailio> {
        let dir = work_dir().join(name);
        std::fs::create_dir_all(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
        let cfg = dir.join("kamailio.cfg");
        std::fs::write(&cfg, text).map_err(|e| format!("write {}: {e}", cfg.display()))?;
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
        let kam_a = Kamailio::start("kamailio-a", KAM_A_IP, &format!("{A_HOME_IP}:5060"), None)?;
        let kam_b = Kamailio::start(
            "kamailio-b",
            KAM_B_IP,
            &format!("{CALLEE_IP}:5060"),
            Some(forking::FORK_ADDRS),
        )?;
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

// ---------------------------------------------------------------- Kamailio TLS as B's border

const TA_CALLER: &str = "127.0.74.1";
const TA_HOME: &str = "127.0.74.2";
const TA_CORE: &str = "127.0.74.5";
const TA_IC: &str = "127.0.75.2";
const KB_TLS: &str = "127.0.75.3";
const KB_UDP: &str = "127.0.76.3";
const KB_CALLEE: &str = "127.0.76.1";
const KB_CALLER: &str = "127.0.76.5";

/// Kamailio as operator B's border: TLS (tls module, mutual: it requires and verifies A's
/// certificate against the lab CA, and Palisade pins Kamailio's) toward Palisade A, UDP toward
/// B's core. Record-routes (double, across the transport change) and relays by source side.
fn kamailio_tls_cfg(dir: &Path) -> String {
    let tls_cfg = dir.join("tls.cfg");
    format!(
        r#"#!KAMAILIO
debug=2
log_stderror=yes
children=2
tcp_children=2
listen=udp:{KB_UDP}:5060
listen=tls:{KB_TLS}:5061
enable_tls=yes
dns=no
rev_dns=no
auto_aliases=no

loadmodule "tls.so"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "textops.so"
loadmodule "maxfwd.so"
loadmodule "siputils.so"
loadmodule "xlog.so"
loadmodule "pv.so"

modparam("tls", "config", "{tls}")
modparam("rr", "append_fromtag", 1)

request_route {{
    if (!mf_process_maxfwd_header("10")) {{
        sl_send_reply("483", "Too Many Hops");
        exit;
    }}
    if (has_totag()) {{
        if (loose_route()) {{
            xlog("L_NOTICE", "KAMTRACE in-dialog $rm call-id=$ci src=$si:$sp proto=$pr ruri=$ru
");
            t_relay();
            exit;
        }}
        if ($rm == "ACK" && t_check_trans()) {{
            t_relay();
            exit;
        }}
        xlog("L_NOTICE", "KAMTRACE no-route $rm call-id=$ci src=$si:$sp proto=$pr ruri=$ru
");
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
    if ($pr == "tls") {{
        $du = "sip:{KB_CALLEE}:5060";
    }} else {{
        $du = "sip:{TA_IC}:5061;transport=tls";
    }}
    xlog("L_NOTICE", "KAMTRACE initial $rm call-id=$ci src=$si:$sp proto=$pr du=$du
");
    if (!t_relay()) {{
        sl_reply_error();
    }}
}}

onreply_route {{
    xlog("L_NOTICE", "KAMTRACE reply $rs $rm call-id=$ci src=$si:$sp proto=$pr
");
}}
"#,
        tls = tls_cfg.display()
    )
}

fn tls_partner_border() -> R<()> {
    let dir = work_dir().join("tls-partner");
    let _ = std::fs::remove_dir_all(&dir);
    let kdir = work_dir().join("kamailio-tls-b");
    std::fs::create_dir_all(&kdir).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    if !Path::new("/usr/lib/x86_64-linux-gnu/kamailio/modules/tls.so").exists()
        && !Path::new("/usr/lib/kamailio/modules/tls.so").exists()
    {
        return skip("kamailio-tls-modules not installed");
    }
    let lab_tls = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/lab/tls");
    // Kamailio's certificate: self-signed for operator-b.example; Palisade A pins it.
    let kb = kdir.join("kamailio-b");
    let out = Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(["cert", "new", "--domain", "operator-b.example", "--out"])
        .arg(&kb)
        .output()
        .map_err(|e| e.to_string())?;
    ensure(out.status.success(), || {
        format!("cert new: {}", String::from_utf8_lossy(&out.stderr))
    })?;
    let shown = Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(["cert", "show"])
        .arg(kb.with_extension("crt"))
        .output()
        .map_err(|e| e.to_string())?;
    let shown = String::from_utf8_lossy(&shown.stdout).into_owned();
    let fp = shown
        .lines()
        .find_map(|l| l.strip_prefix("fingerprint: "))
        .ok_or("no fingerprint from cert show")?
        .trim()
        .to_string();
    let tls_cfg = format!(
        "[server:default]
method = TLSv1.2+
verify_certificate = yes
require_certificate = yes
         private_key = {key}
certificate = {crt}
ca_list = {ca}

         [client:default]
method = TLSv1.2+
verify_certificate = yes
require_certificate = yes
         private_key = {key}
certificate = {crt}
ca_list = {ca}
",
        key = kb.with_extension("key").display(),
        crt = kb.with_extension("crt").display(),
        ca = lab_tls.join("lab-ca.crt").display(),
    );
    std::fs::write(kdir.join("tls.cfg"), tls_cfg).map_err(|e| e.to_string())?;
    let palisade_cfg = format!(
        r#"name = "palisade-kamtls-a"
home_domains = ["operator-a.example"]
[admin]
listen = "127.0.0.1:9174"
[media]
nft_table = "palisade_kamtls_a"
[[realm]]
name = "home"
kind = "home"
listen = ["udp:{TA_HOME}:5060"]
core = "udp:{TA_CORE}:5060"
core_sources = ["{TA_CALLER}", "{TA_CORE}"]
[[realm]]
name = "interconnect"
kind = "peer"
listen = ["tls:{TA_IC}:5061"]
tls = {{ certificate = "{crt}", key = "{key}" }}
[[realm.peer]]
name = "kamailio-b"
domains = ["operator-b.example"]
sources = ["{KB_TLS}"]
next_hop = "tls:{KB_TLS}:5061"
trust = "trusted"
tls = {{ fingerprints = ["{fp}"] }}
"#,
        crt = lab_tls.join("operator-a.crt").display(),
        key = lab_tls.join("operator-a.key").display(),
    );
    let cfg_path = dir.join("operator-a.toml");
    std::fs::write(&cfg_path, palisade_cfg).map_err(|e| e.to_string())?;
    let kam = Kamailio::start_with("kamailio-tls-b", &kamailio_tls_cfg(&kdir), KB_UDP)?;
    let a_log = dir.join("palisade-a.log");
    let _a = Instance::start("palisade-kamtls-a", &cfg_path, a_log.clone())?;

    // A → B: Palisade A opens TLS to Kamailio; B → A: Kamailio opens TLS to Palisade A.
    let mut problems = Vec::new();
    let from = kam.line_count();
    let runs = [
        (
            "a-to-b",
            TA_CALLER,
            TA_HOME,
            KB_CALLEE,
            "uac.xml".to_string(),
        ),
        ("b-to-a", KB_CALLER, KB_UDP, TA_CORE, {
            // The caller scenario with the domains swapped: B's user calls A's.
            let text = std::fs::read_to_string(
                Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sipp/uac.xml"),
            )
            .map_err(|e| e.to_string())?
            .replace("operator-b.example", "OPERATOR_B")
            .replace("operator-a.example", "operator-b.example")
            .replace("OPERATOR_B", "operator-a.example");
            let p = dir.join("uac_b_to_a.xml");
            std::fs::write(&p, text).map_err(|e| e.to_string())?;
            p.display().to_string()
        }),
    ];
    for (label, uac_ip, target, uas_ip, uac) in &runs {
        let r = sipp_runner::SippRun {
            uac_ip: uac_ip.to_string(),
            uac_port: 5060,
            target: format!("{target}:5060"),
            uas_ip: uas_ip.to_string(),
            uas_port: 5060,
            service: "cindy".into(),
            calls: CALLS,
            rate: 10,
            limit: CALLS,
            work: dir.join(format!("sipp-{label}")),
            timeout: Duration::from_secs(30),
        };
        if let Err(e) = sipp_runner::run_pair(&r, uac, "uas_record_route.xml") {
            problems.push(format!("{label}: {e}"));
        }
    }
    // Kamailio relayed INVITEs that came over TLS from Palisade, and sent INVITEs to it.
    let end = Instant::now() + LOG_WAIT;
    let (mut over_tls, mut to_palisade) = (0, 0);
    while Instant::now() < end {
        let lines: Vec<String> = kam.lines.lock().unwrap()[from..].to_vec();
        over_tls = lines
            .iter()
            .filter(|l| {
                l.contains("KAMTRACE initial INVITE")
                    && l.contains(&format!("src={TA_IC}:"))
                    && l.contains("proto=tls")
            })
            .count();
        to_palisade = lines
            .iter()
            .filter(|l| {
                l.contains("KAMTRACE initial INVITE")
                    && l.contains(&format!("du=sip:{TA_IC}:5061;transport=tls"))
            })
            .count();
        if over_tls >= CALLS as usize && to_palisade >= CALLS as usize {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if over_tls < CALLS as usize || to_palisade < CALLS as usize {
        problems.push(format!(
            "Kamailio relayed {over_tls} INVITEs from Palisade over TLS and {to_palisade} toward it, want {CALLS} each:\n{}",
            kam.tail()
        ));
    }
    let log = std::fs::read_to_string(&a_log).unwrap_or_default();
    for dir_word in ["TLS connection to partner", "TLS connection from partner"] {
        if !log
            .lines()
            .any(|l| l.contains(dir_word) && l.contains("kamailio-b"))
        {
            problems.push(format!(
                "Palisade A's log has no `{dir_word}` kamailio-b line"
            ));
        }
    }
    ensure(problems.is_empty(), || {
        format!(
            "{}\n    (logs in {})",
            problems.join("\n    "),
            dir.display()
        )
    })
}

type Scenario = (&'static str, fn(&mut Setup) -> R<()>);

fn scenarios() -> Vec<Scenario> {
    vec![
        ("caller_hangs_up", |s| through_kamailio(s, true)),
        ("callee_hangs_up", |s| through_kamailio(s, false)),
        ("forked_early_dialogs", forking::forked_early_dialogs),
        ("tls_partner_border", |_| tls_partner_border()),
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

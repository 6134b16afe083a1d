//! Palisade as a service, end to end on the real binary:
//! - `notify_reload_stop`: one instance (own loopback addresses 127.0.173.x, admin on
//!   127.0.173.1:9173) started with `NOTIFY_SOCKET` pointing at a datagram socket this test
//!   binds and a small `WATCHDOG_USEC`: READY=1 and WATCHDOG=1 arrive; SIGHUP with a broken
//!   file is refused with a line naming file, line and field and the instance keeps running;
//!   a realm change is refused as needing a restart; a good file gives RELOADING=1 then
//!   READY=1; `/metrics` counts the three reloads; SIGTERM gives STOPPING=1 and exit 0.
//! - `lab_call_metrics_and_drain`: both lab instances (admin 9101 and 9102) and the test UAs
//!   on both cores: `/metrics` during a call shows it active, RTP sent by A's core is counted as
//!   relayed (user path, both realms), the `process_*` series are there and the start time is
//!   this run's; after the BYE the counters have
//!   moved and the gauge is back at 0 (and `promtool check metrics` accepts the page when
//!   promtool is installed). Then a second call, SIGTERM to A: `/readyz` says 503, a new INVITE
//!   gets 503 with Retry-After, the call goes on; a second SIGTERM hangs it up (BYE with a
//!   Reason on both legs) and A exits 0.
//! - `call_logs_share_one_corr`: both lab instances with `PALISADE_LOG_FORMAT=json`, one call
//!   from A's core to B's, hung up by the caller: in each instance's log every line is a JSON
//!   object, the lines about the call (its events, and any line logged inside the engine's
//!   `call` span) carry one correlation id, every line naming the Call-ID it received carries
//!   it too, and that id appears nowhere in the SIP either UA received.
//! - `reload_during_call_keeps_partner`: a lab copy where A also has a decoy partner and a
//!   plain UDP listener on the interconnect. During an answered call with operator B, SIGHUP
//!   with a broken partner file is refused (the line names file:line:field) and SIGHUP with a
//!   set that puts the decoy first, removes operator B and adds operator C (a test UA acting
//!   as C's border) is applied: a call to C is answered at once, a new call to B gets 404, and
//!   the call in progress still runs through B: B's core hangs up and A's core gets the BYE.
//! - `drain_timeout_hangs_up`: a lab copy with `[service] drain_timeout_s = 1`; one SIGTERM
//!   during a call: when the drain time is up the call is hung up on both legs and A exits 0.
//!
//! harness = false: `cargo test --test service [-- NAME...]`. No timing assertions: every
//! wait is bounded and only checks that something arrived.

mod common;

use common::flows;
use common::harness::{self, ensure, Tally};
use common::instance::{self, signal, Instance};
use common::ua::{sdp, sdp_media_addr, Ua, UaConfig, R};
use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const GLOBAL_TIMEOUT: Duration = Duration::from_secs(6 * 60);
const WAIT: Duration = Duration::from_secs(10);
const TO_CINDY: &str = "sip:cindy@operator-b.example";

fn work_dir() -> PathBuf {
    instance::work_dir("service")
}

use common::http::get as http_get;

/// The value of one sample (`name{labels} value`, labels given as they print) in a page.
fn sample(page: &str, series: &str) -> Option<f64> {
    page.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// Datagrams received on the notify socket, in order.
struct Notify {
    sock: UnixDatagram,
    seen: Vec<String>,
}

impl Notify {
    fn bind(path: &Path) -> R<Notify> {
        let _ = std::fs::remove_file(path);
        let sock = UnixDatagram::bind(path).map_err(|e| format!("bind {path:?}: {e}"))?;
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .map_err(|e| e.to_string())?;
        Ok(Notify {
            sock,
            seen: Vec::new(),
        })
    }

    /// Keeps reading for `d` (the service drops notifications when the socket's small queue is
    /// full, so a test that does something else meanwhile must keep it drained).
    fn pump(&mut self, d: Duration) {
        let end = Instant::now() + d;
        let mut buf = [0u8; 4096];
        while Instant::now() < end {
            if let Ok(n) = self.sock.recv(&mut buf) {
                self.seen
                    .push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        }
    }

    /// Waits (bounded) for a datagram with a line `line`; returns the datagrams seen
    /// before it and it, consumed.
    fn wait_for(&mut self, line: &str) -> R<Vec<String>> {
        let end = Instant::now() + WAIT;
        let mut buf = [0u8; 4096];
        loop {
            if let Some(i) = self.seen.iter().position(|d| d.lines().any(|l| l == line)) {
                return Ok(self.seen.drain(..=i).collect());
            }
            if Instant::now() >= end {
                return Err(format!("no {line} within {WAIT:?}; got {:?}", self.seen));
            }
            if let Ok(n) = self.sock.recv(&mut buf) {
                self.seen
                    .push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        }
    }
}

/// Waits (bounded) for `what` in the instance's log.
fn wait_log(inst: &Instance, what: &[&str]) -> R<String> {
    let end = Instant::now() + WAIT;
    loop {
        let log = inst.log_text();
        if let Some(l) = log.lines().find(|l| what.iter().all(|w| l.contains(w))) {
            return Ok(l.to_string());
        }
        if Instant::now() >= end {
            return Err(format!("no log line with {what:?}; tail:\n{}", inst.tail()));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

const SOLO_ADMIN: &str = "127.0.173.1:9173";

fn solo_config(home_listen: &str, max_calls: u32) -> String {
    format!(
        r#"name = "solo"
home_domains = ["solo.example"]

[media]
nft_table = "palisade_solo"

[admin]
listen = "{SOLO_ADMIN}"

[[realm]]
name = "home"
kind = "home"
listen = ["udp:{home_listen}", "tcp:{home_listen}"]
core = "udp:127.0.173.1:5060"
media_ports = "46000-46099"

[[realm]]
name = "interconnect"
kind = "peer"
listen = ["udp:127.0.173.3:5060", "tcp:127.0.173.3:5060"]
media_ports = "46100-46199"

[[realm.peer]]
name = "other"
domains = ["other.example"]
sources = ["127.0.173.4"]
next_hop = "udp:127.0.173.4:5060"
max_calls = {max_calls}
"#
    )
}

fn notify_reload_stop() -> R<()> {
    let dir = work_dir();
    let cfg = dir.join("solo.toml");
    let write = |text: &str| common::labfiles::write_atomic(&cfg, text.as_bytes());
    write(&solo_config("127.0.173.2:5060", 100))?;
    let mut notify = Notify::bind(&dir.join("notify.sock"))?;
    let env = [
        (
            "NOTIFY_SOCKET",
            dir.join("notify.sock").to_string_lossy().into_owned(),
        ),
        ("WATCHDOG_USEC", "200000".to_string()),
    ];
    let mut inst = Instance::start_env("solo", &cfg, dir.join("solo.log"), &env)?;
    notify.wait_for("READY=1")?;
    notify.wait_for("WATCHDOG=1")?;
    ensure(http_get(SOLO_ADMIN, "/healthz")?.0 == 200, || {
        "healthz".into()
    })?;
    ensure(http_get(SOLO_ADMIN, "/readyz")?.0 == 200, || {
        "readyz".into()
    })?;

    // A broken file: refused, naming file, line and field; the instance keeps running.
    write(&solo_config("127.0.173.2:5060", 100).replace("[media]", "[sip]\nt1_ms = 0\n\n[media]"))?;
    signal(inst.pid(), "HUP");
    let line = wait_log(&inst, &["reload refused", "solo.toml:5:9", "sip.t1_ms"])?;
    eprintln!("  refused: {line}");
    inst.alive()?;
    // A realm change: refused as needing a restart.
    write(&solo_config("127.0.173.5:5060", 100))?;
    signal(inst.pid(), "HUP");
    wait_log(&inst, &["reload refused", "needs restart"])?;
    // A good one: RELOADING=1, then READY=1.
    write(&solo_config("127.0.173.2:5060", 7))?;
    signal(inst.pid(), "HUP");
    let before = notify.wait_for("READY=1")?;
    ensure(
        before
            .iter()
            .any(|d| d.contains("RELOADING=1") && d.contains("MONOTONIC_USEC=")),
        || format!("no RELOADING=1 before READY=1: {before:?}"),
    )?;
    wait_log(&inst, &["reload applied"])?;
    let (_, page) = http_get(SOLO_ADMIN, "/metrics")?;
    for result in ["applied", "invalid", "needs_restart"] {
        let v = sample(
            &page,
            &format!("palisade_reloads_total{{result=\"{result}\"}}"),
        );
        ensure(v == Some(1.0), || {
            format!("reloads {result}: {v:?} in\n{page}")
        })?;
    }
    inst.alive()?;
    status_shows(
        &mut notify,
        &[
            "solo: ready",
            "interconnect/other: 0 call(s), never heard from",
            "last reload: applied",
        ],
    )?;

    signal(inst.pid(), "TERM");
    notify.wait_for("STOPPING=1")?;
    let code = inst.wait_exit(WAIT);
    ensure(code == Some(0), || {
        format!("exit code {code:?}; tail:\n{}", inst.tail())
    })
}

/// `palisade status --admin SOLO_ADMIN` until its summary has every line fragment in `want`
/// (the status document is refreshed once a second), bounded by WAIT.
fn status_shows(notify: &mut Notify, want: &[&str]) -> R<()> {
    let end = Instant::now() + WAIT;
    loop {
        let out = Command::new(env!("CARGO_BIN_EXE_palisade"))
            .args(["status", "--admin", SOLO_ADMIN])
            .output()
            .map_err(|e| format!("palisade status: {e}"))?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() && want.iter().all(|w| text.contains(w)) {
            eprintln!("  status:\n{text}");
            return Ok(());
        }
        if Instant::now() >= end {
            return Err(format!(
                "palisade status lacks {want:?}:\n{text}{}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        notify.pump(Duration::from_millis(200));
    }
}

fn promtool_check(page: &str) -> R<()> {
    let Ok(mut child) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    else {
        eprintln!("  promtool not installed: format check skipped");
        return Ok(());
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(page.as_bytes())
        .map_err(|e| e.to_string())?;
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    ensure(out.status.success(), || {
        format!(
            "promtool check metrics: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn lab_call_metrics_and_drain() -> R<()> {
    instance::wait_lab_free(Duration::from_secs(120))?;
    let shipped = common::labfiles::shipped_dir();
    let dir = work_dir();
    let mut pa = Instance::start(
        "operator-a",
        &shipped.join("operator-a.toml"),
        dir.join("a.log"),
    )?;
    let _pb = Instance::start(
        "operator-b",
        &shipped.join("operator-b.toml"),
        dir.join("b.log"),
    )?;
    let a = Ua::new(UaConfig::a_core("alice"))?;
    let b = Ua::new(UaConfig::b_core("cindy"))?;
    const A_ADMIN: &str = "127.0.0.1:9101";

    let call = |port: u16| -> R<_> {
        let (tx, mut da) = a.invite(TO_CINDY, &sdp("127.0.10.1", port, 1, "sendrecv"))?;
        let inc = b.wait_request("INVITE", None)?;
        let db = b
            .answer_invite(&inc, 200, &sdp("127.0.40.1", port + 1000, 1, "sendrecv"))?
            .ok_or("no dialog at B")?;
        let ok = a.wait_final(&tx)?;
        ensure(ok.status() == 200, || format!("caller got {}", ok.start))?;
        a.ack_2xx(&mut da, &ok)?;
        b.wait_ack(&db)?;
        Ok((da, db, ok.body_str()))
    };

    let (mut da, _db, answer) = call(43_000)?;
    // Media from A's core to its border's relay: counted as relayed on the user path, in both
    // realms the flow joins (the metric is refreshed every second).
    let relay = sdp_media_addr(&answer)?;
    let rtp =
        std::net::UdpSocket::bind("127.0.10.1:43000").map_err(|e| format!("bind RTP: {e}"))?;
    const RTP_PACKETS: u32 = 10;
    for seq in 0..RTP_PACKETS {
        let mut p = [0u8; 172];
        p[0] = 0x80;
        p[2..4].copy_from_slice(&(seq as u16).to_be_bytes());
        rtp.send_to(&p, relay)
            .map_err(|e| format!("send RTP: {e}"))?;
    }
    let relayed = |page: &str, realm: &str| {
        sample(
            page,
            &format!("palisade_media_packets_relayed_total{{path=\"user\",realm=\"{realm}\"}}"),
        )
    };
    let end = Instant::now() + WAIT;
    let page = loop {
        let (_, page) = http_get(A_ADMIN, "/metrics")?;
        if relayed(&page, "home") >= Some(f64::from(RTP_PACKETS)) || Instant::now() > end {
            break page;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    for realm in ["home", "interconnect"] {
        ensure(
            relayed(&page, realm) >= Some(f64::from(RTP_PACKETS)),
            || format!("{RTP_PACKETS} RTP packets relayed in {realm}:\n{page}"),
        )?;
    }
    ensure(
        sample(
            &page,
            "palisade_media_bytes_relayed_total{path=\"user\",realm=\"home\"}",
        ) >= Some(f64::from(RTP_PACKETS * 172)),
        || format!("RTP bytes relayed:\n{page}"),
    )?;
    // Process metrics, read from /proc/self at the scrape.
    for series in [
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_max_fds",
    ] {
        ensure(sample(&page, series).is_some_and(|v| v > 0.0), || {
            format!("{series} missing or 0:\n{page}")
        })?;
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs_f64();
    ensure(
        sample(&page, "process_start_time_seconds").is_some_and(|t| t <= now && t > now - 600.0),
        || format!("process_start_time_seconds is not this run's:\n{page}"),
    )?;
    let (_, page) = http_get(A_ADMIN, "/metrics")?;
    ensure(
        sample(&page, "palisade_sessions_active") == Some(1.0),
        || format!("one call active:\n{page}"),
    )?;
    // What the engines hold for the call, refreshed every second by each shard (the call is
    // on whichever shard its Call-ID steers to).
    let held = "palisade_engine_held_bytes";
    let total = |page: &str| -> f64 {
        page.lines()
            .filter(|l| l.starts_with("palisade_engine_held_bytes{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let end = Instant::now() + WAIT;
    let page = loop {
        let (_, page) = http_get(A_ADMIN, "/metrics")?;
        if total(&page) > 0.0 || Instant::now() > end {
            break page;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    ensure(total(&page) > 0.0, || {
        format!("{held} missing or 0 on every shard with a call up:\n{page}")
    })?;
    ensure(
        sample(
            &page,
            "palisade_calls_started_total{from_partner=\"\",from_realm=\"home\",to_partner=\"operator-b\",to_realm=\"interconnect\"}",
        ) == Some(1.0),
        || format!("calls started:\n{page}"),
    )?;
    let bye = a.request(&mut da, "BYE", None)?;
    let bye_b = b.wait_request("BYE", None)?;
    b.respond(&bye_b, 200, "OK", None, None)?;
    let ok = a.wait_final(&bye)?;
    ensure(ok.status() == 200, || format!("BYE got {}", ok.start))?;
    let end = Instant::now() + WAIT;
    let page = loop {
        let (_, page) = http_get(A_ADMIN, "/metrics")?;
        if sample(&page, "palisade_sessions_active") == Some(0.0) || Instant::now() > end {
            break page;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    ensure(
        sample(&page, "palisade_sessions_active") == Some(0.0),
        || format!("gauge back at 0:\n{page}"),
    )?;
    ensure(
        sample(&page, "palisade_calls_ended_total{cause=\"caller_bye\"}") == Some(1.0),
        || format!("caller_bye counted:\n{page}"),
    )?;
    ensure(
        sample(&page, "palisade_call_setup_seconds_count") == Some(1.0),
        || format!("setup histogram:\n{page}"),
    )?;
    ensure(
        sample(
            &page,
            "palisade_sip_requests_received_total{method=\"INVITE\",partner=\"\",realm=\"home\"}",
        ) == Some(1.0),
        || format!("INVITE from home:\n{page}"),
    )?;
    promtool_check(&page)?;

    // Drain: the call in progress goes on, new ones get 503 + Retry-After.
    let (da2, db2, _) = call(43_100)?;
    signal(pa.pid(), "TERM");
    let end = Instant::now() + WAIT;
    while http_get(A_ADMIN, "/readyz")?.0 != 503 {
        ensure(Instant::now() < end, || "readyz never said 503".into())?;
        std::thread::sleep(Duration::from_millis(50));
    }
    let (tx, _) = a.invite(TO_CINDY, &sdp("127.0.10.1", 43_200, 1, "sendrecv"))?;
    let refused = a.wait_final(&tx)?;
    ensure(refused.status() == 503, || {
        format!("new INVITE got {}", refused.start)
    })?;
    ensure(refused.header("Retry-After").is_some(), || {
        "503 without Retry-After".into()
    })?;
    pa.alive()?;
    // A second SIGTERM: hang up at once, on both legs, with a Reason.
    signal(pa.pid(), "TERM");
    let bye_a = a.wait_request("BYE", Some(da2.call_id.as_str()))?;
    a.respond(&bye_a, 200, "OK", None, None)?;
    let reason = bye_a.msg.header("Reason").unwrap_or("").to_string();
    ensure(reason.contains("Border shutting down"), || {
        format!("BYE at A's core without the Reason: {reason:?}")
    })?;
    let bye_b = b.wait_request("BYE", Some(db2.call_id.as_str()))?;
    b.respond(&bye_b, 200, "OK", None, None)?;
    let code = pa.wait_exit(WAIT);
    ensure(code == Some(0), || {
        format!("A's exit code {code:?}; tail:\n{}", pa.tail())
    })
}

/// The correlation ids on one JSON log line: the `corr` field of an event and the `corr` of the
/// span it was logged in.
fn line_corrs(line: &serde_json::Value) -> Vec<String> {
    [&line["fields"]["corr"], &line["span"]["corr"]]
        .into_iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect()
}

/// Checks one instance's JSON log after exactly one call: returns the call's correlation id.
/// `call_id`: the Call-ID the instance received the INVITE with (named in its events).
fn one_call_corr(inst: &Instance, call_id: &str) -> R<String> {
    let log = inst.log_text();
    let mut lines = Vec::new();
    for l in log.lines() {
        let v: serde_json::Value =
            serde_json::from_str(l).map_err(|e| format!("not a JSON line ({e}): {l}"))?;
        lines.push((l, v));
    }
    let mut corrs: Vec<String> = lines.iter().flat_map(|(_, v)| line_corrs(v)).collect();
    corrs.sort();
    corrs.dedup();
    let [corr] = corrs.as_slice() else {
        return Err(format!(
            "one call, one correlation id; got {corrs:?}:\n{log}"
        ));
    };
    let about: Vec<&str> = lines
        .iter()
        .filter(|(_, v)| line_corrs(v).contains(corr))
        .map(|(l, _)| *l)
        .collect();
    for event in ["CallStarted", "CallAnswered", "CallEnded"] {
        ensure(about.iter().any(|l| l.contains(event)), || {
            format!("no {event} line with corr {corr}:\n{log}")
        })?;
    }
    for (l, v) in &lines {
        ensure(!l.contains(call_id) || line_corrs(v).contains(corr), || {
            format!("a line names the call ({call_id}) without its corr {corr}: {l}")
        })?;
    }
    Ok(corr.clone())
}

fn call_logs_share_one_corr() -> R<()> {
    instance::wait_lab_free(Duration::from_secs(120))?;
    let shipped = common::labfiles::shipped_dir();
    let dir = work_dir();
    let json = [("PALISADE_LOG_FORMAT", "json".to_string())];
    let pa = Instance::start_env(
        "operator-a",
        &shipped.join("operator-a.toml"),
        dir.join("corr-a.log"),
        &json,
    )?;
    let pb = Instance::start_env(
        "operator-b",
        &shipped.join("operator-b.toml"),
        dir.join("corr-b.log"),
        &json,
    )?;
    let a = Ua::new(UaConfig::a_core("alice"))?;
    let b = Ua::new(UaConfig::b_core("cindy"))?;
    let mut call = flows::establish(&a, &b, TO_CINDY)?;
    flows::bye(&a, &mut call.a, &b, &call.b)?;
    let da = call.a;
    // CallEnded is logged once the BYE's answer is relayed: wait (bounded) for it on both.
    wait_log(&pa, &["CallEnded"])?;
    wait_log(&pb, &["CallEnded"])?;
    let corr_a = one_call_corr(&pa, &da.call_id)?;
    // B's border received the INVITE with A's leg-B Call-ID; its own events name that one.
    let b_in = pb
        .log_text()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find_map(|v| {
            let event = v["fields"]["event"].as_str()?;
            let rest = event.strip_prefix("CallStarted { call_id: \"")?;
            Some(rest.split('"').next()?.to_string())
        })
        .ok_or_else(|| format!("no Call-ID in B's CallStarted line:\n{}", pb.tail()))?;
    let corr_b = one_call_corr(&pb, &b_in)?;
    ensure(corr_a != corr_b, || format!("both borders used {corr_a}"))?;
    let on_wire = [a.received_bytes(), b.received_bytes()].concat();
    let on_wire = String::from_utf8_lossy(&on_wire);
    for corr in [&corr_a, &corr_b] {
        ensure(!on_wire.contains(corr.as_str()), || {
            format!("correlation id {corr} reached a UA:\n{on_wire}")
        })?;
    }
    Ok(())
}

/// A partner policy file for the reload scenario (plain UDP, on A's interconnect).
fn partner_file(name: &str, ip: &str) -> String {
    format!(
        "name = \"{name}\"\nrealm = \"interconnect\"\ndomains = [\"{name}.example\"]\n\
         sources = [\"{ip}\"]\nnext_hop = \"udp:{ip}:5060\"\n"
    )
}

fn reload_during_call_keeps_partner() -> R<()> {
    let shipped = common::labfiles::shipped_dir();
    let dir = work_dir().join("lab-reload");
    let a_file = |p: &Path| p == shipped.join("operator-a.toml");
    // A plain UDP listener beside the TLS one (listeners only change with a restart), and a
    // decoy partner before operator B.
    common::labfiles::copy_dir(&shipped, &dir, &|p, text| {
        if !a_file(p) {
            return text;
        }
        text.replacen(
            "listen = [\"tls:127.0.20.2:5061\"]",
            "listen = [\"tls:127.0.20.2:5061\", \"udp:127.0.20.2:5060\"]",
            1,
        )
        .replacen(
            "peers = [\"operator-a/operator-b.toml\"]",
            "peers = [\"operator-a/operator-b.toml\", \"operator-a/operator-d.toml\"]",
            1,
        )
    })?;
    let write =
        |rel: &str, text: &str| common::labfiles::write_atomic(&dir.join(rel), text.as_bytes());
    write(
        "operator-a/operator-d.toml",
        &partner_file("operator-d", "127.0.77.9"),
    )?;
    let node = std::fs::read_to_string(dir.join("operator-a.toml")).map_err(|e| e.to_string())?;
    ensure(
        node.contains("operator-a/operator-d.toml") && node.contains("udp:127.0.20.2"),
        || format!("lab copy not patched:\n{node}"),
    )?;

    instance::wait_lab_free(Duration::from_secs(120))?;
    let work = work_dir();
    let pa = Instance::start(
        "operator-a",
        &dir.join("operator-a.toml"),
        work.join("reload-a.log"),
    )?;
    let _pb = Instance::start(
        "operator-b",
        &shipped.join("operator-b.toml"),
        work.join("reload-b.log"),
    )?;
    let a = Ua::new(UaConfig::a_core("alice"))?;
    let b = Ua::new(UaConfig::b_core("cindy"))?;
    let c = Ua::new(UaConfig {
        bind: "127.0.77.1:5060".parse().map_err(|e| format!("{e}"))?,
        advertise: "127.0.77.1:5060".parse().map_err(|e| format!("{e}"))?,
        proxy: "127.0.20.2:5060".parse().map_err(|e| format!("{e}"))?,
        force_next_hop: None,
        transport: common::ua::Transport::Udp,
        user: "carol".into(),
        domain: "operator-c.example".into(),
        internal: "operator-c-border.internal".into(),
        listen_tcp: false,
        own_record_route: true,
    })?;

    // The call in progress, with operator B.
    let mut with_b = flows::establish(&a, &b, TO_CINDY)?;

    // 1. A broken partner file: refused with its file, line and field; nothing changes.
    write(
        "operator-a/operator-d.toml",
        "name = \"operator-d\"\nrealm = \"interconnect\"\ndomains = []\n",
    )?;
    signal(pa.pid(), "HUP");
    let refused = wait_log(&pa, &["reload refused", "operator-d.toml:3:"])?;
    ensure(refused.contains("domains"), || {
        format!("refusal names no field: {refused}")
    })?;

    // 2. Reordered (decoy first), operator B removed, operator C added.
    write(
        "operator-a/operator-d.toml",
        &partner_file("operator-d", "127.0.77.9"),
    )?;
    write(
        "operator-a/operator-c.toml",
        &partner_file("operator-c", "127.0.77.1"),
    )?;
    let reordered = node.replacen(
        "peers = [\"operator-a/operator-b.toml\", \"operator-a/operator-d.toml\"]",
        "peers = [\"operator-a/operator-d.toml\", \"operator-a/operator-c.toml\"]",
        1,
    );
    write("operator-a.toml", &reordered)?;
    signal(pa.pid(), "HUP");
    wait_log(&pa, &["reload applied"])?;

    // The added partner takes a call at once.
    let mut with_c = flows::establish(&a, &c, "sip:carol@operator-c.example")
        .map_err(|e| format!("call to the added partner: {e}"))?;
    flows::bye(&a, &mut with_c.a, &c, &with_c.b)?;

    // The removed partner takes no new call ...
    let (tx_b, _) = a.invite(TO_CINDY, &sdp("127.0.10.1", 43_700, 1, "sendrecv"))?;
    let refused_b = a.wait_final(&tx_b)?;
    ensure(refused_b.status() == 404, || {
        format!("a new call to the removed partner got {}", refused_b.start)
    })?;

    // ... while its call in progress runs to its end through it: B's side hangs up.
    flows::bye(&b, &mut with_b.b, &a, &with_b.a)
        .map_err(|e| format!("the removed partner's call: {e}"))?;
    let end = Instant::now() + WAIT;
    let page = loop {
        let (_, page) = http_get("127.0.0.1:9101", "/metrics")?;
        if sample(&page, "palisade_sessions_active") == Some(0.0) || Instant::now() > end {
            break page;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    for (series, want) in [
        ("palisade_sessions_active", 0.0),
        ("palisade_calls_ended_total{cause=\"callee_bye\"}", 1.0),
        ("palisade_calls_ended_total{cause=\"caller_bye\"}", 1.0),
        ("palisade_reloads_total{result=\"invalid\"}", 1.0),
        ("palisade_reloads_total{result=\"applied\"}", 1.0),
    ] {
        ensure(sample(&page, series) == Some(want), || {
            format!("{series} should be {want}:\n{page}")
        })?;
    }
    Ok(())
}

type Scenario = fn() -> R<()>;

/// A copy of the lab with `[service] drain_timeout_s = 1` in both instance files: one SIGTERM
/// during a call, and the call is hung up on both legs when the drain time is up.
fn drain_timeout_hangs_up() -> R<()> {
    let shipped = common::labfiles::shipped_dir();
    let dir = work_dir().join("lab-drain");
    let top = |p: &Path| p.parent() == Some(shipped.as_path());
    common::labfiles::copy_dir(&shipped, &dir, &|p, text| {
        if top(p) && p.extension().is_some_and(|x| x == "toml") {
            text.replacen(
                "\n[admin]\n",
                "\n[service]\ndrain_timeout_s = 1\n\n[admin]\n",
                1,
            )
        } else {
            text
        }
    })?;
    instance::wait_lab_free(Duration::from_secs(120))?;
    let work = work_dir();
    let mut pa = Instance::start(
        "operator-a",
        &dir.join("operator-a.toml"),
        work.join("drain-a.log"),
    )?;
    let _pb = Instance::start(
        "operator-b",
        &dir.join("operator-b.toml"),
        work.join("drain-b.log"),
    )?;
    let a = Ua::new(UaConfig::a_core("alice"))?;
    let b = Ua::new(UaConfig::b_core("cindy"))?;
    let (tx, mut da) = a.invite(TO_CINDY, &sdp("127.0.10.1", 43_300, 1, "sendrecv"))?;
    let inc = b.wait_request("INVITE", None)?;
    let db = b
        .answer_invite(&inc, 200, &sdp("127.0.40.1", 44_300, 1, "sendrecv"))?
        .ok_or("no dialog at B")?;
    let ok = a.wait_final(&tx)?;
    a.ack_2xx(&mut da, &ok)?;
    b.wait_ack(&db)?;
    signal(pa.pid(), "TERM");
    let bye_a = a.wait_request_for("BYE", Some(da.call_id.as_str()), WAIT)?;
    a.respond(&bye_a, 200, "OK", None, None)?;
    let bye_b = b.wait_request_for("BYE", Some(db.call_id.as_str()), WAIT)?;
    b.respond(&bye_b, 200, "OK", None, None)?;
    let reason = bye_a.msg.header("Reason").unwrap_or("").to_string();
    ensure(reason.contains("Border shutting down"), || {
        format!("BYE at A's core without the Reason: {reason:?}")
    })?;
    let code = pa.wait_exit(WAIT);
    ensure(code == Some(0), || {
        format!("A's exit code {code:?}; tail:\n{}", pa.tail())
    })?;
    wait_log(&pa, &["drain time is up"]).map(|_| ())
}

fn main() {
    let all: Vec<(&'static str, Scenario)> = vec![
        ("notify_reload_stop", notify_reload_stop),
        ("lab_call_metrics_and_drain", lab_call_metrics_and_drain),
        ("call_logs_share_one_corr", call_logs_share_one_corr),
        (
            "reload_during_call_keeps_partner",
            reload_during_call_keeps_partner,
        ),
        ("drain_timeout_hangs_up", drain_timeout_hangs_up),
    ];
    let selected = harness::select(all);
    instance::watchdog("service", GLOBAL_TIMEOUT);
    println!("\nrunning {} service scenarios", selected.len());
    let mut tally = Tally::new();
    for (name, f) in &selected {
        tally.run(name, || harness::catch(*f));
    }
    println!("\nlogs: {}", work_dir().display());
    std::process::exit(tally.finish());
}

//! Palisade media inactivity timeout, end to end: the two lab instances (operator A and
//! operator B) started from a copy of `policies/lab` with `[media] inactivity_timeout_s = 3`,
//! driven by the test UAs on A's core (127.0.10.1) and B's core (127.0.40.1).
//!
//! harness = false: run with `cargo test --test media_timeout` (optionally followed by
//! `-- NAME...` to run only scenarios whose name contains one of the words).
//! Prints `test <name> ... ok|FAILED` and a final `N passed, N failed`.
//!
//! Scenarios (each with its own pair of instances):
//! - `silent_call_is_hung_up_on_both_legs`: an answered call without any media is hung up by
//!   the borders: both UAs receive a BYE for their dialog within a bounded time.
//! - `call_with_media_is_not_hung_up`: RTP-sized packets flow both ways through both relays
//!   for 8 s (more than twice the timeout): each side receives the other's packets from its
//!   border's relay address and no BYE arrives; then the caller hangs up normally.
//!
//! The lab uses fixed loopback addresses, so only one lab can run on a machine at a time: when
//! an instance or a UA cannot bind because the address is in use (another lab test running), the
//! start is retried for a bounded time. Only processes started here are ever stopped.

mod common;

use common::flows;
use common::harness::{self, ensure, Tally};
use common::instance::{self, Instance};
use common::labfiles;
use common::media::{exchange, rtp_socket, PTIME};
use common::ua::{sdp, sdp_media_addr, Dialog, Ua, UaConfig, R};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const TO_CINDY: &str = "sip:cindy@operator-b.example";
const A_CORE_IP: &str = "127.0.10.1";
const B_CORE_IP: &str = "127.0.40.1";
/// The border relay address each core must see in its SDP and receive media from.
const A_RELAY_IP: &str = "127.0.10.2";
const B_RELAY_IP: &str = "127.0.40.2";
const INACTIVITY_S: u64 = 3;
/// Bound on the wait for the inactivity BYE (timeout + 1 s idle check + slack).
const BYE_LIMIT: Duration = Duration::from_secs(10);
/// A BYE earlier than this after the ACK was not caused by the inactivity timeout.
const BYE_NOT_BEFORE: Duration = Duration::from_millis(2500);
const MEDIA_FOR: Duration = Duration::from_secs(8);
/// How long to keep retrying when the lab addresses are held by another test.
const BUSY_RETRY_FOR: Duration = Duration::from_secs(240);
const GLOBAL_TIMEOUT: Duration = Duration::from_secs(10 * 60);

fn work_dir() -> PathBuf {
    instance::work_dir("media_timeout")
}

fn is_addr_in_use(e: &str) -> bool {
    let e = e.to_ascii_lowercase();
    e.contains("address in use")
        || e.contains("address already in use")
        || e.contains("os error 98")
}

// ---------------------------------------------------------------- lab files

/// A copy of the shipped lab files (peer policies included: they are referenced relatively)
/// in target/tmp/media_timeout/lab with the short inactivity timeout in both instance files.
fn lab_dir() -> R<PathBuf> {
    let dir = labfiles::lab_copy_with_media(
        &work_dir().join("lab"),
        "inactivity_timeout_s",
        &INACTIVITY_S.to_string(),
    )?;
    for f in ["operator-a.toml", "operator-b.toml"] {
        let p = dir.join(f);
        let s = std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        ensure(
            s.lines()
                .any(|l| l.trim() == format!("inactivity_timeout_s = {INACTIVITY_S}")),
            || format!("{}: inactivity timeout not set", p.display()),
        )?;
    }
    Ok(dir)
}

// ---------------------------------------------------------------- instances

/// Both instances and both core UAs; dropping it stops the instances (also on panic).
struct Lab {
    // UAs first: dropped before the instances.
    a: Ua,
    b: Ua,
    pa: Instance,
    pb: Instance,
}

impl Lab {
    fn try_start(dir: &Path, tag: &str) -> R<Lab> {
        let start = |name: &str| {
            let log = work_dir().join(format!("{tag}-{name}.log"));
            Instance::start(name, &dir.join(format!("{name}.toml")), log)
        };
        let pa = start("operator-a")?;
        let pb = start("operator-b")?;
        let a = Ua::new(UaConfig::a_core("alice"))?;
        let b = Ua::new(UaConfig::b_core("cindy"))?;
        Ok(Lab { a, b, pa, pb })
    }

    /// Start the lab, waiting (bounded) while another test holds the lab addresses.
    fn start(tag: &str) -> R<Lab> {
        let dir = lab_dir()?;
        let end = Instant::now() + BUSY_RETRY_FOR;
        let mut said = false;
        loop {
            instance::wait_lab_free(end.saturating_duration_since(Instant::now()))?;
            match Lab::try_start(&dir, tag) {
                Ok(l) => return Ok(l),
                Err(e) if is_addr_in_use(&e) && Instant::now() < end => {
                    if !said {
                        eprintln!("lab addresses busy (another lab test running?); retrying for up to {BUSY_RETRY_FOR:?}");
                        said = true;
                    }
                    std::thread::sleep(Duration::from_secs(2));
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn alive(&mut self) -> R<()> {
        self.pa.alive()?;
        self.pb.alive()
    }
}

// ---------------------------------------------------------------- SDP and media

// ---------------------------------------------------------------- call set-up

struct Call {
    a: Dialog,
    b: Dialog,
    /// SDP body of the INVITE as B's core saw it.
    b_offer: String,
    /// SDP body of the 200 as A's core saw it.
    a_answer: String,
    /// When the caller sent the ACK.
    acked_at: Instant,
}

/// INVITE (offer with `a_port`) / 100 / 180 / 200 (answer with `b_port`) / ACK.
fn establish(lab: &Lab, a_port: u16, b_port: u16) -> R<Call> {
    let (tx, mut da) = lab
        .a
        .invite(TO_CINDY, &sdp(A_CORE_IP, a_port, 1, "sendrecv"))?;
    let inc = lab.b.wait_request("INVITE", None)?;
    let db = lab
        .b
        .answer_invite(&inc, 200, &sdp(B_CORE_IP, b_port, 1, "sendrecv"))?
        .ok_or("no dialog at B")?;
    let ok = lab.a.wait_final(&tx)?;
    ensure(ok.status() == 200, || {
        format!("caller got {} instead of 200", ok.start)
    })?;
    lab.a.ack_2xx(&mut da, &ok)?;
    let acked_at = Instant::now();
    lab.b.wait_ack(&db)?;
    Ok(Call {
        a: da,
        b: db,
        b_offer: inc.msg.body_str(),
        a_answer: ok.body_str(),
        acked_at,
    })
}

/// The relay endpoint named by `body`; it must be on `relay_ip` with a relay port.
fn relay_endpoint(body: &str, relay_ip: &str, what: &str) -> R<SocketAddr> {
    let ep = sdp_media_addr(body).map_err(|e| format!("{what}: {e}"))?;
    ensure(ep.ip().to_string() == relay_ip, || {
        format!("{what} names {ep}, not the border relay {relay_ip}:\n{body}")
    })?;
    ensure((20_000..=29_999).contains(&ep.port()), || {
        format!(
            "{what} names port {}, outside the relay range 20000-29999",
            ep.port()
        )
    })?;
    Ok(ep)
}

fn byes(ua: &Ua, call_id: &str) -> usize {
    ua.received()
        .iter()
        .filter(|m| m.method() == Some("BYE") && m.call_id() == Some(call_id))
        .count()
}

// ---------------------------------------------------------------- scenarios

fn silent_call_is_hung_up_on_both_legs(lab: &mut Lab) -> R<()> {
    let call = establish(lab, 42_000, 52_000)?;
    relay_endpoint(&call.b_offer, B_RELAY_IP, "INVITE at B's core")?;
    relay_endpoint(&call.a_answer, A_RELAY_IP, "200 at A's core")?;
    let limit = call.acked_at + BYE_LIMIT;
    let left = || limit.saturating_duration_since(Instant::now());
    // Whichever leg is torn down first, both BYEs must come within the bound.
    let mut a_bye = None;
    let mut b_bye = None;
    while a_bye.is_none() || b_bye.is_none() {
        ensure(!left().is_zero(), || {
            format!(
                "within {BYE_LIMIT:?} of the ACK of a silent call: BYE at A's core {}, at B's core {}",
                if a_bye.is_some() { "received" } else { "MISSING" },
                if b_bye.is_some() { "received" } else { "MISSING" },
            )
        })?;
        let (a_cid, b_cid) = (call.a.call_id.clone(), call.b.call_id.clone());
        let got = lab
            .a
            .wait_for("BYE at A or B", Duration::from_millis(50), |i| {
                i.msg.method() == Some("BYE") && i.msg.call_id() == Some(a_cid.as_str())
            });
        if let Ok(inc) = got {
            lab.a.respond(&inc, 200, "OK", None, None)?;
            a_bye.get_or_insert(call.acked_at.elapsed());
        }
        let got = lab.b.wait_for("BYE at B", Duration::from_millis(50), |i| {
            i.msg.method() == Some("BYE") && i.msg.call_id() == Some(b_cid.as_str())
        });
        if let Ok(inc) = got {
            lab.b.respond(&inc, 200, "OK", None, None)?;
            b_bye.get_or_insert(call.acked_at.elapsed());
        }
    }
    let (a_at, b_at) = (a_bye.unwrap(), b_bye.unwrap());
    ensure(a_at >= BYE_NOT_BEFORE && b_at >= BYE_NOT_BEFORE, || {
        format!(
            "BYE came too early for a {INACTIVITY_S} s inactivity timeout: at A after {a_at:?}, at B after {b_at:?}"
        )
    })?;
    // Answer any further BYE (e.g. a retransmission or the other border's teardown) briefly,
    // so no instance is left retransmitting; the 200s above end the BYE transactions.
    let settle = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < settle {
        if let Ok(inc) = lab
            .a
            .wait_request_for("BYE", None, Duration::from_millis(50))
        {
            lab.a.respond(&inc, 200, "OK", None, None)?;
        }
        if let Ok(inc) = lab
            .b
            .wait_request_for("BYE", None, Duration::from_millis(50))
        {
            lab.b.respond(&inc, 200, "OK", None, None)?;
        }
    }
    let (na, nb) = (byes(&lab.a, &call.a.call_id), byes(&lab.b, &call.b.call_id));
    eprintln!(
        "    silent call: BYE at A's core after {a_at:.1?} ({na} received), at B's core after {b_at:.1?} ({nb} received)"
    );
    Ok(())
}

fn call_with_media_is_not_hung_up(lab: &mut Lab) -> R<()> {
    let a_sock = rtp_socket(A_CORE_IP, 42_000)?;
    let b_sock = rtp_socket(B_CORE_IP, 52_000)?;
    let a_port = a_sock.local_addr().map_err(|e| e.to_string())?.port();
    let b_port = b_sock.local_addr().map_err(|e| e.to_string())?.port();
    let mut call = establish(lab, a_port, b_port)?;
    // A's core sends to the relay named in the answer it got, B's core to the one in the offer.
    let a_to = relay_endpoint(&call.a_answer, A_RELAY_IP, "200 at A's core")?;
    let b_to = relay_endpoint(&call.b_offer, B_RELAY_IP, "INVITE at B's core")?;
    const A_SSRC: u32 = 0x0A0A_0001;
    const B_SSRC: u32 = 0x0B0B_0002;
    let ta = std::thread::spawn(move || exchange(a_sock, a_to, A_SSRC, B_SSRC, MEDIA_FOR));
    let tb = std::thread::spawn(move || exchange(b_sock, b_to, B_SSRC, A_SSRC, MEDIA_FOR));
    let ra = ta.join().map_err(|_| "A's media thread panicked")?;
    let rb = tb.join().map_err(|_| "B's media thread panicked")?;
    let media_ended = call.acked_at.elapsed();
    eprintln!(
        "    media for {MEDIA_FOR:?}: A sent {} received {} ({} of B's) from {:?}; B sent {} received {} ({} of A's) from {:?}",
        ra.sent, ra.received, ra.from_peer, ra.sources, rb.sent, rb.received, rb.from_peer, rb.sources
    );
    // No BYE at either UA while media flowed (longer than twice the timeout).
    let (na, nb) = (byes(&lab.a, &call.a.call_id), byes(&lab.b, &call.b.call_id));
    ensure(na == 0 && nb == 0, || {
        format!(
            "call with media was hung up within {media_ended:?} of the ACK: {na} BYE at A's core, {nb} at B's core"
        )
    })?;
    ensure(ra.send_errors == 0 && rb.send_errors == 0, || {
        format!("send errors: A {}, B {}", ra.send_errors, rb.send_errors)
    })?;
    // Each side received the other's packets, relayed: from its border's relay address only.
    let expected = (MEDIA_FOR.as_millis() / PTIME.as_millis()) as u32;
    for (who, r, relay_ip, relay_ep) in [
        ("A's core", &ra, A_RELAY_IP, a_to),
        ("B's core", &rb, B_RELAY_IP, b_to),
    ] {
        ensure(r.from_peer >= expected / 2, || {
            format!(
                "{who} received only {} of the other side's packets ({} sent each way, {} received in all)",
                r.from_peer, expected, r.received
            )
        })?;
        ensure(
            r.sources.iter().all(|s| s.ip().to_string() == relay_ip),
            || {
                format!(
                    "{who} received media from {:?}, not only from the relay {relay_ip}",
                    r.sources
                )
            },
        )?;
        ensure(r.sources.iter().all(|s| *s == relay_ep), || {
            format!(
                "{who} received media from {:?}, not from the relay endpoint {relay_ep} its SDP named (symmetric RTP)",
                r.sources
            )
        })?;
    }
    lab.alive()?;
    // Then the caller hangs up normally: BYE -> 200 at both ends.
    flows::bye(&lab.a, &mut call.a, &lab.b, &call.b)?;
    let (na, nb) = (byes(&lab.a, &call.a.call_id), byes(&lab.b, &call.b.call_id));
    ensure(na == 0 && nb == 1, || {
        format!("after the caller's BYE: {na} BYE at A's core (want 0), {nb} at B's core (want 1)")
    })
}

// ---------------------------------------------------------------- main

type Scenario = (&'static str, fn(&mut Lab) -> R<()>);

fn scenarios() -> Vec<Scenario> {
    vec![
        (
            "silent_call_is_hung_up_on_both_legs",
            silent_call_is_hung_up_on_both_legs,
        ),
        (
            "call_with_media_is_not_hung_up",
            call_with_media_is_not_hung_up,
        ),
    ]
}

fn run_one(name: &str, f: fn(&mut Lab) -> R<()>) -> R<()> {
    let mut lab = Lab::start(name)?;
    let res = harness::catch(|| f(&mut lab));
    let res = res.and_then(|_| lab.alive());
    drop(lab);
    res
}

fn main() {
    let selected = harness::select(scenarios());
    instance::watchdog("media_timeout", GLOBAL_TIMEOUT);
    println!("\nrunning {} media timeout scenarios", selected.len());
    let mut tally = Tally::new();
    for (name, f) in &selected {
        tally.run(name, || run_one(name, *f));
    }
    println!("\nlogs: {}", work_dir().display());
    std::process::exit(tally.finish());
}

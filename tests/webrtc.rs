//! Palisade WebRTC end-to-end test: two real WebRTC stacks (str0m) behind the two
//! borders of the lab, ICE + DTLS-SRTP + PCMU audio through both media relays.
//!
//! harness = false: run with `cargo test --test webrtc` (optionally `-- NAME...` to run
//! only scenarios whose name contains one of the words).
//! Prints `test <name> ... ok|FAILED|skipped` and a final `N passed, N failed`.
//!
//! Scenarios:
//! - `tone_mulaw_goertzel_unit`: unit checks of the µ-law codec and the Goertzel detector.
//! - `webrtc_direct_selfcheck`: Alice and Cindy exchange SDP directly (no SIP, no
//!   borders); proves the client and tone code independently of Palisade.
//! - `webrtc_mock_relay_selfcheck`: the same through in-process stand-ins for the two
//!   borders (candidate rewrite + byte-for-byte relay): proves the lab checks can be met.
//! - `webrtc_case1_userspace`: Case 1 call A → B through the lab as shipped; the SDP
//!   each side receives must name only its own border, media must arrive from the
//!   border's relay address, and a 440 Hz / 880 Hz tone must be heard both ways.
//! - `webrtc_case1_kernel`: the same with a copy of the lab files with `[media] kernel =
//!   true` (needs root: skipped otherwise, failed if PALISADE_REQUIRE_ROOT_TESTS=1).

#[path = "webrtc/client.rs"]
mod client;
mod common;
#[path = "webrtc/lab.rs"]
mod lab;
#[path = "webrtc/mockborder.rs"]
mod mockborder;
#[path = "webrtc/sdp.rs"]
mod sdp;
#[path = "webrtc/tone.rs"]
mod tone;

use client::{Peer, Progress, Report, RunSpec};
use common::flows;
use common::harness::{self, skip, Tally};
use common::instance;
use common::ua::{Ua, UaConfig};
use lab::Lab;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

type R<T> = Result<T, String>;

const TO_CINDY: &str = "sip:cindy@operator-b.example";
const ALICE_IP: &str = "127.0.10.1";
const CINDY_IP: &str = "127.0.40.1";
/// The border address each side must see media from (and only that).
const A_RELAY: &str = "127.0.10.2";
const B_RELAY: &str = "127.0.40.2";
const ALICE_FREQ: f64 = 440.0;
const CINDY_FREQ: f64 = 880.0;
/// Bound of the whole media phase (ICE, DTLS, audio both ways).
const MEDIA_LIMIT: Duration = Duration::from_secs(15);
/// Audio each side must receive: 1.2 s, of which at least 1 s is analysed.
const ENOUGH_SAMPLES: usize = 9600;
const MIN_SAMPLES: usize = 8000;
const DOMINANCE: f64 = 10.0;
const GLOBAL_TIMEOUT: Duration = Duration::from_secs(5 * 60);

// ---------------------------------------------------------------- media phase

/// Run both peers (each in its own thread with its own socket) until both heard
/// enough audio or MEDIA_LIMIT; then judge. `relays` = (address Alice must receive
/// from, address Cindy must receive from), None when talking directly.
fn media(alice: Peer, cindy: Peer, relays: Option<(&str, &str)>) -> R<Vec<String>> {
    let progress = Arc::new(Progress::default());
    let deadline = Instant::now() + MEDIA_LIMIT;
    let spec = |freq, me| RunSpec {
        send_freq: freq,
        me,
        enough: ENOUGH_SAMPLES,
        deadline,
    };
    let ta = client::spawn(alice, spec(ALICE_FREQ, 0), progress.clone());
    let tc = client::spawn(cindy, spec(CINDY_FREQ, 1), progress.clone());
    let join = |t: std::thread::JoinHandle<Report>| {
        t.join().unwrap_or_else(|_| Report {
            error: Some("run loop panicked".into()),
            ..Default::default()
        })
    };
    let ra = join(ta);
    progress
        .abort
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let rc = join(tc);
    let mut problems = Vec::new();
    let mut info = Vec::new();
    for (r, want, other, relay) in [
        (&ra, CINDY_FREQ, ALICE_FREQ, relays.map(|r| r.0)),
        (&rc, ALICE_FREQ, CINDY_FREQ, relays.map(|r| r.1)),
    ] {
        let who = r.name;
        if let Some(e) = &r.error {
            problems.push(format!("{who}: {e}"));
        }
        let Some(t) = r.connected_after else {
            problems.push(format!(
                "{who}: ICE/DTLS did not connect within {MEDIA_LIMIT:?} (ICE states: [{}]; datagrams from: [{}])",
                r.ice_states.join(", "),
                r.sources_str()
            ));
            continue;
        };
        match tone::check_dominant(&r.samples, want, other, DOMINANCE, MIN_SAMPLES) {
            Ok(s) => info.push(format!(
                "{who}: connected after {} ms, sent {} frames, heard {s}",
                t.as_millis(),
                r.frames_sent
            )),
            Err(e) => problems.push(format!(
                "{who}: connected after {} ms, sent {} frames, but {e}",
                t.as_millis(),
                r.frames_sent
            )),
        }
        if let Some(relay) = relay {
            let relay: IpAddr = relay.parse().unwrap();
            let bad: Vec<String> = r
                .sources
                .iter()
                .filter(|(a, _)| a.ip() != relay)
                .map(|(a, n)| format!("{a} ({n})"))
                .collect();
            if !bad.is_empty() {
                problems.push(format!(
                    "{who} received media not via its border's relay {relay}: from {}",
                    bad.join(", ")
                ));
            }
        }
    }
    if problems.is_empty() {
        Ok(info)
    } else {
        Err(problems.join("\n    "))
    }
}

// ---------------------------------------------------------------- scenarios

/// The leak check on SDP, both ways, and the WebRTC attributes a border must keep.
/// `offer` = (as Alice made it, as Cindy got it, Alice's port); `answer` likewise.
fn sdp_checks(offer: (&str, &str, u16), answer: (&str, &str, u16)) -> Vec<String> {
    let mut problems = Vec::new();
    for (what, (original, seen, port), prefixes, who, relay) in [
        (
            "SDP offer at Cindy",
            offer,
            ["127.0.10.", "127.0.20."],
            "Alice",
            B_RELAY,
        ),
        (
            "SDP answer at Alice",
            answer,
            ["127.0.40.", "127.0.30."],
            "Cindy",
            A_RELAY,
        ),
    ] {
        for l in sdp::leaks(seen, &prefixes, who, port) {
            problems.push(format!("{what} {l}"));
        }
        match sdp::media_endpoint(seen) {
            Some((ip, _)) if ip == relay => {}
            Some((ip, p)) => problems.push(format!(
                "{what} names media endpoint {ip}:{p}, not its border's relay address {relay}"
            )),
            None => problems.push(format!("{what} names no media endpoint")),
        }
        for l in sdp::webrtc_attributes_kept(original, seen) {
            problems.push(format!("{what}: {l}"));
        }
    }
    problems
}

/// Like the lab variants, but through in-process stand-ins for the borders
/// (SDP rewrite + byte-for-byte relay): proves the lab checks can be met.
fn relay_selfcheck() -> R<()> {
    let mut borders = mockborder::MockBorders::new()?;
    let mut alice = Peer::new("alice", ALICE_IP)?;
    let mut cindy = Peer::new("cindy", CINDY_IP)?;
    let (offer, pending) = alice.offer()?;
    let offer_at_cindy = mockborder::rewrite(&offer, borders.b_home);
    let answer = cindy.answer(&offer_at_cindy)?;
    let answer_at_alice = mockborder::rewrite(&answer, borders.a_home);
    alice.accept_answer(pending, &answer_at_alice)?;
    let problems = sdp_checks(
        (&offer, &offer_at_cindy, alice.addr.port()),
        (&answer, &answer_at_alice, cindy.addr.port()),
    );
    if !problems.is_empty() {
        return Err(problems.join("\n    "));
    }
    borders.start(alice.addr, cindy.addr, MEDIA_LIMIT + Duration::from_secs(1));
    let info = media(alice, cindy, Some((A_RELAY, B_RELAY)))?;
    for l in info {
        println!("    {l}");
    }
    Ok(())
}

fn direct_selfcheck() -> R<()> {
    let mut alice = Peer::new("alice", ALICE_IP)?;
    let mut cindy = Peer::new("cindy", CINDY_IP)?;
    let (offer, pending) = alice.offer()?;
    for needle in [
        "a=group:BUNDLE",
        "a=rtcp-mux",
        "PCMU/8000",
        "a=fingerprint:",
    ] {
        if !offer.contains(needle) {
            return Err(format!("str0m offer lacks {needle}:\n{offer}"));
        }
    }
    let answer = cindy.answer(&offer)?;
    alice.accept_answer(pending, &answer)?;
    let info = media(alice, cindy, None)?;
    for l in info {
        println!("    {l}");
    }
    Ok(())
}

fn case1(dir: &Path, tag: &str, kernel: bool) -> R<()> {
    instance::wait_lab_free(Duration::from_secs(30))?;
    let mut lab = Lab::start(dir, tag).map_err(|e| format!("lab did not start: {e}"))?;
    let res = case1_call(tag, kernel);
    let alive = lab.alive();
    drop(lab);
    res.and(alive)
}

/// The Case-1 call through the running lab; every problem found is reported.
fn case1_call(label: &str, kernel: bool) -> R<()> {
    let a = Ua::new(UaConfig::a_core("alice"))?;
    let b = Ua::new(UaConfig::b_core("cindy"))?;
    let mut alice = Peer::new("alice", ALICE_IP)?;
    let (offer, pending) = alice.offer()?;
    let (tx, mut da) = a.invite(TO_CINDY, &offer)?;
    let inc = b.wait_request("INVITE", None)?;
    let offer_at_cindy = inc.msg.body_str();
    let tag = b.ring(&inc)?;
    let mut cindy = Peer::new("cindy", CINDY_IP)?;
    let answer = match cindy.answer(&offer_at_cindy) {
        Ok(s) => s,
        Err(e) => {
            let _ = b.respond(&inc, 488, "Not Acceptable Here", Some(&tag), None);
            let _ = a.wait_final(&tx);
            return Err(format!(
                "Cindy's WebRTC stack rejected the offer it received: {e}\n    offer at Cindy: {}",
                sdp::addr_lines(&offer_at_cindy)
            ));
        }
    };
    b.respond(&inc, 200, "OK", Some(&tag), Some(&answer))?;
    let db = b.uas_dialog(&inc, &tag);
    let ok = a.wait_final(&tx)?;
    if ok.status() != 200 {
        return Err(format!("caller got {} instead of 200", ok.start));
    }
    let answer_at_alice = ok.body_str();
    a.ack_2xx(&mut da, &ok)?;
    b.wait_ack(&db)?;

    for (name, text) in [
        ("offer-by-alice", &offer),
        ("offer-at-cindy", &offer_at_cindy),
        ("answer-by-cindy", &answer),
        ("answer-at-alice", &answer_at_alice),
    ] {
        let _ = std::fs::write(lab::work_dir().join(format!("{label}-{name}.sdp")), text);
    }
    let mut problems = sdp_checks(
        (&offer, &offer_at_cindy, alice.addr.port()),
        (&answer, &answer_at_alice, cindy.addr.port()),
    );
    let answer_ok = alice.accept_answer(pending, &answer_at_alice);
    match answer_ok {
        Ok(()) => match media(alice, cindy, Some((A_RELAY, B_RELAY))) {
            Ok(info) => {
                for l in info {
                    println!("    {l}");
                }
            }
            Err(e) => problems.push(e),
        },
        Err(e) => problems.push(format!(
            "Alice's WebRTC stack rejected the answer it received: {e}"
        )),
    }
    // kernel mode: the latched flows are in nftables while the call is up, and gone after BYE
    let relay_ports: Vec<u16> = [(&answer_at_alice, A_RELAY), (&offer_at_cindy, B_RELAY)]
        .iter()
        .filter_map(|(sdp, relay)| sdp::media_endpoint(sdp).filter(|(ip, _)| ip == relay))
        .map(|(_, port)| port)
        .collect();
    if kernel {
        if relay_ports.len() == 2 {
            match lab::nft_mentions(&relay_ports) {
                Ok(missing) if missing.is_empty() => {
                    let text = lab::nft_ruleset().unwrap_or_default();
                    for ip in [A_RELAY, B_RELAY] {
                        if !text.contains(ip) {
                            problems.push(format!(
                                "kernel mode: `nft list ruleset` during the call does not mention relay address {ip}"
                            ));
                        }
                    }
                }
                Ok(missing) => problems.push(format!(
                    "kernel mode: `nft list ruleset` during the call does not mention relay port(s) {missing:?}"
                )),
                Err(e) => problems.push(format!("kernel mode: {e}")),
            }
        } else {
            problems
                .push("kernel mode: nftables not checked (the SDPs do not name the relays)".into());
        }
    }
    if let Err(e) = flows::bye(&a, &mut da, &b, &db) {
        problems.push(format!("BYE: {e}"));
    }
    if kernel && relay_ports.len() == 2 {
        // bounded wait for the rules to go
        let end = Instant::now() + Duration::from_secs(3);
        loop {
            match lab::nft_mentions(&relay_ports) {
                Ok(missing) if missing.len() == relay_ports.len() => break,
                Ok(missing) if Instant::now() > end => {
                    let left: Vec<u16> = relay_ports
                        .iter()
                        .filter(|p| !missing.contains(p))
                        .copied()
                        .collect();
                    problems.push(format!(
                        "kernel mode: nftables still mentions relay port(s) {left:?} 3 s after BYE"
                    ));
                    break;
                }
                Ok(_) => std::thread::sleep(Duration::from_millis(100)),
                Err(e) => {
                    problems.push(format!("kernel mode: {e}"));
                    break;
                }
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        problems.push(format!(
            "(SDP at Cindy: {}; SDP at Alice: {})",
            sdp::addr_lines(&offer_at_cindy),
            sdp::addr_lines(&answer_at_alice)
        ));
        Err(problems.join("\n    "))
    }
}

fn case1_userspace() -> R<()> {
    case1(&lab::shipped_dir(), "userspace", false)
}

fn case1_kernel() -> R<()> {
    if !instance::is_root() {
        return skip("kernel media mode needs root (nftables)");
    }
    let dir = lab::kernel_dir()?;
    case1(&dir, "kernel", true)
}

fn kernel_switch_unit() -> R<()> {
    let plain = lab::with_kernel_switch("name = \"x\"\n[[realm]]\nname = \"home\"\n");
    if !plain.ends_with("\n[media]\nkernel = true\n") {
        return Err(format!("append failed:\n{plain}"));
    }
    let existing = lab::with_kernel_switch(
        "name = \"x\"\n[media] # relay\nkernel = false\nports = \"1-2\"\n[[realm]]\n",
    );
    if existing != "name = \"x\"\n[media] # relay\nkernel = true\nports = \"1-2\"\n[[realm]]\n" {
        return Err(format!("edit failed:\n{existing}"));
    }
    Ok(())
}

// ---------------------------------------------------------------- main

type Scenario = (&'static str, fn() -> R<()>);

fn scenarios() -> Vec<Scenario> {
    vec![
        ("tone_mulaw_goertzel_unit", tone::self_test),
        ("kernel_switch_unit", kernel_switch_unit),
        ("webrtc_direct_selfcheck", direct_selfcheck),
        ("webrtc_mock_relay_selfcheck", relay_selfcheck),
        ("webrtc_case1_userspace", case1_userspace),
        ("webrtc_case1_kernel", case1_kernel),
    ]
}

fn main() {
    std::process::exit(run());
}

fn run() -> i32 {
    let selected = harness::select(scenarios());
    instance::watchdog("webrtc", GLOBAL_TIMEOUT);
    println!("\nrunning {} webrtc scenarios", selected.len());
    let mut tally = Tally::new();
    for (name, f) in &selected {
        tally.run(name, f);
    }
    println!("\nwebrtc logs: {}", lab::work_dir().display());
    tally.finish()
}

//! Seed Case 2 through both borders of the lab (issue #18): Alice's conference with Bob and
//! Cindy. Alice = a real WebRTC stack (str0m) at operator A, Bob = a plain RTP/AVP PCMU user
//! agent at A, Cindy = a real WebRTC stack at operator B; the conference focus and mixer
//! (tests/support/) sit in A's core at 127.0.10.1:5060, where Palisade A delivers requests from
//! B. Both lab instances run as real processes; Cindy's media is anchored by both borders.
//!
//! harness = false: run with `cargo test --test case2` (optionally `-- NAME...` to run only
//! scenarios whose name contains one of the words).
//!
//! Scenarios:
//! - `units`: the mixer (mix-minus, clipping), RTP packets, conference-info documents.
//! - `conf_refer_dialout`: Alice creates the conference at the factory URI and REFERs the
//!   focus to Bob and to Cindy (dial-out across the border); every participant hears both
//!   others' tones and not its own; Cindy SUBSCRIBEs to the conference state across the border,
//!   gets a NOTIFY listing three participants and, after Bob hangs up, one listing two.
//! - `conf_dial_in`: Alice creates it and adds Bob; Cindy dials in to the conference URI.
//! - `conf_peer_refer`: Cindy dials in and, in her dialog with the focus, REFERs it to add Bob
//!   (REFER, 202 and the refer NOTIFYs cross both borders); then she SUBSCRIBEs to the
//!   conference in that dialog: three participants, and two after Bob hangs up.
//!   Every conference flow also checks that the focus's Contact keeps `isfocus` at Cindy, that
//!   the SDP Cindy gets names only her border, that refer NOTIFYs are message/sipfrag ending
//!   in `200`, that conference-info crosses byte for byte (it names only public URIs), and that
//!   nothing either side's UAs received names the other side's addresses, core host names,
//!   Call-IDs, tags or branches.
//! - `conf_refer_dialout_kernel`: the first flow with the relays in kernel mode (needs root:
//!   skipped otherwise, failed if PALISADE_REQUIRE_ROOT_TESTS=1).
//! - `attended_transfer`: Cindy holds a call with Alice and one with Bob and transfers (REFER
//!   with Replaces in Refer-To); the Replaces that reaches Alice must name A's own leg (the
//!   border translates it), and Alice and Bob then talk, tones detected both ways.
//! - `refer_terminated`, `refer_terminated_from_caller`: A's policy for B says
//!   `refer = "terminate"`; Cindy calls Alice (or Alice calls Cindy), Alice blind-transfers
//!   her to Bob, A's border answers the REFER and calls Bob itself; no REFER
//!   reaches Cindy, Bob is offered the relay port Alice had, Cindy and Bob hear each other.

#[allow(dead_code)] // the two-party run loop of tests/webrtc.rs
#[path = "webrtc/client.rs"]
mod client;
mod common;
#[allow(dead_code)]
#[path = "webrtc/lab.rs"]
mod lab;
#[allow(dead_code)]
#[path = "webrtc/sdp.rs"]
mod sdp;
mod support;
#[path = "webrtc/tone.rs"]
mod tone;

use client::Report;
use common::capture::{self, Capture, Interconnect};
use common::flows;
use common::harness::{self, ensure, skip, Tally};
use common::instance;
use common::msg::{self, Msg};
use common::pcap;
use common::registry;
use common::ua::{self, Dialog, Incoming, Ua, UaConfig};
use lab::Lab;
use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::endpoint::{remote_of, Endpoint, Offered};
use support::focus::{self, Focus};
use support::rtp::{self, RtpPeer};
use support::{confinfo, mixer};
use tone::{Audio, Tone};

type R<T> = Result<T, String>;

const ALICE: &str = "sip:alice@operator-a.example";
const BOB: &str = "sip:bob@operator-a.example";
const CINDY: &str = "sip:cindy@operator-b.example";
/// Alice's and Bob's user agents: other ports of A's core address.
const ALICE_SIP: &str = "127.0.10.1:5071";
const BOB_SIP: &str = "127.0.10.1:5072";
const A_CORE_IP: &str = "127.0.10.1";
const CINDY_IP: &str = "127.0.40.1";
/// The relay address of A's border toward its core.
const A_RELAY: &str = "127.0.10.2";
/// Where Cindy must get media from: her border's relay.
const B_RELAY: &str = "127.0.40.2";
const ALICE_FREQ: f64 = 440.0;
const BOB_FREQ: f64 = 660.0;
const CINDY_FREQ: f64 = 880.0;
/// Bound of SIP waits that cross both borders (and wait for a dial-out to be answered).
const SIP_WAIT: Duration = Duration::from_secs(10);
/// Bound of the media phase (ICE, DTLS, audio through the mixer).
const MEDIA_LIMIT: Duration = Duration::from_secs(25);
/// Audio each participant must receive (3 s), of which the last 1.5 s are analysed.
const ENOUGH_SAMPLES: usize = 24000;
const ANALYSED: usize = 12000;
const DOMINANCE: f64 = 10.0;
const GLOBAL_TIMEOUT: Duration = Duration::from_secs(8 * 60);
/// The relay port range of both lab borders (policies/lab).
const LAB_RELAY_PORTS: (u16, u16) = (20_000, 29_999);

// ---------------------------------------------------------------- participants

struct Party {
    name: &'static str,
    uri: &'static str,
    ua: Ua,
    freq: f64,
    media: Option<Endpoint>,
    /// The SDP this party received from the far end (for the anchoring checks).
    remote_sdp: String,
}

fn a_user(user: &str, addr: &str) -> R<Ua> {
    let mut c = UaConfig::a_core(user);
    c.bind = addr.parse().unwrap();
    c.advertise = c.bind;
    // A's core (the focus process plays it) is where A's users send their requests
    c.proxy = focus::ADDR.parse().unwrap();
    c.listen_tcp = false;
    Ua::new(c)
}

impl Party {
    fn alice() -> R<Party> {
        Party::new("alice", ALICE, a_user("alice", ALICE_SIP)?, ALICE_FREQ)
    }
    fn bob() -> R<Party> {
        Party::new("bob", BOB, a_user("bob", BOB_SIP)?, BOB_FREQ)
    }
    fn cindy() -> R<Party> {
        Party::new(
            "cindy",
            CINDY,
            Ua::new(UaConfig::b_core("cindy"))?,
            CINDY_FREQ,
        )
    }
    fn new(name: &'static str, uri: &'static str, ua: Ua, freq: f64) -> R<Party> {
        Ok(Party {
            name,
            uri,
            ua,
            freq,
            media: None,
            remote_sdp: String::new(),
        })
    }

    fn ip(&self) -> &'static str {
        if self.name == "cindy" {
            CINDY_IP
        } else {
            A_CORE_IP
        }
    }

    /// Bob is the plain RTP/AVP terminal; Alice and Cindy are WebRTC clients.
    fn webrtc(&self) -> bool {
        self.name != "bob"
    }

    /// Call `target` with this party's kind of offer; on 200 the dialog (media ready).
    fn call(&mut self, target: &str, extra: &[(&str, String)]) -> R<(Dialog, Msg)> {
        let (offer, offered) = Offered::new(self.name, self.ip(), self.webrtc())?;
        let (tx, mut dlg) = self.ua.invite_with(target, &offer, extra)?;
        let ok = wait_final_long(&self.ua, &tx)?;
        if ok.status() != 200 {
            return Err(format!("{}: INVITE {target} got {}", self.name, ok.start));
        }
        self.ua.ack_2xx(&mut dlg, &ok)?;
        let answer = ok.body_str();
        self.media = Some(offered.complete(&answer)?);
        self.remote_sdp = answer;
        Ok((dlg, ok))
    }

    /// Answer the next INVITE (within SIP_WAIT) with this party's kind of media.
    fn answer(&mut self) -> R<(Dialog, Incoming)> {
        let inc = self.ua.wait_request_for("INVITE", None, SIP_WAIT)?;
        let offer = inc.msg.body_str();
        let (answer, media) = Endpoint::answer(self.name, self.ip(), &offer, self.webrtc())?;
        let dlg = self
            .ua
            .answer_invite(&inc, 200, &answer)?
            .ok_or("no dialog")?;
        self.ua.wait_ack(&dlg)?;
        self.media = Some(media);
        self.remote_sdp = offer;
        Ok((dlg, inc))
    }
}

/// The final response to `tx`, bounded by SIP_WAIT (it may wait for a dial-out).
fn wait_final_long(ua: &Ua, tx: &ua::ClientTx) -> R<Msg> {
    ua.wait_response_for(tx, 200, SIP_WAIT)
}

fn has_isfocus(m: &Msg) -> bool {
    m.header_values("contact").iter().any(|c| {
        c.split(';')
            .skip(1)
            .any(|p| p.trim().eq_ignore_ascii_case("isfocus"))
    })
}

// ---------------------------------------------------------------- media phase

/// A participant's audio: its tone out, how much it heard published, stop on request.
struct Speaker {
    tone: Tone,
    heard: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Audio for Speaker {
    fn next_frame(&mut self) -> Vec<u8> {
        self.tone.next_frame()
    }
    fn heard(&mut self, total: usize, _samples: &[i16]) {
        self.heard.store(total, Ordering::Relaxed);
    }
    fn done(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// Run every party's media until each heard ENOUGH_SAMPLES (or MEDIA_LIMIT); each must hear
/// every other party's tone over its own (mix-minus), and Cindy only from her border's relay.
fn conference_audio(parties: &mut [&mut Party]) -> R<Vec<String>> {
    let stop = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + MEDIA_LIMIT;
    let mut runs = Vec::new();
    for p in parties.iter_mut() {
        let heard = Arc::new(AtomicUsize::new(0));
        let audio = Box::new(Speaker {
            tone: Tone::new(p.freq),
            heard: heard.clone(),
            stop: stop.clone(),
        });
        let media = p.media.take().ok_or(format!("{} has no media", p.name))?;
        let t = media.spawn(audio, deadline);
        runs.push((heard, t));
    }
    while Instant::now() < deadline
        && runs
            .iter()
            .any(|(h, _)| h.load(Ordering::Relaxed) < ENOUGH_SAMPLES)
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    let reports: Vec<Report> = runs
        .into_iter()
        .map(|(_, t)| {
            t.join().unwrap_or_else(|_| Report {
                error: Some("run loop panicked".into()),
                ..Default::default()
            })
        })
        .collect();
    let freqs: Vec<(&str, f64)> = parties.iter().map(|p| (p.name, p.freq)).collect();
    let mut problems = Vec::new();
    let mut info = Vec::new();
    for (r, (me, own)) in reports.iter().zip(&freqs) {
        if let Some(e) = &r.error {
            problems.push(format!("{me}: {e}"));
        }
        if r.connected_after.is_none() {
            problems.push(format!(
                "{me}: media did not connect within {MEDIA_LIMIT:?} (ICE states: [{}]; datagrams from: [{}])",
                r.ice_states.join(", "),
                r.sources_str()
            ));
            continue;
        }
        let tail = &r.samples[r.samples.len().saturating_sub(ANALYSED)..];
        for (other, f) in freqs.iter().filter(|(n, _)| n != me) {
            match tone::check_dominant(tail, *f, *own, DOMINANCE, ANALYSED) {
                Ok(s) => info.push(format!("{me} hears {other}: {s}")),
                Err(e) => problems.push(format!(
                    "{me} does not hear {other} over its own tone ({} ms received in all): {e}",
                    r.samples.len() / 8
                )),
            }
        }
        if *me == "cindy" {
            let relay: IpAddr = B_RELAY.parse().unwrap();
            let bad: Vec<String> = r
                .sources
                .iter()
                .filter(|(a, _)| a.ip() != relay)
                .map(|(a, n)| format!("{a} ({n})"))
                .collect();
            if !bad.is_empty() {
                problems.push(format!(
                    "cindy received media not via her border's relay {relay}: from {}",
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

/// The SDP Cindy got names only her border (anchored: no address of A's side, no port of
/// the focus's media endpoints `focus_ports`).
fn cindy_sdp_checks(cindy: &Party, focus_ports: &[u16]) -> R<()> {
    let seen = &cindy.remote_sdp;
    let mut problems: Vec<String> = Vec::new();
    for port in focus_ports {
        for l in sdp::leaks(seen, &["127.0.10.", "127.0.20."], "the focus", *port) {
            if !problems.contains(&l) {
                problems.push(l);
            }
        }
    }
    match sdp::media_endpoint(seen) {
        Some((ip, _)) if ip == B_RELAY => {}
        other => problems.push(format!(
            "SDP at Cindy names media endpoint {other:?}, not her border's relay {B_RELAY}"
        )),
    }
    ensure(problems.is_empty(), || {
        format!(
            "{}\n    SDP at Cindy: {}",
            problems.join("\n    "),
            sdp::addr_lines(seen)
        )
    })
}

// ---------------------------------------------------------------- conference steps

struct Conf {
    focus: Focus,
    alice: Party,
    bob: Party,
    cindy: Party,
}

impl Conf {
    fn new() -> R<Conf> {
        let focus = Focus::start(focus::Config {
            users: vec![
                ("alice".into(), ALICE_SIP.parse().unwrap()),
                ("bob".into(), BOB_SIP.parse().unwrap()),
            ],
            webrtc: vec![CINDY.into()],
            deadline: Instant::now() + GLOBAL_TIMEOUT,
        })?;
        Ok(Conf {
            focus,
            alice: Party::alice()?,
            bob: Party::bob()?,
            cindy: Party::cindy()?,
        })
    }

    /// Every problem the focus met, as an error.
    fn focus_ok(&self) -> R<()> {
        let p = self.focus.problems();
        ensure(p.is_empty(), || format!("the focus met problems: {p:?}"))
    }

    /// Nothing of one operator's inside reached the other's user agents (in any header or
    /// body: INVITE, REFER, NOTIFY, SUBSCRIBE, sipfrag, conference-info, SDP): no address of
    /// the other's core or border, no core host name, no Call-ID, tag or branch made there.
    fn no_leaks(&self) -> R<()> {
        let a_side = [
            ("alice", &self.alice.ua),
            ("bob", &self.bob.ua),
            ("focus", self.focus.ua()),
        ];
        let inside = |ids: Vec<String>, addrs: [&str; 3]| {
            let mut v = ids;
            v.extend(addrs.iter().map(|s| s.to_string()));
            v
        };
        let a_needles = inside(
            a_side.iter().flat_map(|(_, u)| u.generated_ids()).collect(),
            ["127.0.10.", "127.0.20.", "operator-a-core.internal"],
        );
        let b_needles = inside(
            self.cindy.ua.generated_ids(),
            ["127.0.40.", "127.0.30.", "operator-b-core.internal"],
        );
        let mut hits = pcap::find_leaks(
            &[("at cindy".into(), self.cindy.ua.received_bytes())],
            &a_needles,
        );
        for (name, u) in a_side {
            hits.extend(pcap::find_leaks(
                &[(format!("at {name}"), u.received_bytes())],
                &b_needles,
            ));
        }
        hits.truncate(20);
        ensure(hits.is_empty(), || {
            format!(
                "the other operator's inside crossed:\n    {}",
                hits.join("\n    ")
            )
        })
    }

    /// Cindy, subscribed to the conference, is told of three participants; Bob hangs up and
    /// she is told of two.
    fn bob_leaves(&self, bob_dlg: &mut Dialog) -> R<()> {
        lists(&conf_notify(self)?, &["alice", "bob", "cindy"])?;
        hang_up(&self.bob, bob_dlg)?;
        lists(&conf_notify(self)?, &["alice", "cindy"])
    }

    /// Alice creates the conference and REFERs the focus to Bob, who answers; (Alice's dialog
    /// with the focus, Bob's).
    fn alice_adds_bob(&mut self) -> R<(Dialog, Dialog)> {
        let mut alice_dlg = create(&mut self.alice)?;
        refer(&self.alice, &mut alice_dlg, BOB)?;
        let (bob_dlg, _) = self.bob.answer()?;
        refer_done(&self.alice, &alice_dlg)?;
        Ok((alice_dlg, bob_dlg))
    }

    fn audio(&mut self) -> R<()> {
        self.focus.wait_members(3, SIP_WAIT)?;
        cindy_sdp_checks(&self.cindy, &self.focus.media_ports())?;
        let info = conference_audio(&mut [&mut self.alice, &mut self.bob, &mut self.cindy])?;
        for l in info {
            println!("    {l}");
        }
        Ok(())
    }
}

/// Alice creates the conference at the factory URI; her dialog with the focus.
fn create(alice: &mut Party) -> R<Dialog> {
    let (dlg, ok) = alice.call(focus::FACTORY, &[])?;
    ensure(has_isfocus(&ok), || {
        format!(
            "the focus's 200 has no isfocus Contact: {:?}",
            ok.header_values("contact")
        )
    })?;
    Ok(dlg)
}

/// `from` REFERs the focus (in dialog `dlg`) to `target`: 202.
fn refer(from: &Party, dlg: &mut Dialog, target: &str) -> R<()> {
    let tx = from.ua.request_ext(
        dlg,
        "REFER",
        None,
        &[
            ("Refer-To", format!("<{target}>")),
            ("Referred-By", format!("<{}>", from.uri)),
        ],
    )?;
    let r = wait_final_long(&from.ua, &tx)?;
    ensure(r.status() == 202, || {
        format!("{}: REFER to {target} answered {}", from.name, r.start)
    })
}

/// The refer NOTIFYs in `dlg` up to the terminating one, each answered 200; its sipfrag
/// must be a 200.
fn refer_done(p: &Party, dlg: &Dialog) -> R<()> {
    let mut frags = Vec::new();
    loop {
        let n =
            p.ua.wait_request_for("NOTIFY", Some(&dlg.call_id), SIP_WAIT)?;
        p.ua.respond(&n, 200, "OK", None, None)?;
        let m = &n.msg;
        ensure(
            m.header("event")
                .is_some_and(|e| e.trim().starts_with("refer")),
            || format!("{}: NOTIFY with Event {:?}", p.name, m.header("event")),
        )?;
        let ct = m.header("content-type").unwrap_or("");
        ensure(ct.starts_with("message/sipfrag"), || {
            format!("{}: refer NOTIFY with Content-Type {ct:?}", p.name)
        })?;
        let frag = m.body_str();
        frags.push(frag.lines().next().unwrap_or("").to_string());
        let state = m.header("subscription-state").unwrap_or("");
        if state.trim().starts_with("terminated") {
            return ensure(frag.starts_with("SIP/2.0 200"), || {
                format!("{}: refer NOTIFYs ended with {frags:?}", p.name)
            });
        }
    }
}

/// Cindy dials in to the conference URI.
fn dial_in(cindy: &mut Party) -> R<Dialog> {
    let (dlg, ok) = cindy.call(focus::CONF_URI, &[])?;
    ensure(has_isfocus(&ok), || {
        format!(
            "the 200 from the focus reached Cindy without isfocus: {:?}",
            ok.header_values("contact")
        )
    })?;
    Ok(dlg)
}

/// A dial-out reaching Cindy: the INVITE must come from the focus (isfocus kept).
fn cindy_answers(cindy: &mut Party) -> R<Dialog> {
    let (dlg, inc) = cindy.answer()?;
    ensure(has_isfocus(&inc.msg), || {
        format!(
            "the focus's INVITE reached Cindy without isfocus: {:?}",
            inc.msg.header_values("contact")
        )
    })?;
    Ok(dlg)
}

fn hang_up(p: &Party, dlg: &mut Dialog) -> R<()> {
    let tx = p.ua.request(dlg, "BYE", None)?;
    let r = wait_final_long(&p.ua, &tx)?;
    ensure(r.status() == 200, || {
        format!("{}: BYE answered {}", p.name, r.start)
    })
}

/// The next conference NOTIFY at Cindy (answered 200); the users it lists. Its body names
/// only public URIs, so it must have crossed unchanged: one the focus sent, byte for byte.
fn conf_notify(c: &Conf) -> R<Vec<String>> {
    let p = &c.cindy;
    let n = p.ua.wait_for("conference NOTIFY", SIP_WAIT, |i| {
        i.msg.method() == Some("NOTIFY")
            && i.msg
                .header("event")
                .is_some_and(|e| e.trim().starts_with("conference"))
    })?;
    p.ua.respond(&n, 200, "OK", None, None)?;
    let ct = n.msg.header("content-type").unwrap_or("");
    ensure(ct.starts_with(confinfo::CONTENT_TYPE), || {
        format!("conference NOTIFY with Content-Type {ct:?}")
    })?;
    let body = n.msg.body_str();
    let sent = c.focus.ua().sent();
    ensure(sent.iter().any(|m| m.body == n.msg.body), || {
        format!("the conference-info at Cindy is not one the focus sent:\n{body}")
    })?;
    Ok(confinfo::users(&body))
}

/// The headers of a SUBSCRIBE to the conference event package (RFC 4575).
fn conf_subscription(expires: u32) -> [(&'static str, String); 3] {
    [
        ("Event", "conference".into()),
        ("Accept", confinfo::CONTENT_TYPE.into()),
        ("Expires", expires.to_string()),
    ]
}

/// The final response to `tx` at `p`, which must be a 2xx (`what` names the request).
fn accepted(p: &Party, tx: &ua::ClientTx, what: &str) -> R<Msg> {
    let r = wait_final_long(&p.ua, tx)?;
    ensure((200..300).contains(&r.status()), || {
        format!("{}: {what} answered {}", p.name, r.start)
    })?;
    Ok(r)
}

/// The dialog a SUBSCRIBE (`tx`) created with its 2xx `ok` (RFC 6665 §4.1.2.4).
fn subscription_dialog(tx: &ua::ClientTx, ok: &Msg) -> R<Dialog> {
    let req = &tx.req;
    let mut route_set = ok.header_values("record-route");
    route_set.reverse();
    Ok(Dialog {
        call_id: req.call_id().unwrap_or("").to_string(),
        local_tag: req.from_tag().ok_or("SUBSCRIBE without From tag")?,
        remote_tag: ok.to_tag().ok_or("2xx to SUBSCRIBE without To tag")?,
        local_uri: msg::uri_of(req.header("from").unwrap_or("")).to_string(),
        remote_uri: msg::uri_of(req.header("to").unwrap_or("")).to_string(),
        remote_target: ok.contact_uri().ok_or("2xx to SUBSCRIBE without Contact")?,
        route_set,
        local_cseq: req.cseq().map(|c| c.0).unwrap_or(1),
        invite_cseq: 0,
        transport: tx.transport,
    })
}

/// `users` are exactly the participants named by `who` (user names).
fn lists(users: &[String], who: &[&str]) -> R<()> {
    let ok = users.len() == who.len()
        && who
            .iter()
            .all(|w| users.iter().any(|u| u.contains(&format!("{w}@"))));
    ensure(ok, || {
        format!("conference-info lists {users:?}, want {who:?}")
    })
}

// ---------------------------------------------------------------- scenarios

/// What a scenario's interconnect capture must show: the requests that crossed between the
/// borders (so the leak search read them), and those that must not have.
struct Wire {
    crosses: &'static [&'static str],
    never: &'static [&'static str],
}

/// Runs `f` against a fresh lab whose interconnect is captured (tcpdump, decrypted with the
/// instances' TLS key log), then checks the capture: the requests `wire` names crossed (or did
/// not), and nothing of either home network (addresses, core host names, any Call-ID, tag or
/// branch a test user agent or the focus made) is in any header or body that crossed, every
/// SDP naming only the borders' relays. Without root, tcpdump or tshark the flow still runs,
/// and the scenario is then reported skipped (a failure when root tests are required).
fn with_lab(dir: &Path, tag: &str, wire: Wire, f: impl FnOnce() -> R<()>) -> R<()> {
    instance::wait_lab_free(Duration::from_secs(60))?;
    let keylog = work_dir().join(format!("{tag}-tls-keys.log"));
    let _ = std::fs::remove_file(&keylog);
    let unavailable = capture::unavailable();
    let mut cap = match unavailable {
        None => Some(Capture::start(work_dir().join(format!("{tag}.pcap")))?),
        Some(_) => None,
    };
    let mut lab = Lab::start_keylog(dir, tag, &work_dir(), Some(&keylog))
        .map_err(|e| format!("lab did not start: {e}"))?;
    let res = f();
    let alive = lab.alive();
    drop(lab);
    res.and(alive)?;
    match (cap.as_mut(), unavailable) {
        (Some(cap), _) => interconnect_clean(&cap.finish(&keylog)?, &wire),
        (None, why) => skip(&format!("the flow passed; {}", why.unwrap_or_default())),
    }
}

/// The checks of [`with_lab`] on a scenario's interconnect.
fn interconnect_clean(ic: &Interconnect, wire: &Wire) -> R<()> {
    // Each request named crossed, and (but for ACK) its answer did.
    ic.holds_sip(2 * wire.crosses.len())?;
    let methods = ic.methods();
    for m in wire.crosses {
        ensure(methods.contains(*m), || {
            format!("no {m} crossed the interconnect (saw {methods:?})")
        })?;
    }
    for m in wire.never {
        ensure(!methods.contains(*m), || {
            format!("a {m} crossed the interconnect")
        })?;
    }
    let mut hits = ic.leaks(&capture::needles(registry::all()), LAB_RELAY_PORTS);
    let n = hits.len();
    hits.truncate(20);
    ensure(hits.is_empty(), || {
        format!(
            "{n} leak(s) on the interconnect ({} SIP messages):\n    {}",
            ic.sip,
            hits.join("\n    ")
        )
    })
}

fn work_dir() -> std::path::PathBuf {
    instance::work_dir("case2")
}

/// The relay ports of Cindy's leg: on B's relay (her SDP) and on A's (the SDP the focus got).
fn cindy_relay_ports(c: &Conf) -> Vec<u16> {
    let a_side = c
        .focus
        .ua()
        .received()
        .iter()
        .filter_map(|m| sdp::media_endpoint(&m.body_str()))
        .filter(|(ip, _)| ip == A_RELAY)
        .map(|(_, p)| p)
        .next_back();
    let b_side = sdp::media_endpoint(&c.cindy.remote_sdp)
        .filter(|(ip, _)| ip == B_RELAY)
        .map(|(_, p)| p);
    a_side.into_iter().chain(b_side).collect()
}

/// Kernel mode: Cindy's flows are in nftables while her call is up.
fn kernel_flows_present(ports: &[u16]) -> R<()> {
    ensure(ports.len() == 2, || {
        format!("kernel mode: the SDPs do not name both relays (ports {ports:?})")
    })?;
    let missing = lab::nft_mentions(ports)?;
    ensure(missing.is_empty(), || {
        format!("kernel mode: `nft list ruleset` during the call does not mention relay port(s) {missing:?}")
    })?;
    let text = lab::nft_ruleset()?;
    let absent: Vec<&str> = [A_RELAY, B_RELAY]
        .into_iter()
        .filter(|ip| !text.contains(ip))
        .collect();
    ensure(absent.is_empty(), || {
        format!("kernel mode: `nft list ruleset` during the call does not mention {absent:?}")
    })
}

/// Kernel mode: and gone (bounded wait) once it ended.
fn kernel_flows_gone(ports: &[u16]) -> R<()> {
    let end = Instant::now() + Duration::from_secs(3);
    loop {
        let missing = lab::nft_mentions(ports)?;
        if missing.len() == ports.len() {
            return Ok(());
        }
        if Instant::now() > end {
            let left: Vec<&u16> = ports.iter().filter(|p| !missing.contains(p)).collect();
            return Err(format!(
                "kernel mode: nftables still mentions relay port(s) {left:?} 3 s after BYE"
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Flow (a): Alice creates the conference and REFERs the focus to Bob and to Cindy; then
/// Cindy's subscription to the conference state. `kernel`: the relays' flows must be in
/// nftables during the call and gone after it.
fn refer_dialout(kernel: bool) -> R<()> {
    let mut c = Conf::new()?;
    let (mut alice_dlg, mut bob_dlg) = c.alice_adds_bob()?;
    refer(&c.alice, &mut alice_dlg, CINDY)?;
    let mut cindy_dlg = cindy_answers(&mut c.cindy)?;
    refer_done(&c.alice, &alice_dlg)?;
    c.audio()?;
    let ports = cindy_relay_ports(&c);
    if kernel {
        kernel_flows_present(&ports)?;
    }

    // Cindy subscribes to the conference across the border (out of dialog)
    let tx = c
        .cindy
        .ua
        .out_of_dialog("SUBSCRIBE", focus::CONF_URI, &conf_subscription(600))?;
    let r = accepted(&c.cindy, &tx, "SUBSCRIBE")?;
    let mut sub = subscription_dialog(&tx, &r)?;
    c.bob_leaves(&mut bob_dlg)?;
    // and ends it (in the subscription's dialog)
    let tx = c
        .cindy
        .ua
        .request_ext(&mut sub, "SUBSCRIBE", None, &conf_subscription(0))?;
    accepted(&c.cindy, &tx, "un-SUBSCRIBE")?;
    conf_notify(&c)?;

    hang_up(&c.cindy, &mut cindy_dlg)?;
    if kernel {
        kernel_flows_gone(&ports)?;
    }
    hang_up(&c.alice, &mut alice_dlg)?;
    c.no_leaks()?;
    c.focus_ok()
}

/// Flow (b): Alice creates the conference and adds Bob; Cindy dials in.
fn dial_in_flow() -> R<()> {
    let mut c = Conf::new()?;
    let (mut alice_dlg, mut bob_dlg) = c.alice_adds_bob()?;
    let mut cindy_dlg = dial_in(&mut c.cindy)?;
    c.audio()?;
    hang_up(&c.cindy, &mut cindy_dlg)?;
    hang_up(&c.bob, &mut bob_dlg)?;
    hang_up(&c.alice, &mut alice_dlg)?;
    c.no_leaks()?;
    c.focus_ok()
}

/// Flow (c): Cindy dials in and REFERs the focus (in her dialog) to add Bob.
fn peer_refer() -> R<()> {
    let mut c = Conf::new()?;
    let mut alice_dlg = create(&mut c.alice)?;
    let mut cindy_dlg = dial_in(&mut c.cindy)?;
    refer(&c.cindy, &mut cindy_dlg, BOB)?;
    let (mut bob_dlg, _) = c.bob.answer()?;
    refer_done(&c.cindy, &cindy_dlg)?;
    c.audio()?;
    // Cindy subscribes to the conference in her dialog with the focus
    let tx = c
        .cindy
        .ua
        .request_ext(&mut cindy_dlg, "SUBSCRIBE", None, &conf_subscription(600))?;
    accepted(&c.cindy, &tx, "in-dialog SUBSCRIBE")?;
    c.bob_leaves(&mut bob_dlg)?;
    hang_up(&c.cindy, &mut cindy_dlg)?;
    hang_up(&c.alice, &mut alice_dlg)?;
    c.no_leaks()?;
    c.focus_ok()
}

/// The dial-out flow's interconnect: the focus's INVITE to Cindy, her SUBSCRIBE and the
/// NOTIFYs; Alice's REFER stays inside A.
const DIALOUT: Wire = Wire {
    crosses: &["INVITE", "ACK", "SUBSCRIBE", "NOTIFY", "BYE"],
    never: &["REFER"],
};

fn conf_refer_dialout() -> R<()> {
    with_lab(&lab::shipped_dir(), "userspace-dialout", DIALOUT, || {
        refer_dialout(false)
    })
}

fn conf_dial_in() -> R<()> {
    let wire = Wire {
        crosses: &["INVITE", "ACK", "BYE"],
        never: &["REFER"],
    };
    with_lab(&lab::shipped_dir(), "userspace-dialin", wire, dial_in_flow)
}

fn conf_peer_refer() -> R<()> {
    let wire = Wire {
        crosses: &["INVITE", "REFER", "NOTIFY", "SUBSCRIBE", "BYE"],
        never: &[],
    };
    with_lab(
        &lab::shipped_dir(),
        "userspace-peer-refer",
        wire,
        peer_refer,
    )
}

fn conf_refer_dialout_kernel() -> R<()> {
    if !instance::is_root() {
        return skip("kernel media mode needs root (nftables)");
    }
    let dir = lab::kernel_dir_in(&work_dir())?;
    with_lab(&dir, "kernel-dialout", DIALOUT, || refer_dialout(true))
}

// ---------------------------------------------------------------- attended transfer

/// Percent-decoding of a URI header value (`%3B` → `;`).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let hex = (b[i] == b'%' && i + 2 < b.len())
            .then(|| u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).ok()?, 16).ok())
            .flatten();
        match hex {
            Some(v) => {
                out.push(v);
                i += 3;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// (target, Replaces value) of a Refer-To header value with an embedded Replaces.
fn split_refer_to(v: &str) -> (String, Option<String>) {
    let uri = msg::uri_of(v);
    match uri.split_once('?') {
        Some((target, headers)) => {
            let replaces = headers
                .split('&')
                .find_map(|h| {
                    let (name, value) = h.split_once('=')?;
                    name.eq_ignore_ascii_case("replaces").then_some(value)
                })
                .map(unescape);
            (target.to_string(), replaces)
        }
        None => (uri.to_string(), None),
    }
}

/// Does the Replaces value `r` (RFC 3891) name dialog `d` as its own UA sees it?
fn replaces_names(r: &str, d: &Dialog) -> bool {
    let call_id = r.split(';').next().unwrap_or("").trim();
    let v = format!("<>;{}", r.split_once(';').map(|x| x.1).unwrap_or(""));
    call_id == d.call_id
        && msg::param(&v, "to-tag").as_deref() == Some(d.local_tag.as_str())
        && msg::param(&v, "from-tag").as_deref() == Some(d.remote_tag.as_str())
}

/// Cindy calls Alice and Bob, holds both, and REFERs Bob to Alice with Replaces.
fn transfer() -> R<()> {
    // The lab has no WebRTC gateway and Bob is a plain RTP/AVP terminal, so in this scenario
    // every call is plain RTP/AVP: Alice's client talks RTP/AVP to Bob. The focus plays A's core.
    let mut c = Conf::new()?;
    let (alice, bob, cindy) = (&mut c.alice, &mut c.bob, &c.cindy);
    // Cindy calls Alice and puts her on hold, then calls Bob and puts him on hold
    let mut to_alice = flows::establish(&cindy.ua, &alice.ua, ALICE)?;
    flows::reinvite(
        &cindy.ua,
        &mut to_alice.a,
        &alice.ua,
        &to_alice.b,
        2,
        "sendonly",
    )?;
    let mut to_bob = flows::establish(&cindy.ua, &bob.ua, BOB)?;
    flows::reinvite(&cindy.ua, &mut to_bob.a, &bob.ua, &to_bob.b, 2, "sendonly")?;
    let (c_a, a_c) = (to_alice.a, to_alice.b);
    let (mut c_b, mut b_c) = (to_bob.a, to_bob.b);

    // Cindy transfers: REFER to Bob, Refer-To Alice with Replaces naming Cindy's leg to Alice
    let replaces = format!(
        "{}%3Bto-tag%3D{}%3Bfrom-tag%3D{}",
        c_a.call_id.replace('@', "%40"),
        c_a.remote_tag,
        c_a.local_tag
    );
    let tx = cindy.ua.request_ext(
        &mut c_b,
        "REFER",
        None,
        &[
            ("Refer-To", format!("<{ALICE}?Replaces={replaces}>")),
            ("Referred-By", format!("<{CINDY}>")),
        ],
    )?;
    let refer_at_bob = bob
        .ua
        .wait_request_for("REFER", Some(&b_c.call_id), SIP_WAIT)?;
    bob.ua.respond(&refer_at_bob, 202, "Accepted", None, None)?;
    let r = wait_final_long(&cindy.ua, &tx)?;
    ensure(r.status() == 202, || {
        format!("REFER answered {} at Cindy", r.start)
    })?;
    let refer_to = refer_at_bob
        .msg
        .header("refer-to")
        .unwrap_or("")
        .to_string();
    let (target, rep) = split_refer_to(&refer_to);
    let rep = rep.ok_or_else(|| format!("the Refer-To at Bob lost its Replaces: {refer_to}"))?;
    refer_frag(bob, &mut b_c, "SIP/2.0 100 Trying", "active;expires=60")?;
    // Bob calls the target with the Replaces he was given
    let bob_rtp = RtpPeer::new("bob", A_CORE_IP)?;
    let (tx, mut b_a) = bob
        .ua
        .invite_with(&target, &bob_rtp.sdp(1), &[("Replaces", rep)])?;
    let inc = alice.ua.wait_request_for("INVITE", None, SIP_WAIT)?;
    let got = inc.msg.header("replaces").unwrap_or("").to_string();
    ensure(replaces_names(&got, &a_c), || {
        format!(
            "the Replaces that reached Alice does not name her leg with Cindy (Call-ID {}, local tag {}, remote tag {}): {got:?}",
            a_c.call_id, a_c.local_tag, a_c.remote_tag
        )
    })?;
    let alice_rtp = RtpPeer::new("alice", A_CORE_IP)?;
    let a_b = alice
        .ua
        .answer_invite(&inc, 200, &alice_rtp.sdp(1))?
        .ok_or("no dialog")?;
    alice.media = Some(Endpoint::Rtp(alice_rtp, remote_of(&inc.msg.body_str())?));
    let ok = wait_final_long(&bob.ua, &tx)?;
    ensure(ok.status() == 200, || format!("Bob → Alice: {}", ok.start))?;
    bob.ua.ack_2xx(&mut b_a, &ok)?;
    alice.ua.wait_ack(&a_b)?;
    bob.media = Some(Endpoint::Rtp(bob_rtp, remote_of(&ok.body_str())?));
    // the replaced leg ends (RFC 3891), the transfer is reported, Cindy hangs up on Bob
    let mut a_c = a_c;
    flows::bye(&alice.ua, &mut a_c, &cindy.ua, &c_a)
        .map_err(|e| format!("Alice's BYE to Cindy: {e}"))?;
    refer_frag(
        bob,
        &mut b_c,
        "SIP/2.0 200 OK",
        "terminated;reason=noresource",
    )?;
    refer_done(cindy, &c_b)?;
    let info = conference_audio(&mut [alice, bob])?;
    for l in info {
        println!("    {l}");
    }
    flows::bye(&cindy.ua, &mut c_b, &bob.ua, &b_c)?;
    let mut a_b = a_b;
    flows::bye(&alice.ua, &mut a_b, &bob.ua, &b_a)?;
    c.no_leaks()?;
    c.focus_ok()
}

/// A NOTIFY of the refer subscription from `p` in `dlg` carrying the sipfrag `status`.
fn refer_frag(p: &Party, dlg: &mut Dialog, status: &str, state: &str) -> R<()> {
    let body = format!("{status}\r\n");
    p.ua.request_ext(
        dlg,
        "NOTIFY",
        Some(("message/sipfrag;version=2.0", &body)),
        &[
            ("Event", "refer".into()),
            ("Subscription-State", state.into()),
        ],
    )
    .map(drop)
}

fn attended_transfer() -> R<()> {
    let wire = Wire {
        crosses: &["INVITE", "REFER", "NOTIFY", "BYE"],
        never: &[],
    };
    with_lab(&lab::shipped_dir(), "userspace-transfer", wire, transfer)
}

// ---------------------------------------------------------------- REFER terminated at A

/// A copy of the lab files in which A's policy for B says `refer = "terminate"`.
fn terminate_dir() -> R<std::path::PathBuf> {
    let dir = work_dir().join("lab-refer-terminate");
    let _ = std::fs::remove_dir_all(&dir);
    let patch = |p: &Path, text: String| {
        if p.ends_with("operator-a/operator-b.toml") {
            format!("refer = \"terminate\"\n{text}")
        } else {
            text
        }
    };
    common::labfiles::copy_dir(&lab::shipped_dir(), &dir, &patch)?;
    Ok(dir)
}

/// Alice and Cindy talk (Cindy called when `alice_calls` is false, Alice called otherwise);
/// Alice transfers Cindy to Bob with a blind REFER, which A's border (its policy for B says
/// `refer = "terminate"`) handles itself: 202 and the sipfrag NOTIFYs to Alice, its own INVITE
/// to Bob offering the relay ports Alice had, Alice's leg released with BYE. Cindy never sees a
/// REFER, and she and Bob then talk through the same relay ports, tones detected both ways.
/// Both directions matter: the REFER then arrives on the session's caller leg or its callee
/// leg, and the target's leg takes that place.
fn terminated(alice_calls: bool) -> R<()> {
    let mut c = Conf::new()?;
    let (alice, bob, cindy) = (&mut c.alice, &mut c.bob, &mut c.cindy);
    let cindy_rtp = RtpPeer::new("cindy", CINDY_IP)?;
    let alice_sdp = ua::sdp(A_CORE_IP, 40000, 1, "sendrecv");
    // (Alice's dialog, Cindy's, the SDP A's border gave Alice, the media address Cindy got)
    let (mut a_c, mut c_a, alice_offer, mut cindy_remote) = if alice_calls {
        // Alice's user agent sends straight to her border (the focus plays A's core only for
        // requests toward A's users).
        let (tx, mut a_c) =
            alice
                .ua
                .invite_to(CINDY, &alice_sdp, &[], focus::BORDER.parse().unwrap())?;
        let inc = cindy.ua.wait_request_for("INVITE", None, SIP_WAIT)?;
        let cindy_remote = remote_of(&inc.msg.body_str())?;
        let c_a = cindy
            .ua
            .answer_invite(&inc, 200, &cindy_rtp.sdp(1))?
            .ok_or("no dialog")?;
        let ok = wait_final_long(&alice.ua, &tx)?;
        ensure(ok.status() == 200, || {
            format!("Alice → Cindy: {}", ok.start)
        })?;
        alice.ua.ack_2xx(&mut a_c, &ok)?;
        cindy.ua.wait_ack(&c_a)?;
        (a_c, c_a, ok.body_str().to_string(), cindy_remote)
    } else {
        let (tx, mut c_a) = cindy.ua.invite(ALICE, &cindy_rtp.sdp(1))?;
        let inc = alice.ua.wait_request_for("INVITE", None, SIP_WAIT)?;
        let a_c = alice
            .ua
            .answer_invite(&inc, 200, &alice_sdp)?
            .ok_or("no dialog")?;
        let ok = wait_final_long(&cindy.ua, &tx)?;
        ensure(ok.status() == 200, || {
            format!("Cindy → Alice: {}", ok.start)
        })?;
        cindy.ua.ack_2xx(&mut c_a, &ok)?;
        alice.ua.wait_ack(&a_c)?;
        let remote = remote_of(&ok.body_str())?;
        (a_c, c_a, inc.msg.body_str().to_string(), remote)
    };

    let tx = alice.ua.request_ext(
        &mut a_c,
        "REFER",
        None,
        &[
            ("Refer-To", format!("<{BOB}>")),
            ("Referred-By", format!("<{ALICE}>")),
        ],
    )?;
    let r = wait_final_long(&alice.ua, &tx)?;
    ensure(r.status() == 202, || {
        format!("REFER answered {} at Alice", r.start)
    })?;
    let frag = |n: &Incoming, status: &str, state: &str| {
        let body = n.msg.body_str().to_string();
        let sub = n.msg.header("subscription-state").unwrap_or("").to_string();
        ensure(
            body.starts_with(&format!("SIP/2.0 {status}")) && sub.starts_with(state),
            || format!("refer NOTIFY with {body:?} ({sub}), expected {status} ({state})"),
        )
    };
    let n = alice
        .ua
        .wait_request_for("NOTIFY", Some(&a_c.call_id), SIP_WAIT)?;
    frag(&n, "100", "active")?;
    alice.ua.respond(&n, 200, "OK", None, None)?;

    let inv = bob.ua.wait_request_for("INVITE", None, SIP_WAIT)?;
    let bob_remote = remote_of(&inv.msg.body_str())?;
    let alice_had = remote_of(&alice_offer)?;
    ensure(bob_remote == alice_had, || {
        format!("Bob was offered {bob_remote}, not the relay port Alice had ({alice_had})")
    })?;
    let bob_rtp = RtpPeer::new("bob", A_CORE_IP)?;
    let b_c = bob
        .ua
        .answer_invite(&inv, 200, &bob_rtp.sdp(1))?
        .ok_or("no dialog")?;
    bob.ua.wait_ack(&b_c)?;
    // Same codec: Cindy's view of the media does not change; a re-INVITE is answered if any.
    if let Ok(re) = cindy
        .ua
        .wait_request_for("INVITE", Some(&c_a.call_id), Duration::from_secs(1))
    {
        cindy.ua.respond(
            &re,
            200,
            "OK",
            Some(&c_a.local_tag),
            Some(&cindy_rtp.sdp(2)),
        )?;
        cindy_remote = remote_of(&re.msg.body_str())?;
        cindy.ua.wait_ack(&c_a)?;
    }
    let n = alice
        .ua
        .wait_request_for("NOTIFY", Some(&a_c.call_id), SIP_WAIT)?;
    frag(&n, "200", "terminated")?;
    alice.ua.respond(&n, 200, "OK", None, None)?;
    let bye = alice
        .ua
        .wait_request_for("BYE", Some(&a_c.call_id), SIP_WAIT)?;
    alice.ua.respond(&bye, 200, "OK", None, None)?;
    ensure(
        cindy
            .ua
            .wait_request_for("REFER", None, Duration::from_millis(300))
            .is_err(),
        || "a REFER reached Cindy".to_string(),
    )?;

    cindy.media = Some(Endpoint::Rtp(cindy_rtp, cindy_remote));
    bob.media = Some(Endpoint::Rtp(bob_rtp, bob_remote));
    for l in conference_audio(&mut [bob, cindy])? {
        println!("    {l}");
    }
    flows::bye(&cindy.ua, &mut c_a, &bob.ua, &b_c)?;
    c.no_leaks()?;
    c.focus_ok()
}

/// A terminated REFER never crosses: Cindy's border sees only INVITE/ACK/BYE (and a re-INVITE).
const TERMINATED: Wire = Wire {
    crosses: &["INVITE", "ACK", "BYE"],
    never: &["REFER", "NOTIFY"],
};

fn refer_terminated() -> R<()> {
    with_lab(
        &terminate_dir()?,
        "userspace-refer-terminate",
        TERMINATED,
        || terminated(false),
    )
}

fn refer_terminated_from_caller() -> R<()> {
    with_lab(
        &terminate_dir()?,
        "userspace-refer-terminate-caller",
        TERMINATED,
        || terminated(true),
    )
}

// ---------------------------------------------------------------- main

fn units() -> R<()> {
    tone::self_test()?;
    mixer::self_test()?;
    leak_search_self_test()?;
    rtp::self_test()?;
    confinfo::self_test()?;
    let (t, r) =
        split_refer_to("<sip:alice@a.example?Replaces=c1%40h%3Bto-tag%3Dx%3Bfrom-tag%3Dy>");
    let d = Dialog {
        call_id: "c1@h".into(),
        local_tag: "x".into(),
        remote_tag: "y".into(),
        local_uri: String::new(),
        remote_uri: String::new(),
        remote_target: String::new(),
        route_set: Vec::new(),
        local_cseq: 1,
        invite_cseq: 1,
        transport: ua::Transport::Udp,
    };
    ensure(
        t == "sip:alice@a.example" && r.as_deref().is_some_and(|r| replaces_names(r, &d)),
        || format!("split_refer_to: {t} {r:?}"),
    )
}

/// The interconnect checks of [`with_lab`] catch what they are for: an injected home Via, a
/// core host name in a sipfrag, a UA's Call-ID in a Replaces, an unanchored SDP address and a
/// REFER where none may cross, each in a capture that otherwise passes.
fn leak_search_self_test() -> R<()> {
    let cid = registry::fresh("selftest");
    let clean = "NOTIFY sip:x@127.0.30.2:5061 SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.20.2:5061;branch=z9hG4bKb1\r\n\r\n\
                 INVITE sip:y@127.0.20.2:5061 SIP/2.0\r\nContent-Type: application/sdp\r\n\r\n\
                 v=0\r\no=- 1 1 IN IP4 127.0.30.2\r\nc=IN IP4 127.0.30.2\r\nm=audio 20002 RTP/AVP 0\r\n\
                 ACK sip:y@127.0.20.2:5061 SIP/2.0\r\n\r\nBYE sip:y@127.0.20.2:5061 SIP/2.0\r\n\r\n";
    let wire = Wire {
        crosses: &["INVITE", "ACK", "BYE"],
        never: &["REFER"],
    };
    let ic = |extra: &str| Interconnect {
        packets: 12,
        sip: 12,
        streams: vec![("probe".into(), format!("{clean}{extra}").into_bytes())],
    };
    interconnect_clean(&ic(""), &wire).map_err(|e| format!("a clean capture failed: {e}"))?;
    let injected = [
        "Via: SIP/2.0/UDP 127.0.10.1:5060;branch=z9hG4bKx\r\n".to_string(),
        "SIP/2.0 200 OK\r\nContact: <sip:scscf@operator-a-core.internal>\r\n".to_string(),
        format!("Replaces: {cid};to-tag=a;from-tag=b\r\n"),
        "c=IN IP4 127.0.41.9\r\n".to_string(),
        "REFER sip:y@127.0.20.2:5061 SIP/2.0\r\n\r\n".to_string(),
    ];
    for leak in injected {
        ensure(interconnect_clean(&ic(&leak), &wire).is_err(), || {
            format!("the interconnect check missed an injected {leak:?}")
        })?;
    }
    Ok(())
}

type Scenario = (&'static str, fn() -> R<()>);

fn scenarios() -> Vec<Scenario> {
    vec![
        ("units", units),
        ("conf_refer_dialout", conf_refer_dialout),
        ("conf_dial_in", conf_dial_in),
        ("conf_peer_refer", conf_peer_refer),
        ("conf_refer_dialout_kernel", conf_refer_dialout_kernel),
        ("attended_transfer", attended_transfer),
        ("refer_terminated", refer_terminated),
        ("refer_terminated_from_caller", refer_terminated_from_caller),
    ]
}

fn main() {
    std::process::exit(run());
}

fn run() -> i32 {
    let selected = harness::select(scenarios());
    instance::watchdog("case2", GLOBAL_TIMEOUT);
    println!("\nrunning {} case2 scenarios", selected.len());
    let mut tally = Tally::new();
    for (name, f) in &selected {
        tally.run(name, f);
    }
    println!("\ncase2 logs: {}", work_dir().display());
    tally.finish()
}

//! `refer = "terminate"`: border A handles a REFER meant for partner B itself (202, the refer
//! NOTIFYs, its own INVITE to the Refer-To target) and connects B's leg to the target on the
//! same relay ports; nothing of the REFER crosses. The REFER from the caller's and from the
//! callee's side of a call, a target that answers (same codec: no re-INVITE toward B; another
//! codec: one), and a target that rejects (the call stays as it was).

use super::*;
use crate::b2bua::MediaCommand;
use crate::config::ReferPolicy;

const SDP_ALICE: &str =
    "v=0\no=alice 1 1 IN IP4 127.0.10.1\ns=-\nc=IN IP4 127.0.10.1\nt=0 0\nm=audio 4000 RTP/AVP 0\n";
const SDP_CINDY: &str =
    "v=0\no=cindy 7 7 IN IP4 127.0.40.1\ns=-\nc=IN IP4 127.0.40.1\nt=0 0\nm=audio 5000 RTP/AVP 0\n";

/// Border A terminates REFER toward B.
fn terminating_sim() -> Sim {
    let mut cfg = (*lab("operator-a.toml")).clone();
    cfg.realms[1].peers[0].refer = ReferPolicy::Terminate;
    let mut sim = Sim::new();
    sim.borders[0] = Border::new(Arc::new(cfg), 41);
    sim
}

/// Every message that reached A's core since the last call, 100 Trying aside.
fn all_at_a(sim: &mut Sim) -> Vec<Message> {
    std::iter::from_fn(|| sim.core[0].pop_front())
        .map(|(_, b)| parse_message(&b, &Limits::default()).expect("border output parses"))
        .filter(|m| m.status() != Some(100))
        .collect()
}

fn method_is(m: &Message, method: &str) -> bool {
    m.method().map(|x| x.as_str()) == Some(method)
}

/// One message of `msgs` by method (requests) or status (responses).
fn pick<'a>(msgs: &'a [Message], what: &str) -> &'a Message {
    msgs.iter()
        .find(|m| method_is(m, what) || m.status().map(|s| s.to_string()).as_deref() == Some(what))
        .unwrap_or_else(|| panic!("no {what} among {} messages", msgs.len()))
}

/// A request from A's core by the party that received `got` (the UAS side of its dialog).
fn from_a_uas(method: &str, seq: u32, got: &Message, branch: &str) -> String {
    in_dialog(method, seq, false, got, branch)
        .replace("127.0.40.1:5060", "127.0.10.1:5060")
        .replace("sip:127.0.40.2:5060", "sip:127.0.10.2:5060")
}

fn refer_to_bob(req: String) -> String {
    req.replace(
        "Content-Length: 0",
        "Contact: <sip:alice@127.0.10.1:5060>\nRefer-To: <sip:bob@operator-a.example>\nReferred-By: <sip:alice@operator-a.example>\nContent-Length: 0",
    )
}

fn sipfrag(m: &Message) -> String {
    assert_eq!(h(m, "Content-Type"), "message/sipfrag;version=2.0");
    String::from_utf8_lossy(&m.body).to_string()
}

/// Alice at A calls Cindy at B with SDP, answered: the 200 as A's core saw it, the ACK as B's.
fn call_a_to_b(sim: &mut Sim) -> (Message, Message) {
    sim.send_from_core(0, &invite_from_a("xfer@127.0.10.1", "z9hG4bKxfer"));
    let inv_b = sim.take(1);
    let contact = "sip:cindy@127.0.40.1:5060";
    sim.send_from_core(1, &answer(&inv_b, 200, "cindytag", contact, SDP_CINDY));
    let ok_a = sim.take(0);
    sim.send_from_core(0, &in_dialog("ACK", 1, true, &ok_a, "z9hG4bKxferack"));
    (ok_a, sim.take(1))
}

#[test]
fn a_refer_from_the_caller_is_handled_at_the_border_and_the_target_joins_the_call() {
    let mut sim = terminating_sim();
    let (ok_a, ack_b) = call_a_to_b(&mut sim);
    let _ = media_of(&mut sim.borders[0]);
    let crossed = sim.interconnect.len();

    sim.send_from_core(
        0,
        &refer_to_bob(in_dialog("REFER", 2, true, &ok_a, "z9hG4bKr1")),
    );
    let got = all_at_a(&mut sim);
    assert_eq!(pick(&got, "202").status(), Some(202));
    let trying = pick(&got, "NOTIFY");
    assert_eq!(h(trying, "Event"), "refer;id=2");
    assert!(h(trying, "Subscription-State").starts_with("active"));
    assert_eq!(sipfrag(trying), "SIP/2.0 100 Trying\r\n");
    assert_eq!(h(trying, "Call-ID"), "xfer@127.0.10.1", "on Alice's dialog");
    let inv_bob = pick(&got, "INVITE").clone();
    let ruri = match &inv_bob.start {
        crate::sip::StartLine::Request { uri, .. } => uri.to_string(),
        _ => String::new(),
    };
    assert!(ruri.contains("bob@operator-a.example"), "{ruri}");
    assert_ne!(
        h(&inv_bob, "Call-ID"),
        "xfer@127.0.10.1",
        "a dialog of its own"
    );
    assert!(h(&inv_bob, "Referred-By").contains("alice@operator-a.example"));
    // The offer is what Alice had: A's relay address and port for this call.
    assert_eq!(inv_bob.body, ok_a.body);
    assert_eq!(
        sim.interconnect.len(),
        crossed,
        "nothing of the REFER crossed"
    );
    sim.send_from_core(0, &answer(trying, 200, "", "", ""));

    // Bob answers with the same codec: B's side sees the same media, no re-INVITE.
    let sdp_bob = SDP_ALICE.replace("alice", "bob").replace("4000", "4100");
    sim.send_from_core(
        0,
        &answer(&inv_bob, 200, "bobtag", "sip:bob@127.0.10.1:5060", &sdp_bob),
    );
    let got = all_at_a(&mut sim);
    let ack = pick(&got, "ACK");
    assert_eq!(h(ack, "Call-ID"), h(&inv_bob, "Call-ID"));
    let done = pick(&got, "NOTIFY");
    assert_eq!(sipfrag(done), "SIP/2.0 200 OK\r\n");
    assert!(h(done, "Subscription-State").starts_with("terminated"));
    assert_eq!(h(done, "Call-ID"), "xfer@127.0.10.1");
    assert_eq!(sim.interconnect.len(), crossed, "B was not bothered");
    // The relay's A side now faces Bob; no port was opened or closed.
    let cmds = media_of(&mut sim.borders[0]);
    assert!(
        cmds.iter().any(|c| matches!(c, MediaCommand::SetRemote { side: 0, remote: Some(r), .. } if r.port() == 4100)),
        "{cmds:?}"
    );
    assert!(!cmds
        .iter()
        .any(|c| matches!(c, MediaCommand::Open(_) | MediaCommand::Close(_))));

    // Alice's leg is released once she has the final NOTIFY.
    sim.send_from_core(0, &answer(done, 200, "", "", ""));
    let got = all_at_a(&mut sim);
    let bye = pick(&got, "BYE");
    assert_eq!(h(bye, "Call-ID"), "xfer@127.0.10.1");
    sim.send_from_core(0, &answer(bye, 200, "", "", ""));

    // Bob and Cindy are in one call: Bob's INFO reaches Cindy in her dialog, and her BYE Bob.
    sim.send_from_core(0, &from_a_uas("INFO", 1, ack, "z9hG4bKbobinfo"));
    let info = sim.take(1);
    assert!(method_is(&info, "INFO"));
    assert_eq!(h(&info, "Call-ID"), h(&ack_b, "Call-ID"));
    sim.send_from_core(1, &answer(&info, 200, "", "", ""));
    assert_eq!(sim.take(0).status(), Some(200));
    sim.send_from_core(1, &in_dialog("BYE", 2, false, &ack_b, "z9hG4bKcbye"));
    let bye_bob = sim.take(0);
    assert!(method_is(&bye_bob, "BYE"));
    assert_eq!(h(&bye_bob, "Call-ID"), h(&inv_bob, "Call-ID"));
    sim.send_from_core(0, &answer(&bye_bob, 200, "", "", ""));
    assert_eq!(sim.take(1).status(), Some(200));
    assert_no_leak(&sim, SECRETS);
    assert_no_leak(&sim, &["bob", "4100", "4000", "Referred-By", "xfer@"]);
    sim.advance(Duration::from_secs(40));
    assert_eq!(sim.borders[0].held_state(), (0, 0, 0, 0));
}

#[test]
fn a_target_that_rejects_leaves_the_call_as_it_was() {
    let mut sim = terminating_sim();
    let (ok_a, _) = call_a_to_b(&mut sim);
    let crossed = sim.interconnect.len();
    sim.send_from_core(
        0,
        &refer_to_bob(in_dialog("REFER", 2, true, &ok_a, "z9hG4bKr2")),
    );
    let got = all_at_a(&mut sim);
    let inv_bob = pick(&got, "INVITE").clone();
    sim.send_from_core(0, &answer(pick(&got, "NOTIFY"), 200, "", "", ""));
    sim.send_from_core(0, &answer(&inv_bob, 486, "bobtag", "", ""));
    let got = all_at_a(&mut sim);
    let failed = pick(&got, "NOTIFY");
    assert_eq!(sipfrag(failed), "SIP/2.0 486 Busy Here\r\n");
    assert!(h(failed, "Subscription-State").starts_with("terminated"));
    assert!(
        !got.iter().any(|m| method_is(m, "BYE")),
        "Alice keeps her call"
    );
    sim.send_from_core(0, &answer(failed, 200, "", "", ""));
    assert!(sim.quiet(0));
    assert_eq!(sim.interconnect.len(), crossed);
    // Alice and Cindy still talk.
    sim.send_from_core(0, &in_dialog("INFO", 3, true, &ok_a, "z9hG4bKstill"));
    assert!(method_is(&sim.take(1), "INFO"));
    // And another REFER may follow.
    sim.send_from_core(
        0,
        &refer_to_bob(in_dialog("REFER", 4, true, &ok_a, "z9hG4bKr3")),
    );
    assert_eq!(pick(&all_at_a(&mut sim), "202").status(), Some(202));
}

#[test]
fn a_refer_from_the_callee_is_handled_too_and_new_media_reaches_the_partner() {
    let mut sim = terminating_sim();
    // Cindy at B calls Alice at A.
    let inv = invite_from_a("fromb@127.0.40.1", "z9hG4bKfromb")
        .replace(
            "INVITE sip:cindy@operator-b.example",
            "INVITE sip:alice@operator-a.example",
        )
        .replace(
            "To: <sip:cindy@operator-b.example>",
            "To: <sip:alice@operator-a.example>",
        )
        .replace("127.0.10.1", "127.0.40.1")
        .replace("operator-a-core", "operator-b-core");
    sim.send_from_core(1, &inv);
    let inv_a = sim.take(0);
    sim.send_from_core(
        0,
        &answer(
            &inv_a,
            200,
            "alicetag9",
            "sip:alice@127.0.10.1:5060",
            SDP_ALICE,
        ),
    );
    let ok_b = sim.take(1);
    sim.send_from_core(1, &in_dialog("ACK", 1, true, &ok_b, "z9hG4bKfromback"));
    let ack_a = sim.take(0);
    let crossed = sim.interconnect.len();

    // Alice, the callee, transfers Cindy to Bob.
    sim.send_from_core(
        0,
        &refer_to_bob(from_a_uas("REFER", 1, &ack_a, "z9hG4bKr4")),
    );
    let got = all_at_a(&mut sim);
    assert_eq!(pick(&got, "202").status(), Some(202));
    let trying = pick(&got, "NOTIFY");
    assert_eq!(h(trying, "Event"), "refer;id=1");
    assert_eq!(h(trying, "Call-ID"), h(&inv_a, "Call-ID"));
    let inv_bob = pick(&got, "INVITE").clone();
    sim.send_from_core(0, &answer(trying, 200, "", "", ""));
    assert_eq!(sim.interconnect.len(), crossed);

    // Bob answers PCMA: Cindy gets a re-INVITE with it, on her own dialog.
    let sdp_bob = "v=0\no=bob 3 3 IN IP4 127.0.10.1\ns=-\nc=IN IP4 127.0.10.1\nt=0 0\nm=audio 4200 RTP/AVP 8\n";
    sim.send_from_core(
        0,
        &answer(&inv_bob, 200, "bobtag", "sip:bob@127.0.10.1:5060", sdp_bob),
    );
    let reinvite = sim.take(1);
    assert!(method_is(&reinvite, "INVITE"));
    assert_eq!(h(&reinvite, "Call-ID"), "fromb@127.0.40.1");
    let offer = String::from_utf8_lossy(&reinvite.body).to_string();
    assert!(
        offer.contains("m=audio ") && offer.contains(" RTP/AVP 8"),
        "{offer}"
    );
    let first = String::from_utf8_lossy(&ok_b.body).to_string();
    let port = |s: &str| {
        s.lines()
            .find(|l| l.starts_with("m=audio"))
            .map(str::to_string)
    };
    assert_eq!(
        port(&offer).map(|m| m.split(' ').nth(1).map(str::to_string)),
        port(&first).map(|m| m.split(' ').nth(1).map(str::to_string)),
        "same relay port"
    );
    let origin = |s: &str| {
        s.lines()
            .find(|l| l.starts_with("o="))
            .unwrap_or("")
            .to_string()
    };
    assert_eq!(
        origin(&offer),
        origin(&first).replacen(" 1 1 ", " 1 2 ", 1),
        "the origin Cindy knows, one version on"
    );
    let got = all_at_a(&mut sim);
    let done = pick(&got, "NOTIFY");
    assert_eq!(sipfrag(done), "SIP/2.0 200 OK\r\n");
    let cindy_answer = SDP_CINDY.replace(" 0\n", " 8\n").replace("7 7", "7 8");
    sim.send_from_core(
        1,
        &answer(
            &reinvite,
            200,
            "",
            "sip:cindy@127.0.40.1:5060",
            &cindy_answer,
        ),
    );
    let ack = sim.take(1);
    assert!(method_is(&ack, "ACK"));
    assert_eq!(h(&ack, "Call-ID"), "fromb@127.0.40.1");

    // Alice hangs up herself before answering the NOTIFY: her BYE is answered here.
    sim.send_from_core(0, &from_a_uas("BYE", 2, &ack_a, "z9hG4bKabye"));
    assert_eq!(sim.take(0).status(), Some(200));
    sim.send_from_core(0, &answer(done, 200, "", "", ""));
    assert!(
        !all_at_a(&mut sim).iter().any(|m| method_is(m, "BYE")),
        "no BYE to a leg already ended"
    );
    assert_no_leak(&sim, SECRETS);
    assert_no_leak(&sim, &["bob", "4200", "Referred-By", "alicetag9"]);
    sim.send_from_core(1, &in_dialog("BYE", 3, true, &ok_b, "z9hG4bKcbye2"));
    let bye_bob = sim.take(0);
    assert_eq!(h(&bye_bob, "Call-ID"), h(&inv_bob, "Call-ID"));
    sim.send_from_core(0, &answer(&bye_bob, 200, "", "", ""));
    assert_eq!(sim.take(1).status(), Some(200));
    sim.advance(Duration::from_secs(40));
    assert_eq!(sim.borders[0].held_state(), (0, 0, 0, 0));
}

#[test]
fn refer_from_the_partner_is_relayed_and_out_of_dialog_refer_toward_it_refused() {
    let mut sim = terminating_sim();
    let (_, ack_b) = call_a_to_b(&mut sim);
    let refer = in_dialog("REFER", 2, false, &ack_b, "z9hG4bKfromb").replace(
        "Content-Length: 0",
        "Contact: <sip:cindy@127.0.40.1:5060>\nRefer-To: <sip:dave@operator-b.example>\nContent-Length: 0",
    );
    sim.send_from_core(1, &refer);
    assert!(
        method_is(&sim.take(0), "REFER"),
        "its own REFERs still cross"
    );

    let refer_to = "Refer-To: <sip:bob@operator-a.example>\n";
    let ood = request_from_a("ood@127.0.10.1", "z9hG4bKood", "REFER", 1, refer_to);
    sim.send_from_core(0, &ood);
    assert_eq!(sim.take(0).status(), Some(403));
}

/// The border's INVITE is routed as a request of the partner's side, and the border carries no
/// transit: a Refer-To naming anyone but a user of A's own network (a colleague of Cindy's at B,
/// a third operator, a `tel:` number) has no route from there and the REFER is answered 404 at
/// once. Nothing is sent to B or to A's core, and the call goes on; the transferor may try
/// another way.
#[test]
fn a_target_outside_the_home_network_is_not_reached_through_the_border() {
    let mut sim = terminating_sim();
    let (ok_a, _) = call_a_to_b(&mut sim);
    let crossed = sim.interconnect.len();
    for (i, target) in [
        "sip:dave@operator-b.example",
        "sip:erin@operator-c.example",
        "tel:+15550100",
    ]
    .iter()
    .enumerate()
    {
        let seq = 2 + i as u32;
        let refer = in_dialog("REFER", seq, true, &ok_a, &format!("z9hG4bKfar{i}")).replace(
            "Content-Length: 0",
            &format!(
                "Contact: <sip:alice@127.0.10.1:5060>\nRefer-To: <{target}>\nContent-Length: 0"
            ),
        );
        sim.send_from_core(0, &refer);
        let got = all_at_a(&mut sim);
        assert_eq!(got.len(), 1, "{target}: only the REFER's answer: {got:?}");
        assert_eq!(got[0].status(), Some(404), "{target}");
    }
    assert_eq!(sim.interconnect.len(), crossed, "nothing crossed");
    sim.send_from_core(0, &in_dialog("INFO", 9, true, &ok_a, "z9hG4bKstill2"));
    assert!(method_is(&sim.take(1), "INFO"), "the call goes on");
}

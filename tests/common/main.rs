//! Self-tests of the test tooling (no Palisade needed): message parsing, a
//! UA↔UA loopback call over UDP and TCP, the lossy relay and the pcap reader.
//! Addresses 127.0.99.x are used so nothing collides with the lab.
#![allow(dead_code)]

mod flows;
mod harness;
mod instance;
mod labfiles;
mod lossy;
mod msg;
mod pcap;
mod registry;
mod ua;

use std::time::Duration;
use ua::{Transport, Ua, UaConfig};

fn pair(n: u8, tr: Transport) -> (Ua, Ua) {
    let a_addr: std::net::SocketAddr = format!("127.0.99.{}:5060", n).parse().unwrap();
    let b_addr: std::net::SocketAddr = format!("127.0.99.{}:5060", n + 1).parse().unwrap();
    let mut ca = UaConfig::a_core("alice");
    ca.bind = a_addr;
    ca.advertise = a_addr;
    ca.proxy = b_addr;
    ca.transport = tr;
    let mut cb = UaConfig::b_core("cindy");
    cb.bind = b_addr;
    cb.advertise = b_addr;
    cb.proxy = a_addr;
    (Ua::new(ca).unwrap(), Ua::new(cb).unwrap())
}

#[test]
fn loopback_call_udp() {
    let (a, b) = pair(1, Transport::Udp);
    let e = flows::full_call(&a, &b, "sip:cindy@operator-b.example", true).unwrap();
    // ACK for 2xx is a new transaction with the INVITE's CSeq number
    let acks: Vec<_> = b
        .received()
        .into_iter()
        .filter(|m| m.method() == Some("ACK"))
        .collect();
    assert_eq!(acks.len(), 3, "three ACKs (INVITE, hold, resume)");
    assert_ne!(acks[0].branch(), e.b_invite.msg.branch());
    assert_eq!(acks[0].cseq().unwrap().0, 1);
    assert_eq!(acks[1].cseq().unwrap().0, 2);
    // route set stripped of our own internal proxy, X-Internal present
    // (b's own proxy stays in the route set, a's is stripped)
    assert_eq!(
        acks[0].header_values("route"),
        vec!["<sip:scscf.operator-b-core.internal;lr>".to_string()]
    );
    assert!(b.received()[0].header("x-internal").is_some());
    let byes: Vec<_> = b
        .received()
        .into_iter()
        .filter(|m| m.method() == Some("BYE"))
        .collect();
    assert_eq!(byes[0].cseq().unwrap(), (4, "BYE".to_string()));
}

#[test]
fn loopback_call_bye_from_callee_and_reject_cancel() {
    let (a, b) = pair(3, Transport::Udp);
    flows::full_call(&a, &b, "sip:cindy@operator-b.example", false).unwrap();
    let (fin, ack) = flows::rejected(&a, &b, "sip:cindy@operator-b.example", 486).unwrap();
    assert_eq!(fin.status(), 486);
    assert_eq!(ack.msg.to_tag(), fin.to_tag());
    flows::rejected(&a, &b, "sip:cindy@operator-b.example", 603).unwrap();
    let c = flows::cancelled(&a, &b, "sip:cindy@operator-b.example").unwrap();
    assert_eq!(c.msg.cseq().unwrap(), (1, "CANCEL".to_string()));
}

#[test]
fn loopback_call_tcp() {
    let (a, b) = pair(5, Transport::Tcp);
    flows::full_call(&a, &b, "sip:cindy@operator-b.example", true).unwrap();
    assert!(a
        .log()
        .iter()
        .all(|l| l.transport == Transport::Tcp || !l.outgoing));
}

#[test]
fn timer_a_retransmits_until_response() {
    let (a, b) = pair(7, Transport::Udp);
    let (tx, _) = a.invite("sip:x@operator-b.example", "v=0\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(1700));
    // sent at 0, 0.5, 1.5 s
    let invites = b.log().iter().filter(|l| !l.outgoing).count();
    assert!(invites >= 3, "only {invites} INVITE copies");
    // but the foreground sees it once
    let first = b.wait_request("INVITE", None).unwrap();
    assert!(b
        .wait_request_for("INVITE", None, Duration::from_millis(300))
        .is_err());
    b.respond(&first, 100, "Trying", None, None).unwrap();
    a.wait_response(&tx, 100).unwrap();
    let n = b.log().iter().filter(|l| !l.outgoing).count();
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(
        n,
        b.log().iter().filter(|l| !l.outgoing).count(),
        "Timer A not stopped by 100"
    );
}

#[test]
fn lossy_relay_call_recovers() {
    // UA a on .9:5070 behind a relay on .9:5060; b is the far end on .10.
    let relay: std::net::SocketAddr = "127.0.99.9:5060".parse().unwrap();
    let ua_addr: std::net::SocketAddr = "127.0.99.9:5070".parse().unwrap();
    let b_addr: std::net::SocketAddr = "127.0.99.10:5060".parse().unwrap();
    let l = lossy::Lossy::start(
        relay,
        b_addr,
        ua_addr,
        lossy::DropPolicy::FirstCopy,
        Duration::from_secs(60),
    )
    .unwrap();
    let mut ca = UaConfig::a_core("alice");
    ca.bind = ua_addr;
    ca.advertise = relay;
    ca.proxy = relay;
    ca.force_next_hop = Some(relay);
    let mut cb = UaConfig::b_core("cindy");
    cb.bind = b_addr;
    cb.advertise = b_addr;
    let a = Ua::new(ca).unwrap();
    let b = Ua::new(cb).unwrap();
    // b's in-dialog requests must go to the relay too (a's Contact is the relay)
    flows::establish(&a, &b, "sip:cindy@operator-b.example")
        .map(|mut e| flows::bye(&a, &mut e.a, &b, &e.b))
        .unwrap()
        .unwrap();
    assert!(l.dropped() >= 4, "dropped {}", l.dropped());
}

#[test]
fn pcap_roundtrip_and_leak_search() {
    let bytes = pcap::write_test_pcap(&[
        (
            &[127, 0, 20, 2],
            &[127, 0, 30, 2],
            5060,
            5060,
            false,
            b"INVITE sip:x SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.10.1:5060\r\n\r\n",
        ),
        (
            &[127, 0, 30, 2],
            &[127, 0, 20, 2],
            40000,
            5060,
            true,
            b"SIP/2.0 200 OK\r\nCall-ID: ab",
        ),
        (
            &[127, 0, 30, 2],
            &[127, 0, 20, 2],
            40000,
            5060,
            true,
            b"cdef\r\n\r\n",
        ),
    ]);
    let pk = pcap::read_pcap(&bytes).unwrap();
    assert_eq!(pk.len(), 3);
    assert_eq!(pk[0].dport, 5060);
    assert!(!pk[0].tcp && pk[1].tcp);
    assert_eq!(pcap::sip_packet_count(&pk), 2);
    let st = pcap::streams(&pk);
    let hits = pcap::find_leaks(&st, &["127.0.10.".to_string(), "abcdef".to_string()]);
    assert_eq!(hits.len(), 2, "{hits:?}");
    assert!(pcap::find_leaks(&st, &["zzz".to_string()]).is_empty());
    assert!(pcap::read_pcap(b"nope").is_err());
}

#[path = "../sipp/runner.rs"]
mod sipp_runner;

#[test]
fn sipp_scenarios_direct() {
    if !sipp_runner::sipp_available() {
        eprintln!("sipp not installed; skipping");
        return;
    }
    let work = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("sipp-selftest");
    let r = sipp_runner::SippRun {
        uac_ip: "127.0.99.21".into(),
        uac_port: 5060,
        target: "127.0.99.22:5060".into(),
        uas_ip: "127.0.99.22".into(),
        uas_port: 5060,
        service: "cindy".into(),
        calls: 20,
        rate: 50,
        limit: 100,
        work,
        timeout: Duration::from_secs(30),
    };
    sipp_runner::run(&r).unwrap();
}

#[test]
fn sipp_stat_parse() {
    let csv = "StartTime;LastResetTime;SuccessfulCall(P);SuccessfulCall(C);FailedCall(P);FailedCall(C);\n\
               a;b;1;10;0;0;\na;b;5;200;0;0;\n";
    assert_eq!(sipp_runner::parse_stat(csv), Some((200, 0)));
}

#[test]
fn options_answered_automatically() {
    let (a, b) = pair(11, Transport::Udp);
    let tx = a
        .out_of_dialog("OPTIONS", "sip:127.0.99.12:5060", &[])
        .unwrap();
    let r = a.wait_final(&tx).unwrap();
    assert_eq!(r.status(), 200);
    assert!(b.queued().is_empty());
}

#[test]
fn labfiles_media_setting() {
    let added = labfiles::with_media_setting("name = \"x\"\n", "inactivity_timeout_s", "3");
    assert_eq!(added, "name = \"x\"\n\n[media]\ninactivity_timeout_s = 3\n");
    let replaced = labfiles::with_media_setting(
        "[media]\ninactivity_timeout_s = 60 # s\nports = \"1-2\"\n[[realm]]\n",
        "inactivity_timeout_s",
        "3",
    );
    assert_eq!(
        replaced,
        "[media]\ninactivity_timeout_s = 3\nports = \"1-2\"\n[[realm]]\n"
    );
}

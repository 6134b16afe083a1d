use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::*;
use crate::sip::{parse_message, Message, Method};

fn flow(transport: Transport) -> Flow {
    Flow {
        realm: 0,
        transport,
        remote: "127.0.0.1:5060".parse::<SocketAddr>().expect("addr"),
    }
}

fn msg(text: &str) -> Message {
    parse_message(text.replace('\n', "\r\n").as_bytes(), &Default::default()).expect("test message")
}

fn request(method: &str, branch: &str) -> Message {
    msg(&format!(
        "{method} sip:b@example.com SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.2:5060;branch={branch}\n\
         Max-Forwards: 70\nFrom: <sip:a@example.com>;tag=1\nTo: <sip:b@example.com>\n\
         Call-ID: c1\nCSeq: 1 {method}\nContent-Length: 0\n\n"
    ))
}

fn response(status: u16, method: &str, branch: &str) -> Message {
    msg(&format!(
        "SIP/2.0 {status} X\nVia: SIP/2.0/UDP 127.0.0.2:5060;branch={branch}\n\
         From: <sip:a@example.com>;tag=1\nTo: <sip:b@example.com>;tag=2\n\
         Call-ID: c1\nCSeq: 1 {method}\nContent-Length: 0\n\n"
    ))
}

/// Runs the layer's timers up to `until`, returning the instants of every transmit.
fn run(layer: &mut TransactionLayer, start: Instant, until: Duration) -> Vec<Duration> {
    let mut sent = Vec::new();
    while let Some(at) = layer.poll_timeout() {
        if at > start + until {
            break;
        }
        layer.handle_timeout(at);
        while layer.poll_transmit().is_some() {
            sent.push(at - start);
        }
    }
    sent
}

#[test]
fn invite_client_retransmits_with_doubling_then_times_out() {
    let t0 = Instant::now();
    let mut l = TransactionLayer::new(Timers::default());
    let id = l.send_request(t0, &request("INVITE", "z9hG4bK1"), flow(Transport::Udp));
    assert!(l.poll_transmit().is_some());
    let sent = run(&mut l, t0, Duration::from_secs(40));
    let ms: Vec<u128> = sent.iter().map(|d| d.as_millis()).collect();
    assert_eq!(ms, vec![500, 1500, 3500, 7500, 15500, 31500]);
    assert_eq!(l.poll_event(), Some(TxEvent::ClientTimeout(id)));
    assert!(l.is_empty());
}

#[test]
fn provisional_stops_invite_retransmissions_and_timer_b() {
    let t0 = Instant::now();
    let mut l = TransactionLayer::new(Timers::default());
    let id = l.send_request(t0, &request("INVITE", "z9hG4bK2"), flow(Transport::Udp));
    l.poll_transmit();
    assert_eq!(
        l.on_response(t0, &response(180, "INVITE", "z9hG4bK2")),
        ResponseDisposition::Deliver(id)
    );
    assert!(run(&mut l, t0, Duration::from_secs(100)).is_empty());
    assert_eq!(
        l.poll_event(),
        None,
        "Timer C, not B, bounds a ringing call"
    );
}

#[test]
fn non_2xx_final_is_acked_by_the_transaction() {
    let t0 = Instant::now();
    let mut l = TransactionLayer::new(Timers::default());
    let id = l.send_request(t0, &request("INVITE", "z9hG4bK3"), flow(Transport::Udp));
    l.poll_transmit();
    let r = response(486, "INVITE", "z9hG4bK3");
    assert_eq!(l.on_response(t0, &r), ResponseDisposition::Deliver(id));
    let ack = l.poll_transmit().expect("ACK sent");
    let ack = parse_message(&ack.bytes, &Default::default()).expect("ACK parses");
    assert_eq!(ack.method(), Some(&Method::Ack));
    assert!(ack
        .headers
        .get("Via")
        .is_some_and(|v| v.contains("z9hG4bK3")));
    // A retransmitted 486 is ACKed again and not delivered twice.
    assert_eq!(l.on_response(t0, &r), ResponseDisposition::Absorbed);
    assert!(l.poll_transmit().is_some());
}

#[test]
fn non_invite_retransmissions_cap_at_t2() {
    let t0 = Instant::now();
    let mut l = TransactionLayer::new(Timers::default());
    l.send_request(t0, &request("BYE", "z9hG4bK4"), flow(Transport::Udp));
    l.poll_transmit();
    let sent = run(&mut l, t0, Duration::from_secs(20));
    let ms: Vec<u128> = sent.iter().map(|d| d.as_millis()).collect();
    assert_eq!(&ms[..6], &[500, 1500, 3500, 7500, 11500, 15500]);
}

#[test]
fn nothing_is_retransmitted_over_tcp() {
    let t0 = Instant::now();
    let mut l = TransactionLayer::new(Timers::default());
    l.send_request(t0, &request("INVITE", "z9hG4bK5"), flow(Transport::Tcp));
    l.poll_transmit();
    assert!(run(&mut l, t0, Duration::from_secs(40)).is_empty());
}
#[test]
fn a_completed_transaction_keeps_only_what_it_may_still_send() {
    let t0 = Instant::now();
    let mut l = TransactionLayer::new(Timers::default());
    // An INVITE with a body: none of it is kept past the final response.
    let text = request("INVITE", "z9hG4bK4").to_bytes();
    let text = String::from_utf8(text).expect("ascii");
    let body = "v=0\r\n".repeat(200);
    let text = text.replace(
        "Content-Length: 0\r\n\r\n",
        &format!("Content-Length: {}\r\n\r\n{body}", body.len()),
    );
    let invite = parse_message(text.as_bytes(), &Default::default()).expect("INVITE parses");
    let id = l.send_request(t0, &invite, flow(Transport::Udp));
    let sent = l.poll_transmit().expect("INVITE sent").bytes;
    assert!(
        l.held_bytes() >= sent.len(),
        "the request is kept for Timer A"
    );
    let r = response(486, "INVITE", "z9hG4bK4");
    assert_eq!(l.on_response(t0, &r), ResponseDisposition::Deliver(id));
    let ack = l.poll_transmit().expect("ACK sent").bytes;
    assert_eq!(
        ack,
        ack_for(&invite, &r).to_bytes(),
        "the skeleton builds the full ACK"
    );
    assert_eq!(l.held_bytes(), "z9hG4bK4|INVITE".len() + ack.len());
    assert_eq!(l.on_response(t0, &r), ResponseDisposition::Absorbed);
    assert_eq!(l.poll_transmit().expect("ACK re-sent").bytes, ack);

    // A server transaction drops its last response once the ACK confirmed it.
    let mut l = TransactionLayer::new(Timers::default());
    let req = request("INVITE", "z9hG4bK5");
    let RequestDisposition::New(sid) = l.on_request(t0, &req, flow(Transport::Udp)) else {
        panic!("new request expected");
    };
    l.respond(t0, sid, &response(486, "INVITE", "z9hG4bK5"));
    l.poll_transmit();
    let key = l.held_bytes() - response(486, "INVITE", "z9hG4bK5").to_bytes().len();
    l.on_request(t0, &request("ACK", "z9hG4bK5"), flow(Transport::Udp));
    assert_eq!(l.held_bytes(), key, "Confirmed keeps only its key");
}

#[test]
fn server_absorbs_retransmissions_and_resends_the_last_response() {
    let t0 = Instant::now();
    let mut l = TransactionLayer::new(Timers::default());
    let req = request("INVITE", "z9hG4bK6");
    let RequestDisposition::New(id) = l.on_request(t0, &req, flow(Transport::Udp)) else {
        panic!("new request expected");
    };
    l.respond(t0, id, &response(180, "INVITE", "z9hG4bK6"));
    assert!(l.poll_transmit().is_some());
    assert_eq!(
        l.on_request(t0, &req, flow(Transport::Udp)),
        RequestDisposition::Absorbed
    );
    assert!(l.poll_transmit().is_some(), "180 re-sent");
    l.respond(t0, id, &response(486, "INVITE", "z9hG4bK6"));
    l.poll_transmit();
    // Timer G retransmits the 486 until the ACK comes.
    let sent = run(&mut l, t0, Duration::from_millis(1600));
    assert_eq!(sent.len(), 2);
    let ack = request("ACK", "z9hG4bK6");
    assert_eq!(
        l.on_request(t0, &ack, flow(Transport::Udp)),
        RequestDisposition::Absorbed
    );
    assert!(run(
        &mut l,
        t0 + Duration::from_millis(1600),
        Duration::from_secs(10)
    )
    .is_empty());
    assert!(l.is_empty(), "Timer I freed it");
}

#[test]
fn ack_for_2xx_goes_to_the_dialog() {
    let t0 = Instant::now();
    let mut l = TransactionLayer::new(Timers::default());
    let req = request("INVITE", "z9hG4bK7");
    let RequestDisposition::New(id) = l.on_request(t0, &req, flow(Transport::Udp)) else {
        panic!("new request expected");
    };
    l.respond(t0, id, &response(200, "INVITE", "z9hG4bK7"));
    l.poll_transmit();
    let ack = request("ACK", "z9hG4bK7-other");
    assert_eq!(
        l.on_request(t0, &ack, flow(Transport::Udp)),
        RequestDisposition::AckFor2xx(None)
    );
    l.confirm_2xx(t0, id);
    let sent = run(&mut l, t0, Duration::from_secs(40));
    assert!(sent.is_empty(), "no 2xx retransmission after the ACK");
}

#[test]
fn unacknowledged_2xx_is_retransmitted_then_reported() {
    let t0 = Instant::now();
    let mut l = TransactionLayer::new(Timers::default());
    let req = request("INVITE", "z9hG4bK8");
    let RequestDisposition::New(id) = l.on_request(t0, &req, flow(Transport::Udp)) else {
        panic!("new request expected");
    };
    l.respond(t0, id, &response(200, "INVITE", "z9hG4bK8"));
    l.poll_transmit();
    let sent = run(&mut l, t0, Duration::from_secs(40));
    assert!(sent.len() >= 7);
    assert_eq!(l.poll_event(), Some(TxEvent::AckTimeout(id)));
}

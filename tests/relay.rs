//! The user-space relay against real UDP sockets on loopback (127.0.0.0/8). Every wait is
//! bounded; every test uses ephemeral ports so tests run in parallel.

use palisade::media::relay::{Relay, RelayConfig, RelayEvent};
use palisade::media::{FlowId, FlowSpec, SideSpec};
use rand::{Rng, RngCore};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(2);
const ABSENT: Duration = Duration::from_millis(200);

fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

fn relay(strict: bool) -> Relay {
    Relay::start(RelayConfig {
        strict_latching: strict,
        ..RelayConfig::default()
    })
    .unwrap()
}

/// A far end: a socket on 127.0.0.`last`, ephemeral port.
fn peer(last: u8) -> UdpSocket {
    let s = UdpSocket::bind(SocketAddr::new(ip(last), 0)).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s
}

fn addr(s: &UdpSocket) -> SocketAddr {
    s.local_addr().unwrap()
}

/// Opens flow `id` with local endpoints on 127.0.0.1 (side 0) and 127.0.0.2 (side 1), ephemeral
/// ports; returns the bound local addresses.
fn open(r: &Relay, id: u64, remotes: [Option<SocketAddr>; 2]) -> [SocketAddr; 2] {
    let spec = FlowSpec {
        id: FlowId(id),
        sides: [
            SideSpec {
                local: SocketAddr::new(ip(1), 0),
                remote: remotes[0],
            },
            SideSpec {
                local: SocketAddr::new(ip(2), 0),
                remote: remotes[1],
            },
        ],
    };
    r.open(spec).unwrap();
    r.local_addrs(FlowId(id)).unwrap()
}

fn recv(s: &UdpSocket, timeout: Duration) -> Option<(Vec<u8>, SocketAddr)> {
    s.set_read_timeout(Some(timeout)).unwrap();
    let mut buf = vec![0u8; 65536];
    match s.recv_from(&mut buf) {
        Ok((n, from)) => Some((buf[..n].to_vec(), from)),
        Err(_) => None,
    }
}

/// Sends `payload` from `from` to `to` and expects it unchanged at `at`, sent from `via`.
fn relayed(from: &UdpSocket, to: SocketAddr, at: &UdpSocket, via: SocketAddr, payload: &[u8]) {
    from.send_to(payload, to).unwrap();
    let (got, src) = recv(at, WAIT).expect("datagram relayed");
    assert_eq!(src, via, "leaves from the opposite local endpoint");
    assert_eq!(got, payload, "byte for byte");
}

fn not_relayed(from: &UdpSocket, to: SocketAddr, at: &UdpSocket, payload: &[u8]) {
    from.send_to(payload, to).unwrap();
    assert!(recv(at, ABSENT).is_none(), "datagram must not be relayed");
}

fn wait_for<T>(mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + WAIT;
    while Instant::now() < end {
        if let Some(v) = f() {
            return Some(v);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    None
}

fn stun_binding_request() -> Vec<u8> {
    let mut p = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
    p.extend_from_slice(&[7u8; 12]); // transaction id
    p
}

fn dtls_client_hello() -> Vec<u8> {
    // DTLS 1.2 record: handshake (22), version fefd, epoch 0, seq 0, length, ClientHello...
    let mut p = vec![
        0x16, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x40, 0x01, 0, 0, 0x34,
    ];
    p.extend((0..0x40 - 4).map(|i| i as u8));
    p
}

#[test]
fn forwards_both_ways_byte_for_byte() {
    let r = relay(false);
    let (a, b) = (peer(3), peer(4));
    let local = open(&r, 1, [Some(addr(&a)), Some(addr(&b))]);
    r.set_gate(FlowId(1), true);
    let mut rng = rand::rng();
    let mut payloads = vec![
        stun_binding_request(),
        dtls_client_hello(),
        vec![],
        vec![0x80; 172],
    ];
    for _ in 0..40 {
        let mut p = vec![0u8; rng.random_range(1..1500)];
        rng.fill_bytes(&mut p);
        payloads.push(p);
    }
    let mut p = vec![0u8; 8000];
    rng.fill_bytes(&mut p);
    payloads.push(p);
    for p in &payloads {
        relayed(&a, local[0], &b, local[1], p);
        relayed(&b, local[1], &a, local[0], p);
    }
    let n = payloads.len() as u64;
    // Counters are published right after the send: the receiver can be a hair faster.
    let st = wait_for(|| r.stats(FlowId(1)).filter(|s| s.packets == [n, n])).expect("counted");
    let bytes: u64 = payloads.iter().map(|p| p.len() as u64).sum();
    assert_eq!(st.bytes, [bytes, bytes]);
    assert_eq!(st.dropped, 0);
    r.shutdown();
}

#[test]
fn latches_to_first_source_when_not_strict() {
    let r = relay(false);
    let (a, b, c) = (peer(3), peer(4), peer(5));
    // The SDP says 127.0.0.9 for side 0; the first source (a, behind a "NAT") wins.
    let local = open(
        &r,
        2,
        [Some("127.0.0.9:4000".parse().unwrap()), Some(addr(&b))],
    );
    r.set_gate(FlowId(2), true);
    relayed(&a, local[0], &b, local[1], b"first");
    assert_eq!(
        r.stats(FlowId(2)).unwrap().latched[0],
        Some(addr(&a)),
        "latched before sending"
    );
    // Replies go to the latched address, not to the SDP's.
    relayed(&b, local[1], &a, local[0], b"reply");
    // Another source is not relayed once latched.
    not_relayed(&c, local[0], &b, b"intruder");
    assert_eq!(r.stats(FlowId(2)).unwrap().latched[0], Some(addr(&a)));
    assert!(r.stats(FlowId(2)).unwrap().dropped >= 1);
    r.shutdown();
}

#[test]
fn strict_latching_refuses_a_foreign_source() {
    let r = relay(true);
    let (a, b, c) = (peer(3), peer(4), peer(5));
    // The SDP names a's IP with another port: the IP must match, the port may differ.
    let sdp_a = SocketAddr::new(ip(3), 9);
    let local = open(&r, 3, [Some(sdp_a), Some(addr(&b))]);
    r.set_gate(FlowId(3), true);
    not_relayed(&c, local[0], &b, b"foreign");
    assert_eq!(r.stats(FlowId(3)).unwrap().latched[0], None);
    relayed(&a, local[0], &b, local[1], b"from the SDP's IP");
    assert_eq!(r.stats(FlowId(3)).unwrap().latched[0], Some(addr(&a)));
    relayed(&b, local[1], &a, local[0], b"back to the latched port");
    not_relayed(&c, local[0], &b, b"still foreign");
    // Strict and no SDP remote: nothing latches.
    let (d, e) = (peer(6), peer(7));
    let local = open(&r, 4, [None, Some(addr(&e))]);
    r.set_gate(FlowId(4), true);
    not_relayed(&d, local[0], &e, b"unknown far end");
    assert_eq!(r.stats(FlowId(4)).unwrap().latched[0], None);
    r.shutdown();
}

#[test]
fn closed_gate_drops() {
    let r = relay(false);
    let (a, b) = (peer(3), peer(4));
    let local = open(&r, 5, [None, Some(addr(&b))]);
    not_relayed(&a, local[0], &b, b"too early");
    not_relayed(&b, local[1], &a, b"too early too");
    let st = wait_for(|| r.stats(FlowId(5)).filter(|s| s.dropped >= 2)).expect("counted");
    assert_eq!(st.packets, [0, 0]);
    assert_eq!(st.latched, [None, None], "a closed gate latches nothing");
    assert_eq!(r.totals().flows_gate_closed, 1);
    r.set_gate(FlowId(5), true);
    relayed(&a, local[0], &b, local[1], b"answered");
    r.set_gate(FlowId(5), false);
    not_relayed(&a, local[0], &b, b"closed again");
    r.shutdown();
}

#[test]
fn unknown_far_end_drops_until_known() {
    let r = relay(false);
    let (a, b) = (peer(3), peer(4));
    let local = open(&r, 6, [None, None]);
    r.set_gate(FlowId(6), true);
    not_relayed(&a, local[0], &b, b"nowhere to go");
    assert_eq!(
        r.stats(FlowId(6)).unwrap().latched[0],
        Some(addr(&a)),
        "side 0 latched anyway"
    );
    r.set_remote(FlowId(6), 1, Some(addr(&b)));
    relayed(&a, local[0], &b, local[1], b"now known");
    r.shutdown();
}

#[test]
fn set_remote_relatches() {
    let r = relay(false);
    let (a, a2, b) = (peer(3), peer(6), peer(4));
    let local = open(&r, 7, [Some(addr(&a)), Some(addr(&b))]);
    r.set_gate(FlowId(7), true);
    relayed(&a, local[0], &b, local[1], b"a");
    relayed(&b, local[1], &a, local[0], b"b");
    let first = wait_for(|| r.poll_event()).expect("latched");
    assert_eq!(
        first,
        RelayEvent::Latched {
            id: FlowId(7),
            remotes: [addr(&a), addr(&b)]
        }
    );
    // Re-INVITE: side 0 moves to a2.
    r.set_remote(FlowId(7), 0, Some(addr(&a2)));
    wait_for(|| r.stats(FlowId(7)).filter(|s| s.latched[0].is_none())).expect("reset");
    relayed(&a2, local[0], &b, local[1], b"a2");
    relayed(&b, local[1], &a2, local[0], b"to a2");
    not_relayed(&a, local[0], &b, b"old a");
    let second = wait_for(|| r.poll_event()).expect("latched again");
    assert_eq!(
        second,
        RelayEvent::Latched {
            id: FlowId(7),
            remotes: [addr(&a2), addr(&b)]
        }
    );
    assert_eq!(r.poll_event(), None);
    r.shutdown();
}

#[test]
fn latched_event_fires_once_after_both_directions() {
    let r = relay(false);
    let notified = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let n2 = notified.clone();
    r.set_notifier(move || {
        n2.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    });
    let (a, b) = (peer(3), peer(4));
    let local = open(&r, 8, [None, None]);
    r.set_gate(FlowId(8), true);
    for _ in 0..5 {
        not_relayed(&a, local[0], &b, b"one way");
    }
    assert_eq!(r.poll_event(), None, "one direction is not enough");
    for i in 0..10 {
        relayed(&b, local[1], &a, local[0], format!("back {i}").as_bytes());
        relayed(&a, local[0], &b, local[1], format!("forth {i}").as_bytes());
    }
    let ev = wait_for(|| r.poll_event()).expect("latched");
    assert_eq!(
        ev,
        RelayEvent::Latched {
            id: FlowId(8),
            remotes: [addr(&a), addr(&b)]
        }
    );
    std::thread::sleep(ABSENT);
    assert_eq!(r.poll_event(), None, "exactly once");
    assert_eq!(notified.load(std::sync::atomic::Ordering::SeqCst), 1);
    r.shutdown();
}

#[test]
fn stats_counters_idle_and_totals() {
    let r = relay(false);
    let (a, b) = (peer(3), peer(4));
    let local = open(&r, 9, [Some(addr(&a)), Some(addr(&b))]);
    assert!(r.stats(FlowId(99)).is_none());
    r.set_gate(FlowId(9), true);
    for _ in 0..3 {
        relayed(&a, local[0], &b, local[1], &[1u8; 100]);
    }
    for _ in 0..2 {
        relayed(&b, local[1], &a, local[0], &[2u8; 50]);
    }
    let st = wait_for(|| r.stats(FlowId(9)).filter(|s| s.packets == [3, 2])).expect("counted");
    assert_eq!(st.bytes, [300, 100]);
    assert_eq!(st.dropped, 0);
    assert_eq!(st.latched, [Some(addr(&a)), Some(addr(&b))]);
    assert!(!st.offloaded);
    assert!(st.idle_for < Duration::from_millis(500));
    let t = r.totals();
    assert_eq!(
        (t.packets, t.bytes, t.flows, t.flows_latched),
        (5, 400, 1, 1)
    );

    std::thread::sleep(Duration::from_millis(300));
    assert!(r.stats(FlowId(9)).unwrap().idle_for >= Duration::from_millis(250));
    assert_eq!(r.idle_flows(Duration::from_millis(250)), vec![FlowId(9)]);
    assert!(r.idle_flows(Duration::from_secs(60)).is_empty());
    r.set_offloaded(FlowId(9), true);
    assert!(r.stats(FlowId(9)).unwrap().offloaded);
    assert!(
        r.idle_flows(Duration::ZERO).is_empty(),
        "offloaded flows are the kernel's"
    );
    assert_eq!(r.totals().flows_offloaded, 1);
    r.set_offloaded(FlowId(9), false);
    relayed(&a, local[0], &b, local[1], &[3u8; 10]);
    wait_for(|| r.stats(FlowId(9)).filter(|s| s.packets == [4, 2])).expect("counted");
    assert!(r.stats(FlowId(9)).unwrap().idle_for < Duration::from_millis(250));

    r.close(FlowId(9));
    assert!(r.stats(FlowId(9)).is_none());
    let t = r.totals();
    assert_eq!(
        (t.packets, t.bytes, t.flows, t.flows_opened, t.flows_closed),
        (6, 410, 0, 1, 1)
    );
    r.shutdown();
}

fn raise_fd_limit() {
    // SAFETY: plain get/setrlimit on a live struct.
    unsafe {
        let mut rl: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) == 0 && rl.rlim_cur < rl.rlim_max {
            rl.rlim_cur = rl.rlim_max.min(65536);
            libc::setrlimit(libc::RLIMIT_NOFILE, &rl);
        }
    }
}

#[test]
fn thousand_flows_open_and_close_leave_nothing() {
    raise_fd_limit();
    let r = Relay::start(RelayConfig {
        threads: 2,
        ..RelayConfig::default()
    })
    .unwrap();
    let mut locals = Vec::new();
    for id in 0..1000u64 {
        locals.push(open(&r, 1000 + id, [None, None]));
    }
    assert_eq!(r.open_flows(), 1000);
    assert_eq!(r.totals().flows, 1000);
    // A port in use is refused, naming the address.
    let clash = FlowSpec {
        id: FlowId(5000),
        sides: [
            SideSpec {
                local: locals[0][0],
                remote: None,
            },
            SideSpec {
                local: SocketAddr::new(ip(2), 0),
                remote: None,
            },
        ],
    };
    let err = r.open(clash).unwrap_err();
    assert!(err.to_string().contains(&locals[0][0].to_string()), "{err}");
    // A duplicate id is refused.
    let dup = FlowSpec {
        id: FlowId(1000),
        sides: [
            SideSpec {
                local: SocketAddr::new(ip(1), 0),
                remote: None,
            },
            SideSpec {
                local: SocketAddr::new(ip(2), 0),
                remote: None,
            },
        ],
    };
    assert_eq!(
        r.open(dup).unwrap_err().kind(),
        std::io::ErrorKind::AlreadyExists
    );
    assert_eq!(r.open_flows(), 1000);

    for id in 0..1000u64 {
        r.close(FlowId(1000 + id));
    }
    assert_eq!(r.open_flows(), 0);
    assert_eq!(r.totals().flows, 0);
    r.close(FlowId(1000)); // closing twice is harmless
                           // Every port is free again right after close returned.
    for pair in &locals {
        for a in pair {
            UdpSocket::bind(a).unwrap_or_else(|e| panic!("{a} still bound: {e}"));
        }
    }
    // And the relay can take them again.
    let spec = FlowSpec {
        id: FlowId(1000),
        sides: [
            SideSpec {
                local: locals[0][0],
                remote: None,
            },
            SideSpec {
                local: locals[0][1],
                remote: None,
            },
        ],
    };
    r.open(spec).unwrap();
    r.close(FlowId(1000));
    assert_eq!(r.open_flows(), 0);
    r.shutdown();
}

#[test]
fn one_flows_socket_errors_do_not_affect_another() {
    let r = relay(false);
    // Flow 20 sends toward a closed port (ICMP port unreachable comes back).
    let dead = {
        let s = peer(4);
        addr(&s)
    };
    let (a, b) = (peer(3), peer(4));
    let (c, d) = (peer(5), peer(6));
    let bad = open(&r, 20, [None, Some(dead)]);
    let good = open(&r, 21, [None, Some(addr(&d))]);
    r.set_gate(FlowId(20), true);
    r.set_gate(FlowId(21), true);
    for i in 0..50 {
        a.send_to(format!("lost {i}").as_bytes(), bad[0]).unwrap();
        relayed(&c, good[0], &d, good[1], format!("ok {i}").as_bytes());
    }
    wait_for(|| r.stats(FlowId(21)).filter(|s| s.packets[0] == 50)).expect("all 50 counted");
    // The bad flow's socket still works once its far end is reachable.
    r.set_remote(FlowId(20), 1, Some(addr(&b)));
    relayed(&a, bad[0], &b, bad[1], b"alive");
    // Even when the far end latched to a closed port answers, nothing else is disturbed.
    relayed(&b, bad[1], &a, bad[0], b"back");
    drop(a);
    for i in 0..20 {
        b.send_to(b"toward a closed port", bad[1]).unwrap();
        relayed(&c, good[0], &d, good[1], format!("still ok {i}").as_bytes());
    }
    r.shutdown();
}

#[test]
fn ipv6_flow() {
    let Ok(a) = UdpSocket::bind("[::1]:0") else {
        return;
    };
    let r = relay(false);
    let b = peer(4);
    let spec = FlowSpec {
        id: FlowId(30),
        sides: [
            SideSpec {
                local: "[::1]:0".parse().unwrap(),
                remote: None,
            },
            SideSpec {
                local: SocketAddr::new(ip(2), 0),
                remote: Some(addr(&b)),
            },
        ],
    };
    r.open(spec).unwrap();
    let local = r.local_addrs(FlowId(30)).unwrap();
    r.set_gate(FlowId(30), true);
    relayed(&a, local[0], &b, local[1], b"v6 to v4");
    relayed(&b, local[1], &a, local[0], b"v4 to v6");
    r.shutdown();
}

#[test]
fn dropping_the_last_handle_stops_the_threads_and_frees_ports() {
    let r = relay(false);
    let local = open(&r, 40, [None, None]);
    let r2 = r.clone();
    drop(r);
    assert_eq!(r2.open_flows(), 1);
    drop(r2);
    UdpSocket::bind(local[0]).unwrap();
    UdpSocket::bind(local[1]).unwrap();
}

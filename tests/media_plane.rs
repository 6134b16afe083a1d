//! The service's media plane on real loopback sockets: B2BUA media commands become relay flows,
//! packets are relayed byte for byte after the gate opens, per-realm figures add up (and what a
//! flow relayed stays counted after it closes), and every flow is gone after Close.

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

use palisade::media::{FlowId, FlowSpec, MediaCommand, SideSpec};
use palisade::service::media::{MediaPlane, KERNEL, USER};

const NODE: &str = r#"
name = "mp"
home_domains = ["a.example"]
[media]
kernel = false
inactivity_timeout_s = 1
[[realm]]
name = "home"
kind = "home"
listen = ["udp:127.0.61.1:15060"]
core = "udp:127.0.61.9:5060"
media_ports = "31000-31099"
[[realm]]
name = "interconnect"
kind = "peer"
listen = ["udp:127.0.62.1:15060"]
media_ports = "31000-31099"
[[realm.peer]]
name = "b"
domains = ["b.example"]
sources = ["127.0.62.9"]
next_hop = "udp:127.0.62.9:5060"
"#;

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("address")
}

fn recv(sock: &UdpSocket) -> Option<(Vec<u8>, SocketAddr)> {
    let mut buf = [0u8; 2048];
    sock.recv_from(&mut buf)
        .ok()
        .map(|(n, from)| (buf[..n].to_vec(), from))
}

#[test]
fn commands_become_relay_flows_and_are_released() {
    let cfg = palisade::config::parse(NODE, Path::new("mp.toml"), &|p| std::fs::read_to_string(p))
        .expect("config parses");
    let mut plane = MediaPlane::start(&cfg).expect("media plane starts");
    let a_far = UdpSocket::bind("127.0.61.9:0").expect("bind A side");
    let b_far = UdpSocket::bind("127.0.62.9:0").expect("bind B side");
    for s in [&a_far, &b_far] {
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .expect("timeout");
    }
    let id = FlowId(7);
    let spec = FlowSpec {
        id,
        sides: [
            SideSpec {
                local: addr("127.0.61.1:31000"),
                remote: None,
            },
            SideSpec {
                local: addr("127.0.62.1:31000"),
                remote: None,
            },
        ],
    };
    plane.apply(MediaCommand::Open(spec));
    assert_eq!(plane.open_flows(), 1);
    for (side, far) in [(0, &a_far), (1, &b_far)] {
        plane.apply(MediaCommand::SetRemote {
            id,
            side,
            remote: Some(far.local_addr().expect("addr")),
        });
    }
    // Gate closed: nothing crosses.
    a_far.send_to(b"early", spec.sides[0].local).expect("send");
    assert!(
        recv(&b_far).is_none(),
        "the gate is closed until the answer"
    );
    plane.apply(MediaCommand::Gate { id, open: true });
    let payload = [0x80u8, 0x00, 0x12, 0x34, 0xff, 0x00, 0xfe];
    let mut got = None;
    for _ in 0..20 {
        a_far.send_to(&payload, spec.sides[0].local).expect("send");
        if let Some(r) = recv(&b_far) {
            got = Some(r);
            break;
        }
    }
    let (bytes, from) = got.expect("relayed to B");
    assert_eq!(bytes, payload, "byte for byte");
    assert_eq!(
        from, spec.sides[1].local,
        "sent from the border's B-side address"
    );
    b_far.send_to(b"back", spec.sides[1].local).expect("send");
    let (bytes, from) = recv(&a_far).expect("relayed to A");
    assert_eq!(
        (bytes.as_slice(), from),
        (&b"back"[..], spec.sides[0].local)
    );

    // The relay publishes its counters after the batch that forwarded the packets.
    let mut snap = plane.snapshot();
    for _ in 0..50 {
        if snap.iter().all(|r| r.relayed.packets[USER] >= 2) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
        snap = plane.snapshot();
    }
    assert_eq!(snap.len(), 2);
    assert!(snap
        .iter()
        .all(|r| r.flows_user == 1 && r.flows_kernel == 0));
    assert!(
        snap.iter().all(|r| r.relayed.packets[USER] >= 2
            && r.relayed.bytes[USER] >= 11
            && r.relayed.packets[KERNEL] == 0),
        "{snap:?}"
    );
    let before_close = snap;

    // Silence beyond the inactivity timeout marks the flow idle.
    let start = Instant::now();
    let mut idle = false;
    while start.elapsed() < Duration::from_secs(5) {
        if plane.idle_flows(Instant::now()).contains(&id) {
            idle = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(idle, "a silent flow is reported idle");

    plane.apply(MediaCommand::Close(id));
    assert_eq!(plane.open_flows(), 0);
    // Counters are totals since start: a closed flow's packets stay counted.
    let after = plane.snapshot();
    for (was, now) in before_close.iter().zip(&after) {
        assert_eq!((now.flows_user, now.flows_kernel), (0, 0));
        assert!(
            now.relayed.packets[USER] >= was.relayed.packets[USER]
                && now.relayed.bytes[USER] >= was.relayed.bytes[USER],
            "totals went down at close: {was:?} -> {now:?}"
        );
    }
    // The ports are free again.
    UdpSocket::bind(spec.sides[0].local).expect("A-side port released");
    UdpSocket::bind(spec.sides[1].local).expect("B-side port released");
    plane.shutdown();
}

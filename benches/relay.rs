//! Relay throughput on loopback: packets per second through one flow and through 1,000 flows,
//! each against a plain forwarder (one thread, epoll + recv_from/send_to, one socket pair per
//! flow) measured in the same run and the same topology:
//!
//!   generator 127.0.0.3 --(172-byte datagrams, sendmmsg)--> side 0 on 127.0.0.1
//!   side 1 on 127.0.0.2 --> sink 127.0.0.4 (recvmmsg, counts)
//!
//! The generator blasts without pacing; what the sink receives per second is the forwarder's
//! capacity (generator, forwarder and sink share this machine's CPUs).
//! `cargo bench --bench relay`; MEASURE_SECS (default 3) and RELAY_THREADS (default 1) tune it.

use palisade::media::relay::{Relay, RelayConfig};
use palisade::media::{FlowId, FlowSpec, SideSpec};
use socket2::{Domain, Protocol, Socket, Type};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const PACKET: usize = 172;
const BATCH: usize = 32;

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    raise_fd_limit();
    let secs = env_num("MEASURE_SECS", 2).clamp(1, 60);
    let repeats = env_num("REPEATS", 2).clamp(1, 10);
    let threads = env_num("RELAY_THREADS", 1).clamp(1, 64) as usize;
    println!(
        "relay bench: {PACKET}-byte datagrams, {secs} s per measurement, best of {repeats} \
         (plain and relay alternate), relay threads = {threads}, {} CPUs",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    println!(
        "{:>6}  {:>12}  {:>12}  {:>12}  {:>12}  {:>6}",
        "flows", "plain offer", "plain pps", "relay offer", "relay pps", "ratio"
    );
    for flows in [1usize, 1000] {
        let (mut plain, mut relay) = (Rate::default(), Rate::default());
        for _ in 0..repeats {
            plain = plain.best(measure(flows, None, secs));
            relay = relay.best(measure(flows, Some(threads), secs));
        }
        println!(
            "{flows:>6}  {:>12.0}  {:>12.0}  {:>12.0}  {:>12.0}  {:>6.2}",
            plain.offered,
            plain.pps,
            relay.offered,
            relay.pps,
            relay.pps / plain.pps.max(1.0)
        );
    }
    println!("offer = datagrams/s the generator sent; pps = datagrams/s the sink received");
}

#[derive(Default, Clone, Copy)]
struct Rate {
    offered: f64,
    pps: f64,
}

impl Rate {
    fn best(self, other: Rate) -> Rate {
        if other.pps > self.pps {
            other
        } else {
            self
        }
    }
}

fn raise_fd_limit() {
    // SAFETY: get/setrlimit on a live struct.
    unsafe {
        let mut rl: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) == 0 && rl.rlim_cur < rl.rlim_max {
            rl.rlim_cur = rl.rlim_max.min(65536);
            libc::setrlimit(libc::RLIMIT_NOFILE, &rl);
        }
    }
}

fn udp(addr: &str, rcvbuf: usize) -> UdpSocket {
    let addr: SocketAddr = addr.parse().unwrap();
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
    let _ = s.set_recv_buffer_size(rcvbuf);
    s.bind(&addr.into()).unwrap();
    s.into()
}

/// Datagrams per second sent by the generator and received by the sink.
fn measure(flows: usize, relay_threads: Option<usize>, secs: u64) -> Rate {
    let stop = Arc::new(AtomicBool::new(false));
    let sink = udp("127.0.0.4:0", 4 << 20);
    let sink_addr = sink.local_addr().unwrap();
    let mut threads: Vec<JoinHandle<()>> = Vec::new();
    let mut relay = None;
    let targets: Vec<SocketAddr> = match relay_threads {
        Some(t) => {
            let cfg = RelayConfig {
                threads: t,
                ..RelayConfig::default()
            };
            let r = Relay::start(cfg).unwrap();
            let mut targets = Vec::new();
            for id in 0..flows as u64 {
                let spec = FlowSpec {
                    id: FlowId(id),
                    sides: [
                        SideSpec {
                            local: "127.0.0.1:0".parse().unwrap(),
                            remote: None,
                        },
                        SideSpec {
                            local: "127.0.0.2:0".parse().unwrap(),
                            remote: Some(sink_addr),
                        },
                    ],
                };
                r.open(spec).unwrap();
                r.set_gate(FlowId(id), true);
                targets.push(r.local_addrs(FlowId(id)).unwrap()[0]);
            }
            relay = Some(r);
            targets
        }
        None => {
            let pairs: Vec<(UdpSocket, UdpSocket)> = (0..flows)
                .map(|_| (udp("127.0.0.1:0", 256 << 10), udp("127.0.0.2:0", 256 << 10)))
                .collect();
            let targets = pairs.iter().map(|p| p.0.local_addr().unwrap()).collect();
            let stop = stop.clone();
            threads.push(std::thread::spawn(move || {
                plain_forwarder(pairs, sink_addr, &stop)
            }));
            targets
        }
    };
    let received = Arc::new(AtomicU64::new(0));
    {
        let (stop, received) = (stop.clone(), received.clone());
        threads.push(std::thread::spawn(move || {
            sink_loop(sink, &received, &stop)
        }));
    }
    let sent = Arc::new(AtomicU64::new(0));
    {
        let (stop, sent) = (stop.clone(), sent.clone());
        threads.push(std::thread::spawn(move || {
            generator(&targets, &sent, &stop)
        }));
    }
    std::thread::sleep(Duration::from_millis(500));
    let (c0, s0, t0) = (
        received.load(Ordering::Relaxed),
        sent.load(Ordering::Relaxed),
        Instant::now(),
    );
    std::thread::sleep(Duration::from_secs(secs));
    let (c1, s1, t1) = (
        received.load(Ordering::Relaxed),
        sent.load(Ordering::Relaxed),
        Instant::now(),
    );
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    if let Some(r) = relay {
        for id in 0..flows as u64 {
            r.close(FlowId(id));
        }
        assert_eq!(r.open_flows(), 0);
        r.shutdown();
    }
    let dt = (t1 - t0).as_secs_f64();
    Rate {
        offered: (s1 - s0) as f64 / dt,
        pps: (c1 - c0) as f64 / dt,
    }
}

/// One socket, sendmmsg batches of 32 round-robin over the targets.
fn generator(targets: &[SocketAddr], sent: &AtomicU64, stop: &AtomicBool) {
    let sock = udp("127.0.0.3:0", 256 << 10);
    let mut payload = [0u8; PACKET];
    payload[0] = 0x80; // RTP v2
    payload[1] = 0; // PCMU
    let len = BATCH.max(targets.len()).div_ceil(BATCH) * BATCH;
    // SAFETY (zeroed): plain C structs.
    let mut names: Vec<libc::sockaddr_in> = (0..len)
        .map(|j| {
            let SocketAddr::V4(a) = targets[j % targets.len()] else {
                unreachable!()
            };
            let mut sin: libc::sockaddr_in = unsafe { std::mem::zeroed() };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr.s_addr = u32::from_ne_bytes(a.ip().octets());
            sin
        })
        .collect();
    let mut iov = libc::iovec {
        iov_base: payload.as_mut_ptr().cast(),
        iov_len: PACKET,
    };
    let mut hdrs: Vec<libc::mmsghdr> = (0..len).map(|_| unsafe { std::mem::zeroed() }).collect();
    for (h, n) in hdrs.iter_mut().zip(names.iter_mut()) {
        h.msg_hdr.msg_name = (n as *mut libc::sockaddr_in).cast();
        h.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
        h.msg_hdr.msg_iov = &mut iov;
        h.msg_hdr.msg_iovlen = 1;
    }
    let mut off = 0;
    let mut seq: u16 = 0;
    while !stop.load(Ordering::Relaxed) {
        payload[2..4].copy_from_slice(&seq.to_be_bytes());
        seq = seq.wrapping_add(1);
        // SAFETY: BATCH initialised headers from `off` pointing at live buffers.
        let n = unsafe {
            libc::sendmmsg(
                sock.as_raw_fd(),
                hdrs.as_mut_ptr().add(off),
                BATCH as u32,
                0,
            )
        };
        if n > 0 {
            sent.fetch_add(n as u64, Ordering::Relaxed);
        }
        off = (off + BATCH) % len;
    }
}

fn sink_loop(sock: UdpSocket, received: &AtomicU64, stop: &AtomicBool) {
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    const N: usize = 64;
    let mut bufs = vec![[0u8; 2048]; N];
    let mut iov: Vec<libc::iovec> = bufs
        .iter_mut()
        .map(|b| libc::iovec {
            iov_base: b.as_mut_ptr().cast(),
            iov_len: b.len(),
        })
        .collect();
    // SAFETY (zeroed): plain C struct.
    let mut hdrs: Vec<libc::mmsghdr> = (0..N).map(|_| unsafe { std::mem::zeroed() }).collect();
    for (h, v) in hdrs.iter_mut().zip(iov.iter_mut()) {
        h.msg_hdr.msg_iov = v;
        h.msg_hdr.msg_iovlen = 1;
    }
    while !stop.load(Ordering::Relaxed) {
        // SAFETY: N initialised headers pointing at live buffers.
        let n = unsafe {
            libc::recvmmsg(
                sock.as_raw_fd(),
                hdrs.as_mut_ptr(),
                N as u32,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if n > 0 {
            received.fetch_add(n as u64, Ordering::Relaxed);
        }
    }
}

/// The reference: one thread, epoll for readiness, then recv_from / send_to per datagram.
fn plain_forwarder(pairs: Vec<(UdpSocket, UdpSocket)>, sink: SocketAddr, stop: &AtomicBool) {
    // SAFETY: plain epoll syscalls on live fds and buffers.
    let ep = unsafe { libc::epoll_create1(0) };
    for (i, (inp, _)) in pairs.iter().enumerate() {
        inp.set_nonblocking(true).unwrap();
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: i as u64,
        };
        unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, inp.as_raw_fd(), &mut ev) };
    }
    let mut evs: Vec<libc::epoll_event> = (0..256).map(|_| unsafe { std::mem::zeroed() }).collect();
    let mut buf = [0u8; 2048];
    while !stop.load(Ordering::Relaxed) {
        let n = unsafe { libc::epoll_wait(ep, evs.as_mut_ptr(), evs.len() as i32, 100) };
        for ev in &evs[..n.max(0) as usize] {
            let (inp, out) = &pairs[ev.u64 as usize];
            for _ in 0..BATCH {
                match inp.recv_from(&mut buf) {
                    Ok((len, _)) => {
                        let _ = out.send_to(&buf[..len], sink);
                    }
                    Err(_) => break,
                }
            }
        }
    }
    unsafe { libc::close(ep) };
}

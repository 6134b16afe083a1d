//! A stand-in for the two borders' media relays (harness self-check only): what
//! Palisade's TrGW is meant to do, in a few lines. Each border rewrites the SDP's
//! candidates to one host candidate on its own relay address, and relays every
//! datagram byte for byte: Alice ↔ 127.0.10.2 | 127.0.20.2 ↔ 127.0.30.2 | 127.0.40.2 ↔ Cindy.
//! Running the tone test through it proves the lab variants' checks can be met.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub type R<T> = Result<T, String>;

pub struct MockBorders {
    /// A's home-side relay endpoint (what Alice's answer names).
    pub a_home: SocketAddr,
    /// B's home-side relay endpoint (what Cindy's offer names).
    pub b_home: SocketAddr,
    socks: [Arc<UdpSocket>; 4],
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

fn bind(ip: &str) -> R<Arc<UdpSocket>> {
    let s = UdpSocket::bind((ip, 0)).map_err(|e| format!("mock relay bind {ip}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_millis(50)))
        .map_err(|e| e.to_string())?;
    Ok(Arc::new(s))
}

impl MockBorders {
    pub fn new() -> R<MockBorders> {
        let socks = [
            bind("127.0.10.2")?, // 0: A home
            bind("127.0.20.2")?, // 1: A interconnect
            bind("127.0.30.2")?, // 2: B interconnect
            bind("127.0.40.2")?, // 3: B home
        ];
        Ok(MockBorders {
            a_home: socks[0].local_addr().unwrap(),
            b_home: socks[3].local_addr().unwrap(),
            socks,
            stop: Arc::new(AtomicBool::new(false)),
            threads: Vec::new(),
        })
    }

    /// Start relaying between Alice's and Cindy's sockets (as the SDP named them),
    /// for at most `limit`.
    pub fn start(&mut self, alice: SocketAddr, cindy: SocketAddr, limit: Duration) {
        let s = &self.socks;
        let i_a = s[1].local_addr().unwrap();
        let i_b = s[2].local_addr().unwrap();
        // (receive on, expected source, send from, send to)
        let legs = [
            (s[0].clone(), alice, s[1].clone(), i_b),
            (s[2].clone(), i_a, s[3].clone(), cindy),
            (s[3].clone(), cindy, s[2].clone(), i_a),
            (s[1].clone(), i_b, s[0].clone(), alice),
        ];
        let end = Instant::now() + limit;
        for (rx, from, tx, to) in legs {
            let stop = self.stop.clone();
            self.threads.push(std::thread::spawn(move || {
                let mut buf = vec![0u8; 2048];
                while !stop.load(Ordering::Relaxed) && Instant::now() < end {
                    if let Ok((n, src)) = rx.recv_from(&mut buf) {
                        if src == from {
                            let _ = tx.send_to(&buf[..n], to);
                        }
                    }
                }
            }));
        }
    }
}

impl Drop for MockBorders {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// `sdp` with c= and the m= port set to `relay`, and every candidate replaced by one
/// host candidate on `relay` (per component), as a border does; everything else untouched.
pub fn rewrite(sdp: &str, relay: SocketAddr) -> String {
    let mut seen_components = Vec::new();
    let mut out = String::new();
    for line in sdp.split_inclusive("\r\n") {
        if let Some(c) = line.trim_end().strip_prefix("a=candidate:") {
            let f: Vec<&str> = c.split_whitespace().collect();
            if f.len() < 8 || seen_components.contains(&f[1].to_string()) {
                continue;
            }
            seen_components.push(f[1].to_string());
            out.push_str(&format!(
                "a=candidate:{} {} {} {} {} {} typ host\r\n",
                f[0],
                f[1],
                f[2],
                f[3],
                relay.ip(),
                relay.port()
            ));
        } else if line.starts_with("c=IN IP4 ") {
            out.push_str(&format!("c=IN IP4 {}\r\n", relay.ip()));
        } else if let Some(rest) = line.strip_prefix("m=") {
            // m=<media> <port> <proto> <fmt...>
            let mut f: Vec<String> = rest.split(' ').map(str::to_string).collect();
            if f.len() > 1 {
                f[1] = relay.port().to_string();
            }
            out.push_str(&format!("m={}", f.join(" ")));
        } else {
            out.push_str(line);
        }
    }
    out
}

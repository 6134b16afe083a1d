//! Deterministically lossy UDP relay, taking the place of a core at `listen`
//! (e.g. 127.0.10.1:5060) and relaying between Palisade (`upstream`) and a test UA
//! bound elsewhere (`ua`, e.g. 127.0.10.1:5070).

use std::collections::HashSet;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug)]
pub enum DropPolicy {
    /// Drop the first copy of every distinct datagram (each direction);
    /// retransmissions (byte-identical copies) pass.
    FirstCopy,
    /// Drop every n-th datagram in each direction.
    EveryNth(usize),
}

pub struct Lossy {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    pub dropped: Arc<AtomicUsize>,
    pub forwarded: Arc<AtomicUsize>,
}

impl Lossy {
    /// Start the relay; it stops by itself after `lifetime`.
    pub fn start(
        listen: SocketAddr,
        upstream: SocketAddr,
        ua: SocketAddr,
        policy: DropPolicy,
        lifetime: Duration,
    ) -> Result<Lossy, String> {
        for a in [listen, upstream, ua] {
            assert!(a.ip().is_loopback(), "lossy relay is loopback only: {a}");
        }
        let sock = UdpSocket::bind(listen).map_err(|e| format!("lossy bind {listen}: {e}"))?;
        sock.set_read_timeout(Some(Duration::from_millis(20)))
            .map_err(|e| e.to_string())?;
        let stop = Arc::new(AtomicBool::new(false));
        let dropped = Arc::new(AtomicUsize::new(0));
        let forwarded = Arc::new(AtomicUsize::new(0));
        let (s2, d2, f2) = (stop.clone(), dropped.clone(), forwarded.clone());
        let thread = std::thread::spawn(move || {
            let end = Instant::now() + lifetime;
            let mut seen: HashSet<(bool, Vec<u8>)> = HashSet::new();
            let mut count = [0usize; 2];
            let mut buf = vec![0u8; 65536];
            while !s2.load(Ordering::SeqCst) && Instant::now() < end {
                let Ok((n, src)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                let data = &buf[..n];
                // from the UA (its own address) → Palisade; anything else → UA
                let to_upstream = src == ua;
                let dir = usize::from(to_upstream);
                count[dir] += 1;
                let drop = match policy {
                    DropPolicy::FirstCopy => seen.insert((to_upstream, data.to_vec())),
                    DropPolicy::EveryNth(k) => k > 0 && count[dir] % k == 0,
                };
                if drop {
                    d2.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let dest = if to_upstream { upstream } else { ua };
                if sock.send_to(data, dest).is_ok() {
                    f2.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        Ok(Lossy {
            stop,
            thread: Some(thread),
            dropped,
            forwarded,
        })
    }

    pub fn dropped(&self) -> usize {
        self.dropped.load(Ordering::Relaxed)
    }
    pub fn forwarded(&self) -> usize {
        self.forwarded.load(Ordering::Relaxed)
    }
}

impl Drop for Lossy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

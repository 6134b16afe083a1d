//! One stream connection, TCP or TLS: frames incoming messages by Content-Length, writes queued
//! outgoing ones, answers CRLF keep-alive pings and, on connections this border opened, sends
//! them (RFC 5626 §4.4.1), and refuses new calls itself while their shard is behind (the
//! admission stage, [`Inbox::refuse`]). Also the plain TCP acceptor and connector.

use super::Inbox;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::mpsc;

use super::Received;
use crate::config::Transport;
use crate::sip::{frame_stream, Framing, Limits};
use crate::transaction::Flow;

/// Open TLS connections by (realm, the partner they proved).
pub(super) type PartnerConnections = Arc<Mutex<HashMap<(usize, Arc<str>), usize>>>;

/// What every connection task needs to know, shared by all of them.
#[derive(Clone)]
pub(super) struct StreamCfg {
    pub limits: Limits,
    pub idle: Duration,
    pub keepalive: Duration,
    pub handshake: Duration,
    pub max_connections: usize,
    pub max_per_partner: usize,
    pub max_per_source: usize,
    pub partial_timeout: Duration,
    /// Open TCP and TLS connections, both directions.
    pub open: Arc<AtomicUsize>,
    /// Open TLS connections by the partner they proved, per realm.
    pub per_partner: PartnerConnections,
    /// Accepted TCP and TLS connections by source address.
    pub per_source: Arc<Mutex<HashMap<std::net::IpAddr, usize>>>,
}

/// One accepted connection's place in the per-source count; freed when dropped, so every way
/// out of a connection task (refused handshake included) gives it back.
pub(super) struct SourceSlot {
    ip: std::net::IpAddr,
    table: Arc<Mutex<HashMap<std::net::IpAddr, usize>>>,
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        if let Ok(mut m) = self.table.lock() {
            if let Some(n) = m.get_mut(&self.ip) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    m.remove(&self.ip);
                }
            }
        }
    }
}

impl StreamCfg {
    /// Admits one more accepted connection from `ip`, or `None` (logged) when the listener is
    /// at `max_tcp_connections` or the source at `max_connections_per_source`.
    pub fn admit(&self, remote: SocketAddr, what: &str) -> Option<SourceSlot> {
        let open = self.open.load(Ordering::Relaxed);
        if open >= self.max_connections {
            tracing::warn!(%remote, "{what} connection refused: {open} open (max_tcp_connections)");
            return None;
        }
        let mut m = self.per_source.lock().ok()?;
        let n = m.entry(remote.ip()).or_insert(0);
        if *n >= self.max_per_source {
            tracing::warn!(%remote, "{what} connection refused: this source has {n} open (max_connections_per_source)");
            return None;
        }
        *n += 1;
        Some(SourceSlot {
            ip: remote.ip(),
            table: self.per_source.clone(),
        })
    }

    /// Counts one more connection of `partner`; `false` (and nothing counted) at its limit.
    pub fn take_partner_slot(&self, realm: usize, partner: &Arc<str>) -> bool {
        let Ok(mut m) = self.per_partner.lock() else {
            return true;
        };
        let n = m.entry((realm, partner.clone())).or_insert(0);
        if *n >= self.max_per_partner {
            return false;
        }
        *n += 1;
        true
    }

    pub fn free_partner_slot(&self, realm: usize, partner: &Arc<str>) {
        if let Ok(mut m) = self.per_partner.lock() {
            if let Some(n) = m.get_mut(&(realm, partner.clone())) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    m.remove(&(realm, partner.clone()));
                }
            }
        }
    }
}

pub(super) async fn tcp_acceptor(
    realm: usize,
    listener: TcpListener,
    events: Inbox,
    cfg: StreamCfg,
) {
    loop {
        let Ok((stream, remote)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let Some(slot) = cfg.admit(remote, "TCP") else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let flow = Flow {
            realm,
            transport: Transport::Tcp,
            remote,
        };
        let (tx, rx) = mpsc::channel(256);
        let up = Received::Connected {
            flow,
            writer: Some(tx),
            peer: None,
        };
        if events.send(up).await.is_err() {
            return;
        }
        let (events, cfg) = (events.clone(), cfg.clone());
        tokio::spawn(async move {
            let _slot = slot;
            run(stream, flow, None, false, rx, events, cfg).await
        });
    }
}

/// Opens a TCP connection leaving from the realm's own address, within 5 s.
pub(super) async fn open_tcp(
    remote: SocketAddr,
    local: Option<std::net::IpAddr>,
) -> std::io::Result<TcpStream> {
    let connect = async {
        let sock = if remote.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        if let Some(ip) = local {
            // Leave from the realm's own address, never from whatever the routing table picks.
            sock.bind(SocketAddr::new(ip, 0))?;
        }
        let stream = sock.connect(remote).await?;
        let _ = stream.set_nodelay(true);
        Ok(stream)
    };
    match tokio::time::timeout(Duration::from_secs(5), connect).await {
        Ok(r) => r,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "connect timed out",
        )),
    }
}

pub(super) async fn tcp_connect(
    flow: Flow,
    local: Option<std::net::IpAddr>,
    rx: mpsc::Receiver<Vec<u8>>,
    events: Inbox,
    cfg: StreamCfg,
) {
    match open_tcp(flow.remote, local).await {
        Ok(stream) => {
            let up = Received::Connected {
                flow,
                writer: None,
                peer: None,
            };
            let _ = events.send(up).await;
            run(stream, flow, None, true, rx, events, cfg).await
        }
        Err(e) => {
            tracing::warn!(remote = %flow.remote, "TCP connect failed: {e}");
            let _ = events.send(Received::Unreachable { flow }).await;
        }
    }
}

/// Drives one connection until it closes: on framing errors (the stream cannot be
/// resynchronised), on idleness, and when the writer side is dropped. `outbound`: this border
/// opened it, so it sends the keep-alive pings.
pub(super) async fn run<S>(
    stream: S,
    flow: Flow,
    peer: Option<Arc<str>>,
    outbound: bool,
    mut rx: mpsc::Receiver<Vec<u8>>,
    events: Inbox,
    cfg: StreamCfg,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    cfg.open.fetch_add(1, Ordering::Relaxed);
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut buf: Vec<u8> = Vec::with_capacity(8192);
    let mut chunk = vec![0u8; 16 * 1024];
    let ping_every = if outbound && !cfg.keepalive.is_zero() {
        cfg.keepalive
    } else {
        // Never fires in practice; keeps one select! shape.
        Duration::from_secs(365 * 86_400)
    };
    let mut ping = tokio::time::interval(ping_every);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.tick().await;
    // Since when the buffer holds an incomplete message; an accepted connection starts so,
    // since it owes us its first message.
    let mut partial_since = (!outbound).then(tokio::time::Instant::now);
    loop {
        let partial_deadline = partial_since.map(|t| t + cfg.partial_timeout);
        tokio::select! {
            _ = async {
                match partial_deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending::<()>().await,
                }
            } => {
                tracing::info!(remote = %flow.remote, "closing connection: no complete message within {} ms (partial_message_timeout_ms)", cfg.partial_timeout.as_millis());
                break;
            }
            out = rx.recv() => match out {
                Some(bytes) => {
                    if wr.write_all(&bytes).await.is_err() || wr.flush().await.is_err() {
                        break;
                    }
                    ping.reset();
                }
                None => break,
            },
            _ = ping.tick() => {
                if wr.write_all(b"\r\n\r\n").await.is_err() || wr.flush().await.is_err() {
                    break;
                }
            }
            read = tokio::time::timeout(cfg.idle, rd.read(&mut chunk)) => {
                let n = match read {
                    Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
                    Ok(Ok(n)) => n,
                };
                buf.extend_from_slice(&chunk[..n]);
                let mut bad = false;
                loop {
                    match frame_stream(&buf, &cfg.limits) {
                        Framing::Incomplete => {
                            if buf.len() > cfg.limits.max_message_size + 4 {
                                bad = true;
                            }
                            break;
                        }
                        Framing::Complete { skip, len } => {
                            // buf[..skip] are CRLF keepalives, buf[skip..len] the message.
                            let ping = buf[..skip].windows(4).any(|w| w == b"\r\n\r\n");
                            let msg = buf[skip..len].to_vec();
                            buf.drain(..len);
                            if ping && msg.is_empty()
                                && (wr.write_all(b"\r\n").await.is_err() || wr.flush().await.is_err())
                            {
                                bad = true;
                                break;
                            }
                            if msg.is_empty() {
                                continue;
                            }
                            // Admission: while the shard it steers to is behind, a new call is
                            // refused here, over this connection, rather than after the queue.
                            if let Some((resp, _)) = events.refuse(flow.realm, &msg, &cfg.limits, flow.remote, Duration::ZERO) {
                                if wr.write_all(&resp).await.is_err() || wr.flush().await.is_err() {
                                    bad = true;
                                    break;
                                }
                                continue;
                            }
                            let ev = Received::Message { flow, bytes: msg, peer: peer.clone(), at: std::time::Instant::now() };
                            if events.send(ev).await.is_err() {
                                bad = true;
                                break;
                            }
                        }
                        Framing::Invalid(why) => {
                            tracing::info!(remote = %flow.remote, "closing connection: {why}");
                            bad = true;
                            break;
                        }
                    }
                }
                if bad {
                    break;
                }
                // Keepalive CRLFs are not a message in progress.
                let pending = buf.iter().any(|b| *b != b'\r' && *b != b'\n');
                partial_since = match (pending, partial_since) {
                    (false, _) => None,
                    (true, Some(t)) => Some(t),
                    (true, None) => Some(tokio::time::Instant::now()),
                };
            }
        }
    }
    let _ = wr.shutdown().await;
    cfg.open.fetch_sub(1, Ordering::Relaxed);
    if let Some(p) = &peer {
        cfg.free_partner_slot(flow.realm, p);
    }
    let _ = events.send(Received::Closed { flow }).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> StreamCfg {
        StreamCfg {
            limits: Limits::default(),
            idle: Duration::from_secs(30),
            keepalive: Duration::ZERO,
            handshake: Duration::from_secs(5),
            max_connections: 16,
            max_per_partner: 4,
            max_per_source: 4,
            partial_timeout: Duration::from_secs(5),
            open: Arc::new(AtomicUsize::new(0)),
            per_partner: Arc::new(Mutex::new(HashMap::new())),
            per_source: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    fn request(method: &str, to_tag: &str, seq: u32) -> String {
        format!(
            "{method} sip:bob@127.0.0.1 SIP/2.0\r\n\
             Via: SIP/2.0/TCP 127.0.0.1:5070;branch=z9hG4bKtcpadm{seq}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:alice@127.0.0.1>;tag=a1\r\n\
             To: <sip:bob@127.0.0.1>{to_tag}\r\nCall-ID: tcp-admission-{seq}\r\n\
             CSeq: {seq} {method}\r\nContent-Length: 0\r\n\r\n"
        )
    }

    /// Real TCP on loopback, the shard side driven through the `Admission` a shard publishes
    /// to: while the shard is behind, a new INVITE is answered 503 + Retry-After over the
    /// connection it came on and never queued (counted under the connection's realm); an
    /// in-dialog request on the same connection is still queued.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn admission_refuses_a_new_invite_over_its_own_connection() {
        let wait = Duration::from_secs(2);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, mut rx) = mpsc::channel(16);
        let inbox = Inbox::single(tx);
        let admission = inbox.admission().clone();
        admission.set_threshold(Duration::from_millis(5));
        admission.publish(0, Duration::from_millis(50));
        tokio::spawn(tcp_acceptor(3, listener, inbox, cfg()));

        let mut c = TcpStream::connect(addr).await.unwrap();
        let up = tokio::time::timeout(wait, rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert!(matches!(up, Received::Connected { .. }), "{up:?}");

        c.write_all(request("INVITE", "", 1).as_bytes())
            .await
            .unwrap();
        let mut got = Vec::new();
        let mut chunk = [0u8; 4096];
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = tokio::time::timeout(wait, c.read(&mut chunk))
                .await
                .expect("503 over the connection")
                .unwrap();
            assert!(n > 0, "connection closed instead of answering");
            got.extend_from_slice(&chunk[..n]);
        }
        let resp = crate::sip::parse_message(&got, &Limits::default()).expect("parses");
        assert_eq!(resp.status(), Some(503));
        assert_eq!(resp.headers.get("Retry-After"), Some("2"));
        assert_eq!(resp.headers.get("Call-ID"), Some("tcp-admission-1"));
        assert!(resp.headers.get("Via").unwrap().contains("z9hG4bKtcpadm1"));
        assert_eq!(admission.take_rejected(), vec![(3, 1)]);

        let bye = request("BYE", ";tag=b1", 2);
        c.write_all(bye.as_bytes()).await.unwrap();
        let got = tokio::time::timeout(wait, rx.recv())
            .await
            .unwrap()
            .unwrap();
        let Received::Message { bytes, flow, .. } = got else {
            panic!("a message, got {got:?}")
        };
        assert_eq!(bytes, bye.as_bytes(), "in-dialog requests still queue");
        assert_eq!(flow.realm, 3);
        assert_eq!(admission.take_rejected(), vec![]);
    }
}

//! One stream connection, TCP or TLS: frames incoming messages by Content-Length, writes queued
//! outgoing ones, answers CRLF keep-alive pings and, on connections this border opened, sends
//! them (RFC 5626 §4.4.1). Also the plain TCP acceptor and connector.

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

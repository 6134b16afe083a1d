//! SIP transports: UDP sockets and TCP connections per realm, on tokio. Owns every signalling
//! socket; turns bytes on the wire into [`Received`] events and [`Transmit`]s into bytes on the
//! wire. Stream framing (Content-Length) happens here; parsing does not. TLS peering will be a
//! third [`crate::config::Transport`] whose connections use the same reader and writer tasks.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream, UdpSocket};
use tokio::sync::mpsc;

use crate::config::{Config, Transport};
use crate::sip::{frame_stream, Framing, Limits};
use crate::transaction::{Flow, Transmit};

/// A message (or datagram) that arrived, or a connection that went away.
#[derive(Debug)]
pub enum Received {
    Message {
        flow: Flow,
        bytes: Vec<u8>,
    },
    /// An accepted connection: replies and dialog requests to `flow` go to `writer`.
    Connected {
        flow: Flow,
        writer: mpsc::Sender<Vec<u8>>,
    },
    Closed {
        flow: Flow,
    },
}

/// Bound listeners of one instance.
pub struct Transports {
    udp: HashMap<usize, Arc<UdpSocket>>,
    tcp: HashMap<(usize, SocketAddr), mpsc::Sender<Vec<u8>>>,
    local_ip: HashMap<usize, std::net::IpAddr>,
    events: mpsc::Sender<Received>,
    limits: Limits,
    idle: Duration,
    max_connections: usize,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {transport} {addr} (realm {realm})")]
pub struct BindError {
    pub transport: &'static str,
    pub addr: SocketAddr,
    pub realm: String,
    #[source]
    pub source: io::Error,
}

fn udp_socket(addr: SocketAddr) -> io::Result<UdpSocket> {
    let sock = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    // No SO_REUSEADDR: on Linux it would let a second instance bind the same UDP address and
    // silently take over the first one's signalling.
    // Bursts of retransmissions must not be dropped by a small default buffer.
    let _ = sock.set_recv_buffer_size(4 << 20);
    sock.set_nonblocking(true)?;
    sock.bind(&addr.into())?;
    UdpSocket::from_std(sock.into())
}

impl Transports {
    /// Binds every listener of the configuration; the events of all of them go to `events`.
    pub async fn bind(
        cfg: &Config,
        events: mpsc::Sender<Received>,
    ) -> Result<Transports, BindError> {
        let limits = Limits {
            max_message_size: cfg.sip.max_message_size,
            max_headers: cfg.sip.max_headers,
        };
        let mut t = Transports {
            udp: HashMap::new(),
            tcp: HashMap::new(),
            local_ip: HashMap::new(),
            events: events.clone(),
            limits,
            idle: cfg.sip.tcp_idle_timeout,
            max_connections: cfg.sip.max_tcp_connections,
        };
        for (ri, realm) in cfg.realms.iter().enumerate() {
            t.local_ip.insert(ri, realm.advertise);
            for l in &realm.listen {
                let err = |source| BindError {
                    transport: l.transport.as_str(),
                    addr: l.addr,
                    realm: realm.name.clone(),
                    source,
                };
                match l.transport {
                    Transport::Udp => {
                        let sock = Arc::new(udp_socket(l.addr).map_err(err)?);
                        t.udp.insert(ri, sock.clone());
                        tokio::spawn(udp_reader(ri, sock, events.clone(), limits));
                    }
                    Transport::Tcp => {
                        let listener = TcpListener::bind(l.addr).await.map_err(err)?;
                        tokio::spawn(tcp_acceptor(ri, listener, events.clone(), t.clone_cfg()));
                    }
                    Transport::Tls => {
                        return Err(err(io::Error::other("TLS listeners are not built yet")));
                    }
                }
                tracing::info!(
                    realm = %realm.name,
                    "listening on {} {}",
                    l.transport.as_str(),
                    l.addr
                );
            }
        }
        Ok(t)
    }

    fn clone_cfg(&self) -> StreamCfg {
        StreamCfg {
            limits: self.limits,
            idle: self.idle,
            max_connections: self.max_connections,
            open: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
        }
    }

    /// Registers the writer of an accepted connection.
    pub fn register(&mut self, flow: Flow, writer: mpsc::Sender<Vec<u8>>) {
        self.tcp.insert((flow.realm, flow.remote), writer);
    }

    pub fn closed(&mut self, flow: Flow) {
        self.tcp.remove(&(flow.realm, flow.remote));
    }

    /// Sends bytes; opens a TCP connection from the realm's address when none exists.
    pub fn send(&mut self, t: Transmit) {
        match t.flow.transport {
            Transport::Udp => {
                if let Some(sock) = self.udp.get(&t.flow.realm) {
                    // UDP send on a non-blocking socket: a full buffer loses the datagram, and
                    // SIP's retransmissions recover it, as for loss on the network.
                    if let Err(e) = sock.try_send_to(&t.bytes, t.flow.remote) {
                        tracing::debug!(remote = %t.flow.remote, "udp send failed: {e}");
                    }
                }
            }
            Transport::Tls => {
                tracing::warn!(remote = %t.flow.remote, "TLS is not built yet; message dropped");
            }
            Transport::Tcp => {
                let key = (t.flow.realm, t.flow.remote);
                let sent = match self.tcp.get(&key) {
                    Some(w) => w.try_send(t.bytes),
                    None => Err(mpsc::error::TrySendError::Closed(t.bytes)),
                };
                let bytes = match sent {
                    Ok(()) => return,
                    // A connection that cannot keep up loses this message, as a congested
                    // network would; the transaction layer's timers handle it. Opening a second
                    // connection would not help and, toward an accepted one, cannot work.
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        tracing::debug!(remote = %t.flow.remote, "TCP send queue full");
                        return;
                    }
                    Err(mpsc::error::TrySendError::Closed(bytes)) => {
                        self.tcp.remove(&key);
                        bytes
                    }
                };
                let (tx, rx) = mpsc::channel(256);
                let _ = tx.try_send(bytes);
                self.tcp.insert(key, tx);
                let local = self.local_ip.get(&t.flow.realm).copied();
                tokio::spawn(tcp_connect(
                    t.flow,
                    local,
                    rx,
                    self.events.clone(),
                    self.clone_cfg(),
                ));
            }
        }
    }
}

#[derive(Clone)]
struct StreamCfg {
    limits: Limits,
    idle: Duration,
    max_connections: usize,
    open: Arc<std::sync::atomic::AtomicUsize>,
}

async fn udp_reader(
    realm: usize,
    sock: Arc<UdpSocket>,
    events: mpsc::Sender<Received>,
    limits: Limits,
) {
    // One byte more than the cap, so an oversized datagram is seen as such, not truncated.
    let mut buf = vec![0u8; limits.max_message_size.saturating_add(1).max(2048)];
    loop {
        match sock.recv_from(&mut buf).await {
            Ok((n, remote)) => {
                let flow = Flow {
                    realm,
                    transport: Transport::Udp,
                    remote,
                };
                let ev = Received::Message {
                    flow,
                    bytes: buf[..n].to_vec(),
                };
                if events.send(ev).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                // ICMP errors from earlier sends surface here on Linux; they are not fatal.
                tracing::debug!("udp receive error: {e}");
            }
        }
    }
}

async fn tcp_acceptor(
    realm: usize,
    listener: TcpListener,
    events: mpsc::Sender<Received>,
    cfg: StreamCfg,
) {
    loop {
        let Ok((stream, remote)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let open = cfg.open.load(std::sync::atomic::Ordering::Relaxed);
        if open >= cfg.max_connections {
            tracing::warn!(%remote, "TCP connection refused: {open} open (max_tcp_connections)");
            continue;
        }
        let flow = Flow {
            realm,
            transport: Transport::Tcp,
            remote,
        };
        let (tx, rx) = mpsc::channel(256);
        if events
            .send(Received::Connected { flow, writer: tx })
            .await
            .is_err()
        {
            return;
        }
        tokio::spawn(run_connection(
            stream,
            flow,
            rx,
            events.clone(),
            cfg.clone(),
        ));
    }
}

async fn tcp_connect(
    flow: Flow,
    local: Option<std::net::IpAddr>,
    rx: mpsc::Receiver<Vec<u8>>,
    events: mpsc::Sender<Received>,
    cfg: StreamCfg,
) {
    let connect = async {
        let sock = if flow.remote.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        if let Some(ip) = local {
            // Leave from the realm's own address, never from whatever the routing table picks.
            sock.bind(SocketAddr::new(ip, 0))?;
        }
        sock.connect(flow.remote).await
    };
    match tokio::time::timeout(Duration::from_secs(5), connect).await {
        Ok(Ok(stream)) => run_connection(stream, flow, rx, events, cfg).await,
        Ok(Err(e)) => {
            tracing::warn!(remote = %flow.remote, "TCP connect failed: {e}");
            let _ = events.send(Received::Closed { flow }).await;
        }
        Err(_) => {
            tracing::warn!(remote = %flow.remote, "TCP connect timed out");
            let _ = events.send(Received::Closed { flow }).await;
        }
    }
}

/// Drives one TCP connection: frames incoming messages by Content-Length and writes queued
/// outgoing ones. Closes on framing errors (the stream cannot be resynchronised), on idleness
/// and when the writer side is dropped.
async fn run_connection(
    stream: TcpStream,
    flow: Flow,
    mut rx: mpsc::Receiver<Vec<u8>>,
    events: mpsc::Sender<Received>,
    cfg: StreamCfg,
) {
    use std::sync::atomic::Ordering;
    cfg.open.fetch_add(1, Ordering::Relaxed);
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = stream.into_split();
    let mut buf: Vec<u8> = Vec::with_capacity(8192);
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        tokio::select! {
            out = rx.recv() => match out {
                Some(bytes) => {
                    if wr.write_all(&bytes).await.is_err() {
                        break;
                    }
                }
                None => break,
            },
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
                            if ping && msg.is_empty() && wr.write_all(b"\r\n").await.is_err() {
                                bad = true;
                                break;
                            }
                            if msg.is_empty() {
                                continue;
                            }
                            if events.send(Received::Message { flow, bytes: msg }).await.is_err() {
                                bad = true;
                                break;
                            }
                        }
                        Framing::Invalid(why) => {
                            tracing::info!(remote = %flow.remote, "closing TCP connection: {why}");
                            bad = true;
                            break;
                        }
                    }
                }
                if bad {
                    break;
                }
            }
        }
    }
    cfg.open.fetch_sub(1, Ordering::Relaxed);
    let _ = events.send(Received::Closed { flow }).await;
}

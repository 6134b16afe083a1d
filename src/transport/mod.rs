//! SIP transports: UDP sockets, TCP connections and TLS connections per realm, on tokio. Owns
//! every signalling socket; turns bytes on the wire into [`Received`] events and [`Transmit`]s
//! into bytes on the wire. Stream framing (Content-Length) happens here; parsing does not.
//!
//! Files: `udp` (the datagram reader), `stream` (one TCP or TLS connection: framing, CRLF
//! keep-alive, idle close), `tls` (handshakes both ways, and which partner the certificate
//! proved). A TLS connection carries the proven partner's name on every message it delivers;
//! the engine selects the partner by it, never by the connection's address.

mod inbox;
mod stream;
mod tls;
mod udp;

pub use inbox::{admission_answer, Admission, Inbox, ADMISSION_RETRY_AFTER_S};

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::config::{Config, RealmKind, Transport};
use crate::peering::{RealmTls, TlsSetupError};
use crate::sip::Limits;
use crate::transaction::{Flow, Transmit};

/// A message (or datagram) that arrived, or what happened to a connection.
#[derive(Debug)]
pub enum Received {
    Message {
        flow: Flow,
        bytes: Vec<u8>,
        /// The partner its TLS connection proved (`None` on UDP and TCP).
        peer: Option<Arc<str>>,
        /// When it was read from the socket: the service measures the queue delay with it.
        at: Instant,
    },
    /// A connection is up. Accepted ones bring the `writer` that replies and dialog requests to
    /// `flow` go to; ones this border opened already have theirs registered (`None`).
    Connected {
        flow: Flow,
        writer: Option<mpsc::Sender<Vec<u8>>>,
        peer: Option<Arc<str>>,
    },
    Closed {
        flow: Flow,
    },
    /// A connection this border tried to open could not be: refused, timed out, or its TLS
    /// handshake failed. What was sent over it has failed (the engine fails over).
    Unreachable {
        flow: Flow,
    },
    /// A TLS handshake failed, with its reason (`Refusal::reason`, `handshake_timeout`...).
    TlsRefused {
        realm: usize,
        remote: SocketAddr,
        /// The partner connected to us (else we connected to it).
        inbound: bool,
        reason: &'static str,
    },
}

/// Bound listeners of one instance, and the connections to and from it.
pub struct Transports {
    udp: HashMap<usize, Arc<tokio::net::UdpSocket>>,
    /// Each realm's UDP source screen (see `udp`), by realm index.
    screens: HashMap<usize, Arc<udp::Screen>>,
    conns: HashMap<(usize, Transport, SocketAddr), mpsc::Sender<Vec<u8>>>,
    local_ip: HashMap<usize, std::net::IpAddr>,
    events: Inbox,
    cfg: stream::StreamCfg,
    tls: SharedTls,
    /// Which partner lives at an address (its next hop and sources): a TLS connection opened
    /// there must prove that partner, not just any partner of the realm.
    expect: HashMap<(usize, SocketAddr), Arc<str>>,
    /// The part of `expect` the configuration gives (next hops), kept to restart from.
    expect_configured: HashMap<(usize, SocketAddr), Arc<str>>,
    backoff: HashMap<(usize, Transport, SocketAddr), Backoff>,
    backoff_max: Duration,
    /// For accepted connections: the address (source IP, Via sent-by port) to open a new
    /// connection to when one is gone while something is still to be sent (RFC 3261 §18.2.2).
    fallback: HashMap<(usize, Transport, SocketAddr), SocketAddr>,
}

/// How many connections' fallback addresses are remembered.
const FALLBACKS_KEPT: usize = 4096;

/// The TLS configurations of every realm, replaced whole by a reload; a handshake takes the
/// current one, so new connections use a new certificate and established ones keep theirs.
pub(crate) type SharedTls = Arc<RwLock<HashMap<usize, RealmTls>>>;

#[derive(Debug, Clone, Copy)]
struct Backoff {
    until: Instant,
    delay: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("cannot listen on {transport} {addr} (realm {realm})")]
    Listen {
        transport: &'static str,
        addr: SocketAddr,
        realm: String,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Tls(#[from] TlsSetupError),
}

/// The sources a realm's configuration names: its core's, or its partners'.
fn sources(realm: &crate::config::Realm) -> Vec<std::net::IpAddr> {
    match realm.kind {
        crate::config::RealmKind::Home => realm.core_sources.clone(),
        crate::config::RealmKind::Peer => {
            realm.peers.iter().flat_map(|p| p.sources.clone()).collect()
        }
    }
}

fn expectations(cfg: &Config) -> HashMap<(usize, SocketAddr), Arc<str>> {
    let mut out = HashMap::new();
    for (ri, realm) in cfg.realms.iter().enumerate() {
        if realm.kind != RealmKind::Peer {
            continue;
        }
        for p in realm.peers.iter().filter(|p| p.tls.is_some()) {
            let name: Arc<str> = Arc::from(p.name.as_str());
            out.insert((ri, p.next_hop.addr), name);
        }
    }
    out
}

impl Transports {
    /// Replaces the UDP source screens (after a reload) with who each realm may hear from.
    pub fn screen(&self, known: impl Fn(usize) -> Vec<std::net::IpAddr>) {
        for (ri, s) in &self.screens {
            s.set(known(*ri));
        }
    }

    /// Datagrams the UDP screens dropped since the last call, by realm index.
    pub fn take_screened(&self) -> Vec<(usize, u64)> {
        self.screens
            .iter()
            .map(|(ri, s)| (*ri, s.take_dropped()))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    /// The admission stage's threshold (`[sip] admission_delay_ms`), at bind and on reload.
    pub fn set_admission_delay(&self, delay: std::time::Duration) {
        self.events.admission().set_threshold(delay);
    }

    /// New INVITEs the admission stage refused since the last call (every transport), by
    /// realm index.
    pub fn take_admission_rejected(&self) -> Vec<(usize, u64)> {
        self.events.admission().take_rejected()
    }

    /// Binds every listener of the configuration; the events of all of them go to `events`.
    pub async fn bind(cfg: &Config, events: Inbox) -> Result<Transports, BindError> {
        let limits = Limits {
            max_message_size: cfg.sip.max_message_size,
            max_headers: cfg.sip.max_headers,
        };
        let tls: SharedTls = Arc::new(RwLock::new(crate::peering::build(cfg)?));
        let scfg = stream::StreamCfg {
            limits,
            idle: cfg.sip.tcp_idle_timeout,
            keepalive: cfg.sip.keepalive_interval,
            handshake: cfg.sip.tls_handshake_timeout,
            max_connections: cfg.sip.max_tcp_connections,
            max_per_partner: cfg.sip.max_connections_per_partner,
            max_per_source: cfg.sip.max_connections_per_source,
            partial_timeout: cfg.sip.partial_message_timeout,
            open: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
            per_partner: Arc::new(Mutex::new(HashMap::new())),
            per_source: Arc::new(Mutex::new(HashMap::new())),
        };
        let mut t = Transports {
            udp: HashMap::new(),
            screens: HashMap::new(),
            conns: HashMap::new(),
            local_ip: HashMap::new(),
            events: events.clone(),
            cfg: scfg,
            tls,
            expect: expectations(cfg),
            expect_configured: expectations(cfg),
            backoff: HashMap::new(),
            backoff_max: cfg.sip.reconnect_backoff_max,
            fallback: HashMap::new(),
        };
        t.set_admission_delay(cfg.sip.admission_delay);
        for (ri, realm) in cfg.realms.iter().enumerate() {
            t.local_ip.insert(ri, realm.advertise);
            for l in &realm.listen {
                let err = |source| BindError::Listen {
                    transport: l.transport.as_str(),
                    addr: l.addr,
                    realm: realm.name.clone(),
                    source,
                };
                match l.transport {
                    Transport::Udp => {
                        let sock = Arc::new(udp::socket(l.addr).map_err(err)?);
                        t.udp.insert(ri, sock.clone());
                        let screen = t
                            .screens
                            .entry(ri)
                            .or_insert_with(|| Arc::new(udp::Screen::new(sources(realm))))
                            .clone();
                        tokio::spawn(udp::reader(ri, sock, events.clone(), limits, screen));
                    }
                    Transport::Tcp => {
                        let listener = TcpListener::bind(l.addr).await.map_err(err)?;
                        tokio::spawn(stream::tcp_acceptor(
                            ri,
                            listener,
                            events.clone(),
                            t.cfg.clone(),
                        ));
                    }
                    Transport::Tls => {
                        let listener = TcpListener::bind(l.addr).await.map_err(err)?;
                        tokio::spawn(tls::acceptor(
                            ri,
                            listener,
                            events.clone(),
                            t.cfg.clone(),
                            t.tls.clone(),
                        ));
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

    /// Takes the certificates, keys and partner trust of a new configuration: connections
    /// opened or accepted from now on use them; established ones are left as they are. On
    /// error nothing changes.
    /// `tls` is `peering::build(cfg)`, made (and checked) by the caller before it applied
    /// anything else of `cfg`.
    pub fn install_tls(&mut self, tls: HashMap<usize, RealmTls>, cfg: &Config) {
        if let Ok(mut w) = self.tls.write() {
            *w = tls;
        }
        self.expect_configured = expectations(cfg);
        self.expect = self.expect_configured.clone();
    }

    /// A TLS connection opened to `addr` in `realm` must prove partner `name` (an address a
    /// DNS lookup gave for it). Bounded: past [`FALLBACKS_KEPT`] entries the table restarts
    /// from the configured next hops, and lookups fill it again.
    pub fn expect_partner(&mut self, realm: usize, addr: SocketAddr, name: &str) {
        if self.expect.len() >= FALLBACKS_KEPT {
            self.expect = self.expect_configured.clone();
        }
        self.expect.insert((realm, addr), Arc::from(name));
    }

    /// The UDP listening socket of a realm, if it has one: an engine may send its datagrams
    /// through it directly (see `service::shard`).
    pub fn udp_socket(&self, realm: usize) -> Option<Arc<tokio::net::UdpSocket>> {
        self.udp.get(&realm).cloned()
    }

    /// TLS connections open with `partner` of `realm`, both directions (for `palisade status`).
    pub fn tls_connections(&self, realm: usize, partner: &str) -> usize {
        self.cfg
            .per_partner
            .lock()
            .map(|m| m.get(&(realm, Arc::from(partner))).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    /// A connection is up: registers the writer of an accepted one; one this border opened
    /// has proved it can be reached, so its address is out of back-off.
    pub fn connected(&mut self, flow: Flow, writer: Option<mpsc::Sender<Vec<u8>>>) {
        let key = (flow.realm, flow.transport, flow.remote);
        match writer {
            Some(w) => {
                self.conns.insert(key, w);
            }
            None => {
                self.backoff.remove(&key);
            }
        }
    }

    /// What the engine learnt of a connection a request came over: where its responses go
    /// once it is gone (RFC 3261 §18.2.2), and an RFC 5923 alias (requests to `sent_by` may use
    /// it; the engine checked the partner asked for it and owns the address). A connection of
    /// our own to the alias address is kept if there is one; the alias goes with the
    /// connection when it closes.
    pub fn connection_hint(&mut self, h: crate::b2bua::ConnectionHint) {
        let conn_key = (h.conn.realm, h.conn.transport, h.conn.remote);
        if !h.alias {
            if self.fallback.len() >= FALLBACKS_KEPT {
                // Bounded: the oldest knowledge goes first in bulk; a response to a connection
                // forgotten here is only as lost as before this table existed.
                self.fallback.clear();
            }
            self.fallback.insert(conn_key, h.sent_by);
            return;
        }
        let Some(w) = self
            .conns
            .get(&conn_key)
            .filter(|w| !w.is_closed())
            .cloned()
        else {
            return;
        };
        let key = (h.conn.realm, h.conn.transport, h.sent_by);
        if self.conns.get(&key).is_none_or(|c| c.is_closed()) {
            self.conns.insert(key, w);
            tracing::debug!(to = %h.sent_by, via = %h.conn.remote, "connection alias (RFC 5923)");
        }
    }

    pub fn closed(&mut self, flow: Flow) {
        let key = (flow.realm, flow.transport, flow.remote);
        if self.conns.get(&key).is_some_and(|w| w.is_closed()) {
            self.conns.remove(&key);
        }
    }

    /// A connection to `flow` could not be opened: new attempts wait (1 s, doubling up to
    /// `reconnect_backoff_max`), and messages to it fail at once meanwhile.
    pub fn unreachable(&mut self, flow: Flow) {
        let key = (flow.realm, flow.transport, flow.remote);
        self.conns.remove(&key);
        let delay = match self.backoff.get(&key) {
            Some(b) => (b.delay * 2).min(self.backoff_max),
            None => Duration::from_secs(1).min(self.backoff_max),
        };
        self.backoff.insert(
            key,
            Backoff {
                until: Instant::now() + delay,
                delay,
            },
        );
    }

    /// Sends bytes; opens a TCP or TLS connection from the realm's address when none exists.
    pub fn send(&mut self, mut t: Transmit) {
        if t.flow.transport == Transport::Udp {
            if let Some(sock) = self.udp.get(&t.flow.realm) {
                // UDP send on a non-blocking socket: a full buffer loses the datagram, and
                // SIP's retransmissions recover it, as for loss on the network.
                if let Err(e) = sock.try_send_to(&t.bytes, t.flow.remote) {
                    tracing::debug!(remote = %t.flow.remote, "udp send failed: {e}");
                }
            }
            return;
        }
        let mut key = (t.flow.realm, t.flow.transport, t.flow.remote);
        if self.conns.get(&key).is_none_or(|w| w.is_closed()) {
            // Kept, not taken: every later response of that connection goes the same way.
            if let Some(to) = self.fallback.get(&key).copied() {
                // An accepted connection is gone: its peer's listener (RFC 3261 §18.2.2), not
                // the ephemeral port it connected from.
                self.conns.remove(&key);
                t.flow.remote = to;
                key = (t.flow.realm, t.flow.transport, to);
            }
        }
        let sent = match self.conns.get(&key) {
            Some(w) => w.try_send(t.bytes),
            None => Err(mpsc::error::TrySendError::Closed(t.bytes)),
        };
        let bytes = match sent {
            Ok(()) => return,
            // A connection that cannot keep up loses this message, as a congested network
            // would; the transaction layer's timers handle it. Opening a second connection
            // would not help and, toward an accepted one, cannot work.
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::debug!(remote = %t.flow.remote, "send queue full");
                return;
            }
            Err(mpsc::error::TrySendError::Closed(bytes)) => {
                self.conns.remove(&key);
                bytes
            }
        };
        if let Some(b) = self.backoff.get(&key) {
            if Instant::now() < b.until {
                tracing::debug!(remote = %t.flow.remote, "not reconnecting yet (back-off); message failed");
                let _ = self.events.try_send(Received::Unreachable { flow: t.flow });
                return;
            }
        }
        let (tx, rx) = mpsc::channel(256);
        let _ = tx.try_send(bytes);
        self.conns.insert(key, tx);
        let local = self.local_ip.get(&t.flow.realm).copied();
        match t.flow.transport {
            Transport::Tls => {
                let realm_tls = self
                    .tls
                    .read()
                    .ok()
                    .and_then(|m| m.get(&t.flow.realm).cloned());
                let Some(realm_tls) = realm_tls else {
                    tracing::warn!(remote = %t.flow.remote, "no TLS certificate in this realm; message dropped");
                    let _ = self.events.try_send(Received::Unreachable { flow: t.flow });
                    return;
                };
                let expect = self.expect.get(&(t.flow.realm, t.flow.remote)).cloned();
                tokio::spawn(tls::connect(
                    t.flow,
                    local,
                    expect,
                    realm_tls,
                    rx,
                    self.events.clone(),
                    self.cfg.clone(),
                ));
            }
            _ => {
                tokio::spawn(stream::tcp_connect(
                    t.flow,
                    local,
                    rx,
                    self.events.clone(),
                    self.cfg.clone(),
                ));
            }
        }
    }
}

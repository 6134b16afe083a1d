//! Configuration and peering policy: the TOML files an engineer writes, validated into one
//! [`Config`] value that the rest of Palisade reads. Pure: reads no clock and opens no socket;
//! file reading is confined to [`load`].
//!
//! Layout: one file per border instance (node settings, realms) that names, per peer realm, the
//! policy files of its peering partners (`policies/*.toml`, one per partner). Every error names
//! the file, line and field, and all errors found are reported together.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

mod describe;
mod dns;
mod ng;
mod parse;
mod shard;

pub use dns::{DnsSettings, EnumSettings, PeerDns, PeerRoute};
pub use ng::{NgSettings, DEFAULT_NG_LISTEN};
#[cfg(test)]
mod tests;

/// The lab file embedded in the binary, used by `palisade run` without `--config`.
pub const EMBEDDED_DEFAULT: &str = include_str!("../../policies/default.toml");

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Udp,
    Tcp,
    /// SIP over TLS on TCP (RFC 3261 §26, RFC 5630): mutually authenticated toward partners.
    Tls,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RealmKind {
    /// This operator's own IMS core.
    Home,
    /// Other operators' borders.
    Peer,
}

/// Whether REFER (RFC 3515) crosses to and from a partner (`refer` in its policy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReferPolicy {
    /// Relayed like any dialog request, with Refer-To/Referred-By rewritten and an embedded
    /// Replaces translated.
    #[default]
    Relay,
    /// For partners that do not take REFER: the border answers every REFER to or from this
    /// partner with 403 itself, so the transferor learns at once and can fall back.
    Refuse,
    /// For partners that do not take REFER but should be transferable: a REFER in a dialog
    /// that would go to this partner is handled by the border as the referee (202, the
    /// NOTIFYs, the INVITE to the Refer-To target), and the partner's leg is connected to the
    /// new one (`b2bua::transfer`). Out of a dialog it is refused as with `Refuse`.
    Terminate,
}

/// RFC 3325 trust: whether identity and charging headers may cross to/from this party.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust {
    Trusted,
    Untrusted,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listen {
    pub transport: Transport,
    pub addr: SocketAddr,
}

/// Written as in the configuration file: `udp:192.0.2.1:5060`, `tcp:[2001:db8::1]:5060`.
impl std::fmt::Display for Listen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}",
            self.transport.as_str().to_ascii_lowercase(),
            self.addr
        )
    }
}

/// Written as in the configuration file: `udp:192.0.2.1:5060`.
impl std::fmt::Display for NextHop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}",
            self.transport.as_str().to_ascii_lowercase(),
            self.addr
        )
    }
}

/// A next hop: where requests are sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextHop {
    pub transport: Transport,
    pub addr: SocketAddr,
}

/// The option tags accepted by default: reliable provisionals and their early-dialog companions
/// (RFC 3262, 6086 `199`), session timers (RFC 4028), preconditions (RFC 3312), the dialog
/// extensions the B2BUA maps (Replaces RFC 3891, Join RFC 3911, target-dialog RFC 4538,
/// norefersub RFC 4488), GRUU (RFC 5627), History-Info (RFC 7044) and Path (RFC 3327).
pub const DEFAULT_EXTENSIONS: &[&str] = &[
    "100rel",
    "199",
    "timer",
    "precondition",
    "replaces",
    "join",
    "tdialog",
    "norefersub",
    "gruu",
    "histinfo",
    "path",
];

/// SIP timers and limits (RFC 3261 §17 names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipSettings {
    pub t1: Duration,
    pub t2: Duration,
    pub t4: Duration,
    /// Timer C: how long an INVITE may wait for a final response before the border gives up.
    pub timer_c: Duration,
    /// How long a new request may stay parked while the router resolves its target (ENUM,
    /// DNS) before the border answers 504.
    pub lookup_timeout: Duration,
    /// Received messages waiting for the engine beyond which new calls are shed with 503
    /// (RFC 6357): the queue, not a call count, says the border is behind.
    pub overload_backlog: usize,
    /// New INVITEs are also shed while a message waits longer than this between its arrival
    /// and the engine (the queue delay: load measured, whatever the message mix). Default T1:
    /// a peer waiting longer starts retransmitting, which only adds to the load.
    pub overload_delay: Duration,
    /// The admission stage ahead of the engines: while a shard's queue delay (or a datagram's
    /// own wait in the socket buffer) is over this, the readers (UDP, TCP, TLS) answer a new
    /// out-of-dialog INVITE steering to it with 503 + Retry-After
    /// themselves, statelessly, and never queue it, so the refusal does not wait behind the
    /// backlog it is about. Zero turns it off (then only the engine sheds, `overload_delay`).
    pub admission_delay: Duration,
    pub max_message_size: usize,
    pub max_headers: usize,
    /// Max-Forwards put on requests that arrive without one.
    pub max_forwards: u8,
    /// Most concurrent calls; beyond it new INVITEs get 503.
    pub max_calls: usize,
    /// Most concurrent TCP connections per listener.
    pub max_tcp_connections: usize,
    /// A TCP connection idle this long is closed.
    pub tcp_idle_timeout: Duration,
    /// Connections this border opened (TCP, TLS) send a CRLF keep-alive ping (RFC 5626
    /// §4.4.1) after this long without sending anything; 0 disables.
    pub keepalive_interval: Duration,
    /// A connection that has sent part of a message (or, accepted, nothing at all) for this
    /// long without completing it is closed: a slow-loris client holds no buffer for long.
    pub partial_message_timeout: Duration,
    /// Most TCP and TLS connections one source address may hold open to us at once.
    pub max_connections_per_source: usize,
    /// Most TLS connections one partner may hold open to us at once.
    pub max_connections_per_partner: usize,
    /// A TLS handshake (either direction) must complete within this.
    pub tls_handshake_timeout: Duration,
    /// After a connection to an address fails, new ones wait 1 s, then twice as long after
    /// each further failure, up to this; messages meanwhile fail at once (and fail over).
    pub reconnect_backoff_max: Duration,
    /// A dialog with no request for this long is torn down (guards against lost BYEs).
    pub dialog_idle_timeout: Duration,
    /// Option tags (RFC 3261 §19.2) the border accepts in `Require` and `Proxy-Require`. A request
    /// requiring any other gets 420 Bad Extension with `Unsupported` (RFC 3261 §8.2.2.3, §16.3).
    /// The default lists the extensions the B2BUA handles or relays end to end.
    pub extensions: Vec<String>,
    /// Keep an nftables table (`inet palisade_sip_<name>`) that drops, in the kernel, packets
    /// to a peer realm's SIP ports from any address that is not one of its partners (UDP, and
    /// TCP SYNs), counting them. Needs CAP_NET_ADMIN and `nft`.
    pub kernel_filter: bool,
    /// A partner address a DNS lookup gave joins the kernel filter's allow set for the DNS
    /// TTL of that answer, but at least this long after the last lookup that gave it (a
    /// partner reconnects from its border's address later than a short TTL would say).
    pub kernel_filter_learned_hold: Duration,
}

impl Default for SipSettings {
    fn default() -> Self {
        SipSettings {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
            timer_c: Duration::from_secs(180),
            lookup_timeout: Duration::from_secs(5),
            overload_backlog: 1024,
            overload_delay: Duration::from_millis(500),
            admission_delay: Duration::from_millis(20),
            max_message_size: 65_535,
            max_headers: 256,
            max_forwards: 70,
            max_calls: 10_000,
            max_tcp_connections: 1_024,
            tcp_idle_timeout: Duration::from_secs(300),
            keepalive_interval: Duration::from_secs(30),
            partial_message_timeout: Duration::from_secs(10),
            max_connections_per_source: 32,
            max_connections_per_partner: 8,
            tls_handshake_timeout: Duration::from_secs(5),
            reconnect_backoff_max: Duration::from_secs(60),
            dialog_idle_timeout: Duration::from_secs(7_200),
            extensions: DEFAULT_EXTENSIONS.iter().map(|s| s.to_string()).collect(),
            kernel_filter: false,
            kernel_filter_learned_hold: Duration::from_secs(300),
        }
    }
}

/// Which headers may leave the border toward a realm or peer, beyond the ones the B2BUA builds
/// itself (Via, From, To, Call-ID, CSeq, Contact, Max-Forwards, Route, Record-Route,
/// Content-Type, Content-Length).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderPolicy {
    /// Header names (canonical long form, case-insensitive) allowed out.
    pub allow: Vec<String>,
    /// Body types (`type/subtype`, case-insensitive) allowed out; any other body is removed.
    /// SDP is always anchored; `message/sipfrag` is cut down to its status line.
    pub bodies: Vec<String>,
}

/// One peering partner, from its `policies/*.toml` file.
#[derive(Debug, Clone, PartialEq)]
pub struct Peer {
    pub name: String,
    /// Which peer realm it is reached through.
    pub realm: String,
    /// SIP domains it serves: requests for these are routed to it.
    pub domains: Vec<String>,
    /// Source addresses it sends from; anything else is dropped silently.
    pub sources: Vec<IpAddr>,
    /// Where requests to it go (static routing; ENUM/DNS comes later).
    pub next_hop: NextHop,
    pub trust: Trust,
    /// Whether REFER crosses to and from it.
    pub refer: ReferPolicy,
    /// Methods it may send us; others get 405.
    pub allowed_methods: Vec<String>,
    pub headers: HeaderPolicy,
    /// Most concurrent calls with this partner.
    pub max_calls: usize,
    /// Most new calls (INVITEs outside a dialog) per second from this partner; 0: no limit.
    pub max_cps: u32,
    /// Most requests outside a dialog (new calls included) per second from it; 0: no limit.
    pub max_rps: u32,
    /// Most of its requests at once awaiting the border's final answer (in-dialog ones too;
    /// ACK and CANCEL are never refused); beyond it new requests get 503.
    pub max_transactions: usize,
    /// Most bytes of SIP per second from it (every message, responses too); what is over is
    /// dropped unread, as if lost. 0: no limit.
    pub max_bytes_per_second: u32,
    /// Inter-operator identifier of this partner (P-Charging-Vector term-ioi / orig-ioi).
    pub ioi: String,
    /// Whether its domain is resolved by DNS, and the transports DNS may choose.
    pub dns: PeerDns,
    /// Mutual TLS: how it proves its identity. `None`: plain UDP/TCP by source address.
    pub tls: Option<PeerTls>,
    /// The file it came from, for messages.
    pub origin: PathBuf,
}

/// How media is relayed (the TrGW).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaSettings {
    /// Move latched flows into nftables (needs CAP_NET_ADMIN and the `nft` binary; without
    /// them Palisade logs once and relays in user space).
    pub kernel: bool,
    /// Latch only onto packets from the SDP's address (port may differ); otherwise the first
    /// source latches (symmetric RTP behind NAT).
    pub strict_latching: bool,
    /// A call whose media has been silent this long in both directions is ended (BYE on both legs).
    pub inactivity_timeout: Duration,
    /// User-space relay threads.
    pub relay_threads: usize,
    /// Name of the nftables table Palisade owns (replaced at start-up, removed on shutdown).
    pub nft_table: String,
}

impl Default for MediaSettings {
    fn default() -> Self {
        MediaSettings {
            kernel: false,
            strict_latching: false,
            inactivity_timeout: Duration::from_secs(60),
            relay_threads: 1,
            nft_table: "palisade".to_string(),
        }
    }
}

/// How the service runs: stopping (SIGTERM).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSettings {
    /// After SIGTERM, how long calls in progress may go on (new ones get 503) before the
    /// border hangs up the rest on both legs.
    pub drain_timeout: Duration,
    /// How many B2BUA engines (shards) share the calls, each on its own core; 0 (the default):
    /// one per core available to the process. A dialog reference (Replaces, Join) naming
    /// another shard's call is translated through the shards' shared dialog index
    /// (`b2bua::DialogIndex`). A restart changes it, a reload does not.
    pub shards: usize,
}

impl Default for ServiceSettings {
    fn default() -> Self {
        ServiceSettings {
            drain_timeout: Duration::from_secs(30),
            shards: 0,
        }
    }
}

/// The admin HTTP listener: `/metrics` (Prometheus text format), `/healthz`, `/readyz`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminSettings {
    /// Whether the listener runs at all.
    pub enabled: bool,
    /// Where it listens; a non-loopback address needs `token`.
    pub listen: SocketAddr,
    /// When set, every request must carry `Authorization: Bearer <token>`.
    pub token: Option<String>,
}

/// Default admin listener address.
pub const DEFAULT_ADMIN_LISTEN: ([u8; 4], u16) = ([127, 0, 0, 1], 9101);

impl Default for AdminSettings {
    fn default() -> Self {
        AdminSettings {
            enabled: true,
            listen: SocketAddr::from(DEFAULT_ADMIN_LISTEN),
            token: None,
        }
    }
}

/// Default relay port range of a realm.
pub const DEFAULT_MEDIA_PORTS: (u16, u16) = (20_000, 29_999);

#[derive(Debug, Clone, PartialEq)]
pub struct Realm {
    pub name: String,
    pub kind: RealmKind,
    pub listen: Vec<Listen>,
    /// Address written into Via, Contact and Record-Route of this realm's leg.
    pub advertise: IpAddr,
    /// Home realm only: the core's address for requests toward home.
    pub core: Option<NextHop>,
    /// Home realm only: addresses the core sends from.
    pub core_sources: Vec<IpAddr>,
    /// Home realm: the core's trust (normally trusted). Peer realms take trust per peer.
    pub trust: Trust,
    pub headers: HeaderPolicy,
    /// Peer realm: partners reached through it.
    pub peers: Vec<Peer>,
    /// Address the relay binds and writes into this realm's SDP (default: `advertise`).
    pub media_address: IpAddr,
    /// Inclusive UDP port range of the relay in this realm (RTP on even ports, RTCP on the
    /// next odd one).
    pub media_ports: (u16, u16),
    /// Peer realm: name servers for the RFC 3263 lookups of its partners (an IPX's private
    /// DNS); empty: the `[dns]` servers.
    pub dns_servers: Vec<SocketAddr>,
    /// The certificate and key of its TLS listener and outgoing TLS connections.
    pub tls: Option<RealmTls>,
}

/// A PEM file named by the configuration, with the text it had when the configuration was read
/// (so a reload sees a rotated certificate as a change, and a running border never re-reads a
/// half-written file).
#[derive(Clone, PartialEq, Eq)]
pub struct PemFile {
    pub path: PathBuf,
    pub pem: String,
}

/// Never prints the text: it may be a private key.
impl std::fmt::Debug for PemFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PemFile({})", self.path.display())
    }
}

/// What this border presents on a realm's TLS listener and connections (RFC 5922 §7.4): its
/// certificate chain (leaf first) and private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RealmTls {
    pub certificate: PemFile,
    pub key: PemFile,
}

/// How a partner proves who it is on a TLS connection (mutual authentication, both ways): a
/// certificate whose SHA-256 fingerprint is pinned here, or one issued by `ca` naming one of
/// `identities` (its SIP domain, RFC 5922 §7.1). A partner with this policy is TLS-only:
/// anything it sends over plain UDP or TCP is dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerTls {
    /// SHA-256 fingerprints of the leaf certificates it may present.
    pub fingerprints: Vec<[u8; 32]>,
    /// CA certificates (PEM bundle) that issue its certificates.
    pub ca: Option<PemFile>,
    /// Names its certificate must carry (subjectAltName `sip:` URI or dNSName); default: its
    /// `domains`.
    pub identities: Vec<String>,
    /// A certificate revocation list (PEM) from its CA; a revoked certificate is refused.
    pub crl: Option<PemFile>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Instance name, used in logs and as this operator's IOI.
    pub name: String,
    /// This operator's own SIP domain(s).
    pub home_domains: Vec<String>,
    /// This operator's inter-operator identifier (P-Charging-Vector orig-ioi on the way out).
    pub ioi: String,
    pub sip: SipSettings,
    pub media: MediaSettings,
    pub service: ServiceSettings,
    pub admin: AdminSettings,
    /// `[ng]`: rtpengine's control protocol (off unless the table is present).
    pub ng: NgSettings,
    /// `[dns]`: name servers and resolver limits.
    pub dns: DnsSettings,
    /// `[enum]`: number routing by ENUM; `None` when the table is absent.
    pub enum_routing: Option<EnumSettings>,
    pub realms: Vec<Realm>,
    /// Log filter (tracing EnvFilter syntax), e.g. "info".
    pub log: String,
    /// How log lines are written (`log_format`).
    pub log_format: LogFormat,
}

/// How log lines are written: for a person at a terminal, or one JSON object per line for the
/// journal and log shippers (fields, span and the call's correlation id as keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// JSON when stderr is the systemd journal (`$JOURNAL_STREAM` names it), text otherwise.
    #[default]
    Auto,
    Text,
    Json,
}

impl LogFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Auto => "auto",
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }

    /// The keyword of the node file and of `PALISADE_LOG_FORMAT`.
    pub fn from_keyword(s: &str) -> Option<LogFormat> {
        match s {
            "auto" => Some(LogFormat::Auto),
            "text" => Some(LogFormat::Text),
            "json" => Some(LogFormat::Json),
            _ => None,
        }
    }
}

impl Config {
    /// This configuration with every TLS listener and next hop made plain UDP on port 5060 and
    /// the TLS policies removed: for in-memory runs of the engine (tests, the core bench), which
    /// exchange messages without a transport, so there is no handshake to prove identities.
    #[doc(hidden)]
    pub fn plain_udp(mut self) -> Config {
        let udp = |addr: SocketAddr| SocketAddr::new(addr.ip(), 5060);
        for r in &mut self.realms {
            r.tls = None;
            for l in &mut r.listen {
                if l.transport == Transport::Tls {
                    l.transport = Transport::Udp;
                    l.addr = udp(l.addr);
                }
            }
            r.listen.dedup();
            for p in &mut r.peers {
                p.tls = None;
                if p.next_hop.transport == Transport::Tls {
                    p.next_hop = NextHop {
                        transport: Transport::Udp,
                        addr: udp(p.next_hop.addr),
                    };
                }
            }
        }
        self
    }
}

/// One problem in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{}:{}: {field}: {message}", file.display(), line, column)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    /// Dotted path of the offending field, following the TOML keys and naming realms and inline
    /// peers by their `name`: `realm.interconnect.listen[1]`, `realm.interconnect.peer.operator-b.sources[0]`,
    /// `realm[2].name` (before the name is known), `sip.t2_ms`. In a peer policy file the path is
    /// relative to that file (`next_hop`). TOML syntax errors use `(syntax)`.
    pub field: String,
    /// What class of problem it is, for code and tests to match on; `message` says it in words.
    pub kind: ConfigErrorKind,
    pub message: String,
}

/// The class of a configuration problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConfigErrorKind {
    /// A file could not be read: the node file, or a peer policy file it names.
    Io,
    /// TOML syntax.
    Syntax,
    /// A key the table does not have.
    UnknownKey,
    /// A known key where it does not apply (`core` in a peer realm, `peers` in the home realm).
    Misplaced,
    /// A required key is absent (`advertise` with a wildcard listen included), or the realms lack
    /// a home or a peer realm.
    MissingField,
    /// A value of the wrong TOML type (an integer where a string belongs).
    WrongType,
    /// A value of the right type that is not acceptable: a bad address, domain, method or header
    /// name, an out-of-range number, an unknown keyword, an empty string or list.
    BadValue,
    /// The same thing given twice: a list entry, a realm or peer name, a peer policy file, a
    /// second home realm, a domain or source claimed by two peers.
    Duplicate,
    /// Values that cannot hold together: t2 below t1, overlapping listeners or media port
    /// ranges, a peer domain that is a home domain, a peer source that is a core source, a peer
    /// file naming another realm than the one that references it.
    Conflict,
}

/// All problems found, in file order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))]
pub struct ConfigErrors(pub Vec<ConfigError>);

/// Reading the files from disk lives outside this (pure) module; see [`crate::files`].
pub use crate::files::load;

/// Validates a node file given as text. `origin` is used in error messages and to resolve the
/// relative paths of peer policy files; `read` fetches those files (tests pass an in-memory map).
pub fn parse(
    text: &str,
    origin: &Path,
    read: &dyn Fn(&Path) -> std::io::Result<String>,
) -> Result<Config, ConfigErrors> {
    parse::parse(text, origin, read)
}

impl Config {
    pub fn realm(&self, name: &str) -> Option<&Realm> {
        self.realms.iter().find(|r| r.name == name)
    }

    pub fn home(&self) -> &Realm {
        self.realms
            .iter()
            .find(|r| r.kind == RealmKind::Home)
            .expect("validated config has exactly one home realm")
    }

    /// Prints the effective configuration (defaults filled in) as TOML-like text for
    /// `palisade check`.
    pub fn describe(&self) -> String {
        describe::describe(self)
    }
}

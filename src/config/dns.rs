//! The configuration of DNS routing: the `[dns]` table (name servers, timeouts, cache and
//! hold-down limits), the `[enum]` table (ENUM suffixes and what a number without a record
//! gets), and the per-partner `route` / `transports` keys of peer policy files.

use std::net::SocketAddr;
use std::time::Duration;

use super::Transport;

/// `[dns]`: how Palisade asks DNS. Without `servers`, the system resolver configuration
/// (`/etc/resolv.conf`) is used; carrier ENUM and IPX DNS are private, so a border normally
/// names its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsSettings {
    pub servers: Vec<SocketAddr>,
    /// How long one query to one server may take.
    pub timeout: Duration,
    /// Tries per query (each server in turn).
    pub attempts: usize,
    /// Most answers cached (positive and negative together).
    pub cache_size: usize,
    /// Longest time an answer is trusted, whatever its TTL.
    pub max_ttl: Duration,
    /// Longest time a "no such record" answer is kept (RFC 2308 takes it from the SOA).
    pub max_negative_ttl: Duration,
    /// How long a target that failed (timeout, 503, connection failure) is tried last.
    pub hold_down: Duration,
}

impl Default for DnsSettings {
    fn default() -> Self {
        DnsSettings {
            servers: Vec::new(),
            timeout: Duration::from_millis(1500),
            attempts: 2,
            cache_size: 4096,
            max_ttl: Duration::from_secs(86_400),
            max_negative_ttl: Duration::from_secs(900),
            hold_down: Duration::from_secs(30),
        }
    }
}

/// `[enum]`: numbers routed by ENUM. Present means requests from the home core for a `tel:`
/// or `user=phone` URI are resolved by ENUM, then RFC 3263.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnumSettings {
    /// Name servers for ENUM queries (carrier ENUM is often its own private tree); empty: the
    /// `[dns]` servers.
    pub servers: Vec<SocketAddr>,
    /// Suffixes queried in order (e.g. a private carrier ENUM tree, then `e164.arpa`).
    pub suffixes: Vec<String>,
    /// The partner (peer name) that gets numbers ENUM has no record for, e.g. a transit carrier.
    pub fallback: Option<String>,
    /// The status for a number without a record when there is no fallback: 404 or 604.
    pub no_record_status: u16,
}

impl Default for EnumSettings {
    fn default() -> Self {
        EnumSettings {
            servers: Vec::new(),
            suffixes: vec!["e164.arpa".to_string()],
            fallback: None,
            no_record_status: 404,
        }
    }
}

/// How requests reach a partner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PeerRoute {
    /// Always its `next_hop`.
    #[default]
    Static,
    /// Its domain resolved by RFC 3263 (NAPTR, SRV, A/AAAA); `next_hop` stays the address for
    /// responses over UDP and the fallback of in-dialog requests.
    Dns,
}

/// A partner's DNS routing policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerDns {
    pub route: PeerRoute,
    /// Transports DNS may choose toward it, in no particular order (NAPTR order decides);
    /// a service for any other (plain UDP toward a TLS-only partner) is skipped.
    pub transports: Vec<Transport>,
}

impl Default for PeerDns {
    fn default() -> Self {
        PeerDns {
            route: PeerRoute::Static,
            transports: vec![Transport::Tls, Transport::Tcp, Transport::Udp],
        }
    }
}

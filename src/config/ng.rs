//! `[ng]`: rtpengine's ng control protocol, so a SIP proxy (Kamailio's `rtpengine` module, or
//! the shared RTP bench) can anchor media on Palisade's relay as it would on rtpengine.

use std::net::{IpAddr, SocketAddr};

/// Default ng listen address when the table enables it without `listen` (rtpengine's usual).
pub const DEFAULT_NG_LISTEN: ([u8; 4], u16) = ([127, 0, 0, 1], 22223);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NgSettings {
    /// Where ng requests are received (UDP); `None`: the protocol is off (the default).
    pub listen: Option<SocketAddr>,
    /// Addresses allowed to send requests; empty: loopback addresses only. The protocol has no
    /// authentication, so a non-loopback `listen` needs this list.
    pub sources: Vec<IpAddr>,
    /// `direction` names of the requests and the realm each stands for (the realm's own name is
    /// always accepted too), e.g. rtpengine interface names `("internal", "home")`.
    pub directions: Vec<(String, String)>,
    /// Realms of the offerer's and the answerer's side when an offer names no `direction`
    /// (default: the home realm, then the first peer realm).
    pub default_direction: Option<[String; 2]>,
    /// Calls set up over ng at once; an offer beyond it gets an error.
    pub max_calls: usize,
    /// Replies remembered by cookie, so a retransmitted request gets the same answer instead of
    /// being applied twice.
    pub reply_cache: usize,
}

impl Default for NgSettings {
    fn default() -> Self {
        NgSettings {
            listen: None,
            sources: Vec::new(),
            directions: Vec::new(),
            default_direction: None,
            max_calls: 10_000,
            reply_cache: 4096,
        }
    }
}

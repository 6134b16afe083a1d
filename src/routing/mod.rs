//! Routing decisions: which realm and next hop a new request goes to. Pure: the decision is a
//! function of the configuration and the request target. Static domain routing here; ENUM and
//! RFC 3263 DNS resolution ([`dns::DnsRouter`]) plug in behind [`Router`], their queries made by
//! the service (`service::dns`) from the pure pieces in [`enum_`], [`naptr`], [`srv`], [`cache`].

pub mod cache;
pub mod dns;
pub mod enum_;
pub mod naptr;
pub mod srv;

use crate::config::{Config, NextHop, RealmKind};
use crate::sip::Uri;

/// Where a new request goes. `targets` are in the order to try them (RFC 3263 §4.3): the core
/// sends to the first and moves to the next when a target times out or answers 503 before any
/// early dialog exists; a route always has at least one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// To a peering partner: realm index, peer index within that realm (positions in the
    /// configuration the router was given; the engine turns them into a stable identity).
    Peer {
        realm: usize,
        peer: usize,
        targets: Vec<NextHop>,
        /// The Request-URI the partner gets when the lookup translated it (ENUM: a `tel:`
        /// number becomes the `sip:` URI its NAPTR gave); `None` keeps the received one.
        uri: Option<Uri>,
    },
    /// To this operator's core.
    Home { realm: usize, targets: Vec<NextHop> },
    /// No route: answer 404 from the border.
    NotFound,
}

/// Identifies one route lookup handed out by the engine (`Border::poll_lookup`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LookupId(pub u64);

/// A target to resolve outside the engine (ENUM, DNS); the answer goes back with its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupRequest {
    pub id: LookupId,
    pub target: Uri,
    /// Whether the request came from this operator's core.
    pub from_home: bool,
}

/// What a lookup found: a route, or the status the caller gets (404, 604, 503...).
pub type LookupResult = Result<Route, u16>;

/// Decides routes for new requests.
pub trait Router {
    /// `from_home` says whether the request came from this operator's core.
    fn route(&self, cfg: &Config, from_home: bool, target: &Uri) -> Route;

    /// Whether this target must be resolved outside the engine first (a network lookup): the
    /// request is then parked and its route comes back through `Border::handle_lookup`.
    fn defer(&self, _cfg: &Config, _from_home: bool, _target: &Uri) -> bool {
        false
    }
}

/// Routes by the Request-URI's domain: from home to the peer that serves it, from a peer to the
/// home core when the domain is ours. No transit: a peer cannot route to another peer.
#[derive(Debug, Default, Clone, Copy)]
pub struct StaticRouter;

impl Router for StaticRouter {
    fn route(&self, cfg: &Config, from_home: bool, target: &Uri) -> Route {
        let Some(sip) = target.as_sip() else {
            // tel: and other schemes need ENUM; until then there is no route.
            return Route::NotFound;
        };
        let domain = sip.host_bare();
        if from_home {
            for (ri, realm) in cfg.realms.iter().enumerate() {
                if realm.kind != RealmKind::Peer {
                    continue;
                }
                for (pi, peer) in realm.peers.iter().enumerate() {
                    if peer.domains.iter().any(|d| d.eq_ignore_ascii_case(&domain)) {
                        return Route::Peer {
                            realm: ri,
                            peer: pi,
                            targets: vec![peer.next_hop.clone()],
                            uri: None,
                        };
                    }
                }
            }
            Route::NotFound
        } else if cfg
            .home_domains
            .iter()
            .any(|d| d.eq_ignore_ascii_case(&domain))
        {
            let (ri, home) = cfg
                .realms
                .iter()
                .enumerate()
                .find(|(_, r)| r.kind == RealmKind::Home)
                .expect("validated config has a home realm");
            match &home.core {
                Some(next_hop) => Route::Home {
                    realm: ri,
                    targets: vec![next_hop.clone()],
                },
                None => Route::NotFound,
            }
        } else {
            Route::NotFound
        }
    }
}

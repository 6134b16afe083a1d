//! DNS routing decisions that need no network: which requests wait for a lookup
//! ([`DnsRouter`]), which configured partner a resolved domain belongs to (Palisade sends only
//! to partners, whatever DNS says), how a URI's explicit transport and port steer RFC 3263, and
//! the identity a TLS partner must prove. The lookups themselves run in `service::dns`.

use super::{Route, Router, StaticRouter};
use crate::config::{Config, Peer, PeerRoute, RealmKind, Transport};
use crate::sip::{SipUri, Uri};

/// Static routing plus DNS: from the home core, a `tel:`/`user=phone` number (when `[enum]` is
/// configured) and a SIP URI for a partner whose policy says `route = "dns"` are resolved
/// outside the engine; everything else is routed at once by [`StaticRouter`].
#[derive(Debug, Default, Clone, Copy)]
pub struct DnsRouter;

impl Router for DnsRouter {
    fn route(&self, cfg: &Config, from_home: bool, target: &Uri) -> Route {
        StaticRouter.route(cfg, from_home, target)
    }

    fn defer(&self, cfg: &Config, from_home: bool, target: &Uri) -> bool {
        if !from_home {
            return false;
        }
        if cfg.enum_routing.is_some() && super::enum_::e164_of(target).is_some() {
            return true;
        }
        target
            .as_sip()
            .and_then(|u| peer_for_domain(cfg, &u.host_bare()))
            .is_some_and(|(r, p)| cfg.realms[r].peers[p].dns.route == PeerRoute::Dns)
    }
}

/// The partner (realm index, peer index) serving `domain`, if one does.
pub fn peer_for_domain(cfg: &Config, domain: &str) -> Option<(usize, usize)> {
    let domain = domain.trim_end_matches('.');
    cfg.realms
        .iter()
        .enumerate()
        .filter(|(_, r)| r.kind == RealmKind::Peer)
        .find_map(|(ri, r)| {
            r.peers
                .iter()
                .position(|p| p.domains.iter().any(|d| d.eq_ignore_ascii_case(domain)))
                .map(|pi| (ri, pi))
        })
}

/// The partner called `name`.
pub fn peer_by_name(cfg: &Config, name: &str) -> Option<(usize, usize)> {
    cfg.realms.iter().enumerate().find_map(|(ri, r)| {
        r.peers
            .iter()
            .position(|p| p.name == name)
            .map(|pi| (ri, pi))
    })
}

pub fn is_home_domain(cfg: &Config, domain: &str) -> bool {
    let domain = domain.trim_end_matches('.');
    cfg.home_domains
        .iter()
        .any(|d| d.eq_ignore_ascii_case(domain))
}

/// What the URI itself fixes for RFC 3263 (§4.1, §4.2): a transport (`sips:` means TLS, else a
/// `transport=` parameter) and a port. `Err` for a transport Palisade does not speak.
pub fn explicit(uri: &SipUri) -> Result<(Option<Transport>, Option<u16>), String> {
    let t = match uri.param("transport").flatten() {
        None if uri.secure => Some(Transport::Tls),
        None => None,
        Some(t) => match t.to_ascii_lowercase().as_str() {
            "udp" if !uri.secure => Some(Transport::Udp),
            "tcp" if uri.secure => Some(Transport::Tls),
            "tcp" => Some(Transport::Tcp),
            "tls" => Some(Transport::Tls),
            other => return Err(format!("transport={other} is not one Palisade speaks here")),
        },
    };
    Ok((t, uri.port))
}

/// The default port of a transport (RFC 3261 §19.1.2).
pub fn default_port(t: Transport) -> u16 {
    match t {
        Transport::Tls => 5061,
        Transport::Tcp | Transport::Udp => 5060,
    }
}

/// What a partner must prove on a TLS connection, in words, from its policy's `[tls]` table:
/// the certificate it is pinned to, or its CA and the identities the certificate must name
/// (RFC 5922 §7.1). A partner without one authenticates by address only.
pub fn tls_identity(peer: &Peer) -> String {
    let Some(tls) = &peer.tls else {
        return format!(
            "nothing: {} has no [tls] policy (its source address identifies it)",
            peer.name
        );
    };
    let mut ways = Vec::new();
    if !tls.fingerprints.is_empty() {
        let pins: Vec<String> = tls
            .fingerprints
            .iter()
            .map(crate::peering::trust::format_fingerprint)
            .collect();
        ways.push(format!("the pinned certificate {}", pins.join(" or ")));
    }
    if let Some(ca) = &tls.ca {
        ways.push(format!(
            "a certificate from the CA in {} naming {}",
            ca.path.display(),
            tls.identities.join(" or ")
        ));
    }
    ways.join(", or ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_transport_and_port() {
        let u = |s: &str| SipUri::parse(s).unwrap();
        assert_eq!(explicit(&u("sip:b.example")).unwrap(), (None, None));
        assert_eq!(
            explicit(&u("sips:b.example")).unwrap(),
            (Some(Transport::Tls), None)
        );
        assert_eq!(
            explicit(&u("sip:b.example:5070;transport=TCP")).unwrap(),
            (Some(Transport::Tcp), Some(5070))
        );
        assert!(explicit(&u("sip:b.example;transport=sctp")).is_err());
        assert!(explicit(&u("sips:b.example;transport=udp")).is_err());
    }
}

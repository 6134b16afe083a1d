//! NAPTR records as Palisade reads them, and RFC 3263 §4.1 server location from them: which
//! SIP services (`SIPS+D2T`, `SIP+D2T`, `SIP+D2U`) a partner's domain offers, in order then
//! preference, with the ones its peering policy does not allow skipped (and said why).

use crate::config::Transport;

/// One NAPTR record (RFC 3403), fields as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Naptr {
    pub order: u16,
    pub preference: u16,
    pub flags: String,
    pub services: String,
    pub regexp: String,
    /// The replacement domain (`.` when none), absolute with the trailing dot.
    pub replacement: String,
}

impl std::fmt::Display for Naptr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "NAPTR {} {} \"{}\" \"{}\" \"{}\" {}",
            self.order, self.preference, self.flags, self.services, self.regexp, self.replacement
        )
    }
}

/// The transport an RFC 3263 service field names (RFC 3263 §4.1, RFC 5630 for SIPS).
pub fn service_transport(services: &str) -> Option<Transport> {
    match services.to_ascii_uppercase().as_str() {
        "SIPS+D2T" => Some(Transport::Tls),
        "SIP+D2T" => Some(Transport::Tcp),
        "SIP+D2U" => Some(Transport::Udp),
        _ => None,
    }
}

/// The SRV name for a transport when the domain has no NAPTR (RFC 3263 §4.1, last paragraph).
pub fn srv_name(transport: Transport, domain: &str) -> String {
    let domain = domain.trim_end_matches('.');
    match transport {
        Transport::Tls => format!("_sips._tcp.{domain}."),
        Transport::Tcp => format!("_sip._tcp.{domain}."),
        Transport::Udp => format!("_sip._udp.{domain}."),
    }
}

/// What one NAPTR of the partner's domain meant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceOutcome {
    /// Use the SRV name `replacement` for this transport.
    Use(Transport),
    /// Not a SIP service we know, or not an `s`-flag rule.
    Ignored(&'static str),
    /// A SIP service the partner's policy does not allow.
    NotAllowed(Transport),
}

/// The services to try, in order: NAPTRs sorted by order then preference (RFC 3403 §4.1), only
/// `s`-flag SIP services whose transport `allowed` lists; each transport at most once. Returns
/// every record with its outcome and the `(transport, SRV name)` list.
#[allow(clippy::type_complexity)]
pub fn sip_services(
    naptrs: &[Naptr],
    allowed: &[Transport],
) -> (Vec<(Naptr, ServiceOutcome)>, Vec<(Transport, String)>) {
    let mut sorted = naptrs.to_vec();
    sorted.sort_by_key(|n| (n.order, n.preference));
    let mut out = Vec::new();
    let mut chosen: Vec<(Transport, String)> = Vec::new();
    for n in sorted {
        let outcome = match service_transport(&n.services) {
            None => ServiceOutcome::Ignored("not a SIP service"),
            Some(_) if !n.flags.eq_ignore_ascii_case("s") => {
                ServiceOutcome::Ignored("flag is not \"s\"")
            }
            Some(t) if !allowed.contains(&t) => ServiceOutcome::NotAllowed(t),
            Some(t) if chosen.iter().any(|(c, _)| *c == t) => {
                ServiceOutcome::Ignored("transport already chosen")
            }
            Some(t) => {
                chosen.push((t, n.replacement.clone()));
                ServiceOutcome::Use(t)
            }
        };
        out.push((n, outcome));
    }
    (out, chosen)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(order: u16, pref: u16, flags: &str, services: &str, repl: &str) -> Naptr {
        Naptr {
            order,
            preference: pref,
            flags: flags.into(),
            services: services.into(),
            regexp: String::new(),
            replacement: repl.into(),
        }
    }

    #[test]
    fn services_in_order_policy_applied() {
        let set = vec![
            n(30, 10, "s", "SIP+D2U", "_sip._udp.b."),
            n(10, 10, "s", "SIPS+D2T", "_sips._tcp.b."),
            n(20, 10, "s", "SIP+D2T", "_sip._tcp.b."),
            n(20, 5, "", "SIP+D2T", "_x.b."),
            n(5, 5, "s", "SIP+D2S", "_sctp.b."),
        ];
        let (steps, chosen) = sip_services(&set, &[Transport::Udp, Transport::Tcp]);
        assert_eq!(
            chosen,
            vec![
                (Transport::Tcp, "_sip._tcp.b.".to_string()),
                (Transport::Udp, "_sip._udp.b.".to_string())
            ]
        );
        assert_eq!(steps[0].1, ServiceOutcome::Ignored("not a SIP service"));
        assert_eq!(steps[1].1, ServiceOutcome::NotAllowed(Transport::Tls));
        assert_eq!(steps[2].1, ServiceOutcome::Ignored("flag is not \"s\""));
        let (_, tls) = sip_services(&set, &[Transport::Tls]);
        assert_eq!(tls, vec![(Transport::Tls, "_sips._tcp.b.".to_string())]);
    }

    #[test]
    fn srv_names_without_naptr() {
        assert_eq!(
            srv_name(Transport::Tls, "b.example"),
            "_sips._tcp.b.example."
        );
        assert_eq!(
            srv_name(Transport::Udp, "b.example."),
            "_sip._udp.b.example."
        );
    }
}

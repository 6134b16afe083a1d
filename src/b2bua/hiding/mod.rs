//! Topology hiding and screening (TS 24.229 §5.10.4 and §5.10.6): which header fields of a message
//! received on one leg may appear on the other, and how identities and charging identifiers are
//! rewritten at the border.

use super::privacy::{screened_history, without_display_name, Privacy, HISTORY};
use crate::config::{Config, HeaderPolicy, Trust};
use crate::sip::{split_commas, Headers, Message, NameAddr, Uri};

mod bodies;
pub use bodies::{copy_body, BodyRules, DialogIds};

/// Headers the B2BUA builds itself for each leg; the received values never cross.
const BUILT_PER_LEG: &[&str] = &[
    "Via",
    "From",
    "To",
    "Call-ID",
    "CSeq",
    "Contact",
    "Max-Forwards",
    "Content-Length",
    "Content-Type",
    "RSeq",
    "RAck",
    "P-Charging-Vector",
];

/// Headers that carry a network's inside and never cross, whatever a policy allows
/// (TS 24.229 §5.10.4: Via, Record-Route, Route, Path, Service-Route; and the internal-only
/// P-headers of RFC 3455 / RFC 7315).
const NEVER_CROSS: &[&str] = &[
    "Record-Route",
    "Route",
    "Path",
    "Service-Route",
    "P-Charging-Function-Addresses",
    "P-Visited-Network-ID",
    "P-Access-Network-Info",
    "P-Served-User",
    "P-Profile-Key",
    // Replaces and Join name a dialog by its Call-ID and tags, which differ per leg; relaying
    // them verbatim would leak the other leg's. `replaces.rs` writes the translated value.
    "Replaces",
    "Join",
];

/// Identity headers that RFC 3325 lets cross only inside a trust domain.
const TRUST_DOMAIN_ONLY: &[&str] = &["P-Asserted-Identity", "P-Preferred-Identity"];

/// Headers that describe software and are kept from untrusted peers whatever the allow-list says.
const FINGERPRINTING: &[&str] = &["Server", "User-Agent", "Warning", "Organization"];

fn is_in(list: &[&str], name: &str) -> bool {
    list.iter().any(|n| n.eq_ignore_ascii_case(name))
}

/// The trust relation of a message crossing the border: what it came from and where it goes.
#[derive(Debug, Clone, Copy)]
pub struct Crossing<'a> {
    pub from_trust: Trust,
    pub to_trust: Trust,
    pub to_policy: &'a HeaderPolicy,
    /// Toward a peer: our public domains and the one that replaces any other host in the URIs
    /// that headers carry (Refer-To, Referred-By), as in From/To.
    pub public: Option<(&'a [String], &'a str)>,
}

/// Header fields whose URI is rewritten toward a peer like From/To (RFC 3515, RFC 3892): an
/// internal host becomes the public domain, URI parameters and headers (an embedded
/// `?Replaces=` names the other leg's Call-ID and tags) are dropped.
const URI_REWRITTEN: &[&str] = &["Refer-To", "Referred-By"];

/// Contact parameters that are capabilities (RFC 3840 feature tags, 3GPP ICSI/IARI, the
/// conference focus of RFC 4579) and carry nothing of a network's inside: they are put on the
/// border's own Contact. `+sip.instance`, `gr` and `pub-gruu` (RFC 5627) name a device and are not.
fn is_feature_tag(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    let plain = [
        "isfocus",
        "audio",
        "video",
        "text",
        "data",
        "control",
        "application",
        "automata",
        "class",
        "duplex",
        "mobility",
        "description",
        "events",
        "priority",
        "methods",
        "schemes",
        "actor",
        "language",
        "type",
        "extensions",
    ];
    if plain.contains(&n.as_str()) {
        return true;
    }
    n.starts_with("+g.") || (n.starts_with("+sip.") && n != "+sip.instance")
}

/// The feature tags of `src`'s first Contact, as `;name[=value]` to append to the border's.
pub fn feature_tags(src: &Message) -> String {
    let Some(na) = src
        .headers
        .values("Contact")
        .first()
        .and_then(|v| NameAddr::parse(v))
    else {
        return String::new();
    };
    let mut out = String::new();
    for (name, value) in &na.params.0 {
        if !is_feature_tag(name) {
            continue;
        }
        out.push(';');
        out.push_str(name);
        if let Some(v) = value {
            out.push('=');
            out.push_str(v);
        }
    }
    out
}

/// Copies the header fields of `src` that may cross into `dst`, applying the allow-list of the
/// destination and the trust rules.
pub fn copy_screened(src: &Message, dst: &mut Headers, crossing: Crossing<'_>) {
    let untrusted = crossing.to_trust != Trust::Trusted;
    let privacy = Privacy::of(src);
    for h in src.headers.iter() {
        let name = h.name.as_str();
        if is_in(BUILT_PER_LEG, name) || is_in(NEVER_CROSS, name) {
            continue;
        }
        // RFC 3325 §9.1: whatever Privacy says, an untrusted party never sees the identity, and
        // a trusted one may (it applies Privacy: id itself before leaving the trust domain).
        if is_in(TRUST_DOMAIN_ONLY, name)
            && (crossing.from_trust != Trust::Trusted || crossing.to_trust != Trust::Trusted)
        {
            continue;
        }
        if is_in(FINGERPRINTING, name) && untrusted {
            continue;
        }
        // RFC 3323 §5: toward an untrusted party the border is the privacy service.
        if untrusted && privacy.withholds(name) {
            continue;
        }
        if !crossing
            .to_policy
            .allow
            .iter()
            .any(|a| a.eq_ignore_ascii_case(name))
        {
            continue;
        }
        if is_in(URI_REWRITTEN, name) {
            if let Some((domains, domain)) = crossing.public {
                let mut v = identity_for_leg(&h.value, true, domains, domain);
                if untrusted && privacy.hides_identity() {
                    v = without_display_name(&v);
                }
                dst.push(name, v);
                continue;
            }
        }
        // RFC 3325: within the trust domain the asserted identity crosses, but its URIs name
        // hosts like From/To do (an S-CSCF, an address): toward a peer they get public hosts.
        if is_in(TRUST_DOMAIN_ONLY, name) {
            if let Some((domains, domain)) = crossing.public {
                let ids: Vec<String> = split_commas(&h.value)
                    .into_iter()
                    .map(|id| identity_for_leg(id, true, domains, domain))
                    .collect();
                dst.push(name, ids.join(", "));
                continue;
            }
        }
        if is_in(HISTORY, name) {
            if let Some(v) = screened_history(&h.value, crossing.public, untrusted) {
                dst.push(name, v);
            }
            continue;
        }
        if name.eq_ignore_ascii_case("Reason") {
            if let Some(r) = screened_reason(&h.value) {
                dst.push(name, r);
            }
            continue;
        }
        dst.push(name, h.value.clone());
    }
}

/// A Reason value (RFC 3326) with what may cross: the protocol and cause; a SIP cause gets the
/// border's own phrase, since the received `text=` may name internal nodes ("Call completed
/// elsewhere" style texts of other protocols are dropped with the rest). `None` when the value
/// has no protocol and cause.
pub fn screened_reason(value: &str) -> Option<String> {
    let mut parts = value.split(';');
    let protocol = parts.next()?.trim();
    if !protocol
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
    {
        return None;
    }
    let cause: u16 = parts.find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("cause")
            .then(|| v.trim().parse().ok())?
    })?;
    if protocol.eq_ignore_ascii_case("SIP") {
        return Some(format!(
            "SIP;cause={cause};text=\"{}\"",
            reason_phrase(map_status(cause))
        ));
    }
    Some(format!("{protocol};cause={cause}"))
}

/// Rewrites a From or To identity for the other leg: the tag is dropped (each leg has its own),
/// and toward a peer, a host that is not a public domain (an IP address or an internal host name)
/// is replaced by `public_domain` and URI parameters other than `user` are removed.
pub fn identity_for_leg(
    value: &str,
    toward_peer: bool,
    public_domains: &[String],
    public_domain: &str,
) -> String {
    let Some(mut na) = NameAddr::parse(value) else {
        return format!("<sip:anonymous@{public_domain}>");
    };
    na.params.remove("tag");
    if toward_peer {
        // Header parameters (`;x-node=scscf3...`) are the sender's; the leg adds its own tag.
        na.params = Default::default();
        if let Uri::Other(tel) = &mut na.uri {
            *tel = public_phone_context(tel, public_domains, public_domain);
        }
        if let Uri::Sip(u) = &mut na.uri {
            let host = u.host_bare();
            if !public_domains.iter().any(|d| d.eq_ignore_ascii_case(&host)) {
                u.host = public_domain.to_string();
                u.port = None;
            }
            u.password = None;
            u.params.retain(|(n, _)| n.eq_ignore_ascii_case("user"));
            u.headers = None;
        }
    }
    na.to_string()
}

/// A `tel:` URI's `phone-context` (RFC 3966 §5.1.5) that names a domain other than a public one
/// (a home network's inside) becomes `public_domain`; a global number or a numeric context is
/// kept, and so is any other URI.
fn public_phone_context(uri: &str, public_domains: &[String], public_domain: &str) -> String {
    if !uri.get(..4).is_some_and(|s| s.eq_ignore_ascii_case("tel:")) {
        return uri.to_string();
    }
    let mut parts = uri.split(';');
    let mut out = parts.next().unwrap_or_default().to_string();
    for p in parts {
        out.push(';');
        match p.split_once('=') {
            Some((k, v)) if k.eq_ignore_ascii_case("phone-context") => {
                let public =
                    v.starts_with('+') || public_domains.iter().any(|d| d.eq_ignore_ascii_case(v));
                out.push_str("phone-context=");
                out.push_str(if public { v } else { public_domain });
            }
            _ => out.push_str(p),
        }
    }
    out
}

/// Builds the P-Charging-Vector for a message leaving the border (RFC 7315 §4.6): the session's
/// icid-value is kept, everything that names an inside host (icid-generated-at, other
/// parameters) is dropped, and orig-ioi/term-ioi are set for the interconnect.
pub fn charging_vector(
    src: Option<&str>,
    from_trusted: bool,
    icid_fallback: &str,
    orig_ioi: &str,
    term_ioi: Option<&str>,
) -> String {
    let icid = src
        .filter(|_| from_trusted)
        .and_then(|v| {
            v.split(';').find_map(|p| {
                let (k, val) = p.split_once('=')?;
                k.trim()
                    .eq_ignore_ascii_case("icid-value")
                    .then(|| val.trim().to_string())
            })
        })
        .unwrap_or_else(|| icid_fallback.to_string());
    let mut out = format!("icid-value={icid};orig-ioi={orig_ioi}");
    if let Some(t) = term_ioi {
        out.push_str(";term-ioi=");
        out.push_str(t);
    }
    out
}

/// Reason phrases the border uses: the received phrase never crosses (it may name internal
/// elements).
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Trying",
        180 => "Ringing",
        181 => "Call Is Being Forwarded",
        182 => "Queued",
        183 => "Session Progress",
        199 => "Early Dialog Terminated",
        200 => "OK",
        202 => "Accepted",
        204 => "No Notification",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        410 => "Gone",
        413 => "Request Entity Too Large",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        420 => "Bad Extension",
        421 => "Extension Required",
        422 => "Session Interval Too Small",
        423 => "Interval Too Brief",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        484 => "Address Incomplete",
        485 => "Ambiguous",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        489 => "Bad Event",
        491 => "Request Pending",
        493 => "Undecipherable",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        505 => "Version Not Supported",
        513 => "Message Too Large",
        580 => "Precondition Failure",
        600 => "Busy Everywhere",
        603 => "Decline",
        604 => "Does Not Exist Anywhere",
        606 => "Not Acceptable",
        s if s < 200 => "Session Progress",
        s if s < 300 => "OK",
        s if s < 400 => "Redirection",
        s if s < 500 => "Request Failure",
        s if s < 600 => "Server Failure",
        _ => "Global Failure",
    }
}

/// Maps a final status received on one leg to the one sent on the other. Redirections and
/// authentication challenges name the far network's inside or its credentials realm, so they do
/// not cross as such.
pub fn map_status(status: u16) -> u16 {
    match status {
        300..=399 => 480,
        401 | 407 => 403,
        s => s,
    }
}

/// The public domain this border stands for toward its peers.
pub fn public_domain(cfg: &Config) -> &str {
    cfg.home_domains
        .first()
        .map(String::as_str)
        .unwrap_or("invalid")
}

//! What a sender's `Privacy` (RFC 3323, RFC 3325 `id`, RFC 7044 `history`) withholds from an
//! untrusted destination, and the history headers (History-Info RFC 7044, Diversion RFC 5806),
//! whose entries name the hops a call was retargeted through.
//!
//! A trusted destination gets what the sender sent: it is in the same trust domain and applies
//! the privacy itself when the request leaves it (RFC 3325 §9). Toward an untrusted one the
//! border is the privacy service (RFC 3323 §5): `id`, `header` and `user` remove the display
//! name and identity headers; `header` also removes the headers of RFC 3323 §5.1 and the
//! history headers; `history` removes History-Info. Toward any peer, history entries are
//! rewritten like From/To (an internal host becomes the public domain).

use super::hiding::identity_for_leg;
use crate::sip::{split_commas, Message, NameAddr, Uri};

/// The privacy a message asks for (`Privacy: id;header`), `none` and `critical` aside.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Privacy {
    pub id: bool,
    pub header: bool,
    pub user: bool,
    pub history: bool,
}

impl Privacy {
    pub fn of(msg: &Message) -> Privacy {
        let mut p = Privacy::default();
        for value in msg.headers.values("Privacy") {
            for token in value.split(';').map(str::trim) {
                match token.to_ascii_lowercase().as_str() {
                    "id" => p.id = true,
                    "header" => p.header = true,
                    "user" => p.user = true,
                    "history" => p.history = true,
                    _ => {}
                }
            }
        }
        p
    }

    /// Whether the sender's identity (display name, identity headers) is withheld.
    pub fn hides_identity(self) -> bool {
        self.id || self.header || self.user
    }

    /// Whether header `name` is withheld from an untrusted destination.
    pub fn withholds(self, name: &str) -> bool {
        let is = |list: &[&str]| list.iter().any(|n| n.eq_ignore_ascii_case(name));
        (self.hides_identity() && is(IDENTITY))
            || (self.header && (is(HEADER_PRIVACY) || is(HISTORY)))
            || (self.history && name.eq_ignore_ascii_case("History-Info"))
    }
}

/// Identity headers beside P-Asserted-Identity (which never reaches an untrusted party anyway):
/// the legacy Remote-Party-ID and RFC 8224 Identity (it signs the original From).
const IDENTITY: &[&str] = &["Remote-Party-ID", "Identity", "Identity-Info"];

/// RFC 3323 §5.1: what a privacy service removes for `header` privacy.
const HEADER_PRIVACY: &[&str] = &[
    "Subject",
    "Call-Info",
    "Organization",
    "User-Agent",
    "Reply-To",
    "In-Reply-To",
];

/// The history headers, screened entry by entry ([`screened_history`]).
pub const HISTORY: &[&str] = &["History-Info", "Diversion"];

/// Header parameters of a history entry that say how the call was retargeted and carry no host:
/// RFC 7044 (`index`, `rc`, `mp`, `np`) and RFC 5806 (`reason`, `counter`, `limit`, `privacy`,
/// `screen`).
const HISTORY_PARAMS: &[&str] = &[
    "index", "rc", "mp", "np", "reason", "counter", "limit", "privacy", "screen",
];

/// A name-addr without its display name.
pub fn without_display_name(value: &str) -> String {
    match NameAddr::parse(value) {
        Some(mut na) => {
            na.display = None;
            na.to_string()
        }
        None => value.to_string(),
    }
}

/// A History-Info or Diversion value for the other leg: toward a peer (`public` as in
/// `hiding::Crossing::public`) each entry's URI is rewritten like From/To and keeps only the
/// retargeting parameters; toward an untrusted destination an entry that asks for privacy of its
/// own (History-Info `?Privacy=` in its URI, Diversion `privacy=full|uri`) is left out, and
/// `privacy=name` loses the display name. `None` when no entry is left.
pub fn screened_history(
    value: &str,
    public: Option<(&[String], &str)>,
    untrusted: bool,
) -> Option<String> {
    let mut out = Vec::new();
    for entry in split_commas(value) {
        let Some(na) = NameAddr::parse(entry) else {
            continue;
        };
        let private = entry_privacy(&na);
        if untrusted && matches!(private.as_deref(), Some(p) if p != "none" && p != "name") {
            continue;
        }
        let mut v = match public {
            Some((domains, domain)) => {
                let Some(mut rewritten) =
                    NameAddr::parse(&identity_for_leg(entry, true, domains, domain))
                else {
                    continue;
                };
                rewritten.params.0 = na
                    .params
                    .0
                    .iter()
                    .filter(|(n, _)| HISTORY_PARAMS.iter().any(|k| k.eq_ignore_ascii_case(n)))
                    .cloned()
                    .collect();
                // The entry's own privacy request goes on with it (the URI headers were dropped).
                if let (Some(p), Uri::Sip(u)) = (&private, &mut rewritten.uri) {
                    if na.params.value("privacy").is_none() {
                        u.headers = Some(format!("Privacy={p}"));
                    }
                }
                rewritten.to_string()
            }
            None => entry.trim().to_string(),
        };
        if untrusted && private.as_deref() == Some("name") {
            v = without_display_name(&v);
        }
        out.push(v);
    }
    (!out.is_empty()).then(|| out.join(", "))
}

/// The privacy an entry asks for itself, lower-cased: Diversion's `privacy` parameter, or the
/// `Privacy` header embedded in a History-Info entry's URI (RFC 7044 §10.1.2).
fn entry_privacy(na: &NameAddr) -> Option<String> {
    if let Some(p) = na.params.value("privacy") {
        return Some(p.trim_matches('"').to_ascii_lowercase());
    }
    let Uri::Sip(u) = &na.uri else {
        return None;
    };
    u.headers.as_deref()?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        k.eq_ignore_ascii_case("Privacy")
            .then(|| v.to_ascii_lowercase())
    })
}

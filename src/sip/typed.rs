//! Typed views of the extension headers the B2BUA reads to map dialogs, reliable provisionals,
//! subscriptions, transfers and session timers across its legs: `RAck` and `RSeq` (RFC 3262),
//! `Event` and `Subscription-State` (RFC 6665), `Content-Type` (RFC 3261 §20.15), `Refer-To`
//! (RFC 3515) with its embedded `Replaces`, `Replaces` (RFC 3891) and `Session-Expires`
//! (RFC 4028).
//!
//! This module owns their grammar: the rest of Palisade gets a value through the typed
//! accessors on [`Headers`] (compact forms `c`, `o`, `r`, `x` are already expanded by the
//! parser) and never splits these headers' text itself. Each type has `parse(&str) ->
//! Option<Self>`, taking one header value, and a `Display` that prints wire form and parses back
//! to an equal value. Parsing follows the RFC 3261 grammar's tolerance: LWS around `;`, `=` and
//! `/`, parameter names and token values matched case-insensitively; anything outside the
//! grammar is `None`.

use std::fmt;

use super::fields::Headers;
use super::headers::{parse_params, skip_ws, take_token, NameAddr, Params};
use super::message::{is_token, Method};
use super::uri::{percent_decode, percent_encode_hvalue, Uri};

/// `1*DIGIT` fitting in a `u32`.
fn number(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `delta-seconds` (`1*DIGIT`); values past 2^32-1 are taken as 2^32-1 rather than refused.
fn delta_seconds(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.parse().unwrap_or(u32::MAX))
}

/// The LWS-separated words of a value.
fn words(s: &str) -> impl Iterator<Item = &str> {
    s.split([' ', '\t']).filter(|w| !w.is_empty())
}

/// Stores `value` in `slot`, refusing a second occurrence of the same parameter.
fn once<T>(slot: &mut Option<T>, value: Option<T>) -> Option<()> {
    if slot.is_some() {
        return None;
    }
    *slot = Some(value?);
    Some(())
}

/// A `token` parameter value, lower-cased (tokens compare case-insensitively).
fn token_value(v: Option<&str>) -> Option<String> {
    v.filter(|v| is_token(v)).map(str::to_ascii_lowercase)
}

/// The value without its surrounding quotes and quoted-pair escapes, when it is quoted.
fn unquote(v: &str) -> String {
    let Some(inner) = v.strip_prefix('"').and_then(|r| r.strip_suffix('"')) else {
        return v.to_string();
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            c => out.push(c),
        }
    }
    out
}

/// `RAck: 776656 1 INVITE` (RFC 3262 §7.2): names the reliable provisional a PRACK acknowledges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RAck {
    /// The RSeq of the provisional response.
    pub rseq: u32,
    /// The CSeq number of the request it answered (< 2^31, as any CSeq).
    pub cseq: u32,
    pub method: Method,
}

impl RAck {
    pub fn parse(value: &str) -> Option<RAck> {
        let mut w = words(value);
        let (Some(rseq), Some(cseq), Some(method), None) = (w.next(), w.next(), w.next(), w.next())
        else {
            return None;
        };
        Some(RAck {
            rseq: number(rseq)?,
            cseq: number(cseq).filter(|&c| c < 1 << 31)?,
            method: Method::parse(method)?,
        })
    }
}

impl fmt::Display for RAck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.rseq, self.cseq, self.method)
    }
}

/// `RSeq: 988789` (RFC 3262 §7.1): the sequence number of a reliable provisional response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RSeq(pub u32);

impl RSeq {
    pub fn parse(value: &str) -> Option<RSeq> {
        number(value.trim_matches([' ', '\t'])).map(RSeq)
    }
}

impl fmt::Display for RSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The `substate-value` of a Subscription-State (RFC 6665 §8.2.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubState {
    Active,
    Pending,
    Terminated,
    /// An `extension-substate` token, lower-cased.
    Other(String),
}

impl SubState {
    pub fn as_str(&self) -> &str {
        match self {
            SubState::Active => "active",
            SubState::Pending => "pending",
            SubState::Terminated => "terminated",
            SubState::Other(s) => s,
        }
    }
}

/// `Subscription-State: terminated;reason=timeout;retry-after=60` (RFC 6665 §8.2.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionState {
    pub state: SubState,
    /// `expires` in seconds.
    pub expires: Option<u32>,
    /// `reason` (`deactivated`, `probation`, `rejected`, `timeout`, `giveup`, `noresource`,
    /// `invariant` or an extension token), lower-cased.
    pub reason: Option<String>,
    /// `retry-after` in seconds.
    pub retry_after: Option<u32>,
    /// Every other parameter, in order.
    pub params: Params,
}

impl SubscriptionState {
    pub fn parse(value: &str) -> Option<SubscriptionState> {
        let (state, rest) = take_token(skip_ws(value));
        if state.is_empty() {
            return None;
        }
        let state = match state.to_ascii_lowercase().as_str() {
            "active" => SubState::Active,
            "pending" => SubState::Pending,
            "terminated" => SubState::Terminated,
            other => SubState::Other(other.to_string()),
        };
        let mut out = SubscriptionState {
            state,
            expires: None,
            reason: None,
            retry_after: None,
            params: Params::default(),
        };
        for (name, value) in parse_params(rest)?.0 {
            let v = value.as_deref();
            match name.to_ascii_lowercase().as_str() {
                "expires" => once(&mut out.expires, v.and_then(delta_seconds))?,
                "retry-after" => once(&mut out.retry_after, v.and_then(delta_seconds))?,
                "reason" => once(&mut out.reason, token_value(v))?,
                _ => out.params.0.push((name, value)),
            }
        }
        Some(out)
    }

    pub fn is_terminated(&self) -> bool {
        self.state == SubState::Terminated
    }
}

impl fmt::Display for SubscriptionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.state.as_str())?;
        if let Some(r) = &self.reason {
            write!(f, ";reason={r}")?;
        }
        if let Some(e) = self.expires {
            write!(f, ";expires={e}")?;
        }
        if let Some(r) = self.retry_after {
            write!(f, ";retry-after={r}")?;
        }
        self.params.fmt(f)
    }
}

/// `Event: presence.winfo;id=7` (RFC 6665 §8.2.1): the event package, its templates and the
/// subscription `id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The event package (`presence`, `refer`, `dialog`, ...), as written.
    pub package: String,
    /// Event templates after the package (`winfo` in `presence.winfo`), as written.
    pub templates: Vec<String>,
    /// The `id` parameter.
    pub id: Option<String>,
    /// Every other parameter, in order.
    pub params: Params,
}

impl Event {
    pub fn parse(value: &str) -> Option<Event> {
        let s = skip_ws(value);
        let end = s.find([';', ' ', '\t']).unwrap_or(s.len());
        let mut parts = s.get(..end)?.split('.');
        let token_nodot = |t: &str| is_token(t) && !t.contains('.');
        let package = parts.next().filter(|p| token_nodot(p))?.to_string();
        let templates = parts
            .map(|t| token_nodot(t).then(|| t.to_string()))
            .collect::<Option<Vec<_>>>()?;
        let mut id = None;
        let mut params = Params::default();
        for (name, value) in parse_params(s.get(end..)?)?.0 {
            if name.eq_ignore_ascii_case("id") {
                once(&mut id, value.filter(|v| is_token(v)))?;
            } else {
                params.0.push((name, value));
            }
        }
        Some(Event {
            package,
            templates,
            id,
            params,
        })
    }

    /// Whether two Event values name the same subscription: event type and `id` compared byte
    /// by byte, other parameters ignored (RFC 6665 §8.2.1). An `id` never matches its absence.
    pub fn matches(&self, other: &Event) -> bool {
        self.package == other.package && self.templates == other.templates && self.id == other.id
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.package)?;
        for t in &self.templates {
            write!(f, ".{t}")?;
        }
        if let Some(id) = &self.id {
            write!(f, ";id={id}")?;
        }
        self.params.fmt(f)
    }
}

/// `Content-Type: application/sdp` (RFC 3261 §20.15, RFC 2045 §5.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentType {
    /// Media type, lower-cased (`application`).
    pub mtype: String,
    /// Subtype, lower-cased (`sdp`).
    pub subtype: String,
    /// `m-parameter`s in order, values as written (quotes kept).
    pub params: Params,
}

impl ContentType {
    pub fn parse(value: &str) -> Option<ContentType> {
        let (mtype, rest) = take_token(skip_ws(value));
        let rest = skip_ws(skip_ws(rest).strip_prefix('/')?);
        let (subtype, rest) = take_token(rest);
        if mtype.is_empty() || subtype.is_empty() {
            return None;
        }
        let params = parse_params(rest)?;
        // `m-parameter = m-attribute EQUAL m-value`: no flags.
        if params.0.iter().any(|(_, v)| v.is_none()) {
            return None;
        }
        Some(ContentType {
            mtype: mtype.to_ascii_lowercase(),
            subtype: subtype.to_ascii_lowercase(),
            params,
        })
    }

    /// Whether this is `mtype/subtype`, compared case-insensitively.
    pub fn is(&self, mtype: &str, subtype: &str) -> bool {
        self.mtype.eq_ignore_ascii_case(mtype) && self.subtype.eq_ignore_ascii_case(subtype)
    }

    /// `application/sdp`, whatever its parameters.
    pub fn is_sdp(&self) -> bool {
        self.is("application", "sdp")
    }

    /// Whether a Content-Type value names SDP, also one this parser refuses (say a parameter
    /// without a value) as long as it starts with `application/sdp`: the border must anchor
    /// such a body, never pass it on unrewritten.
    pub fn names_sdp(value: &str) -> bool {
        match ContentType::parse(value) {
            Some(ct) => ct.is_sdp(),
            None => {
                let v = value.trim().as_bytes();
                v.len() >= 15 && v[..15].eq_ignore_ascii_case(b"application/sdp")
            }
        }
    }

    /// A parameter's value with quotes and escapes removed (`charset`, `boundary`, ...).
    pub fn param(&self, name: &str) -> Option<String> {
        self.params.value(name).map(unquote)
    }
}

impl fmt::Display for ContentType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.mtype, self.subtype)?;
        self.params.fmt(f)
    }
}

/// `Refer-To` (RFC 3515 §2.1): where the referee is sent, as a name-addr or addr-spec. A
/// `Replaces` header embedded in a sip/sips target URI (`<sip:b@h?Replaces=id%3Bto-tag%3D1...>`,
/// RFC 3891 §7) is percent-decoded and parsed into [`ReferTo::replaces`], and taken out of the
/// URI's header part so there is one place that says which dialog is replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferTo {
    /// The target with its header parameters; its URI keeps any other embedded headers.
    pub target: NameAddr,
    /// The embedded `Replaces`. Printed back into the URI only when the target is sip/sips.
    pub replaces: Option<Replaces>,
}

impl ReferTo {
    /// `None` also when the embedded Replaces is malformed or given twice.
    pub fn parse(value: &str) -> Option<ReferTo> {
        let mut target = NameAddr::parse(value)?;
        let mut replaces = None;
        if let Uri::Sip(u) = &mut target.uri {
            if let Some(headers) = u.headers.take() {
                let mut kept = Vec::new();
                for pair in headers.split('&') {
                    let (name, v) = pair.split_once('=').unwrap_or((pair, ""));
                    if percent_decode(name)?.eq_ignore_ascii_case("Replaces") {
                        once(&mut replaces, Replaces::parse(&percent_decode(v)?))?;
                    } else {
                        kept.push(pair);
                    }
                }
                u.headers = (!kept.is_empty()).then(|| kept.join("&"));
            }
        }
        Some(ReferTo { target, replaces })
    }

    pub fn uri(&self) -> &Uri {
        &self.target.uri
    }
}

impl fmt::Display for ReferTo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut target = self.target.clone();
        if let (Some(r), Uri::Sip(u)) = (&self.replaces, &mut target.uri) {
            let embedded = format!("Replaces={}", percent_encode_hvalue(&r.to_string()));
            u.headers = Some(match u.headers.take() {
                Some(h) if !h.is_empty() => format!("{h}&{embedded}"),
                _ => embedded,
            });
        }
        target.fmt(f)
    }
}

/// `Replaces: 98732@sip.example.com;from-tag=r33th4x0r;to-tag=ff87ff` (RFC 3891 §6.1): the
/// dialog an INVITE replaces. Both tags are required (RFC 3891 §3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replaces {
    /// As written; the same characters a Call-ID header accepts.
    pub call_id: String,
    pub to_tag: String,
    pub from_tag: String,
    /// `early-only`: replace only a dialog that is still early.
    pub early_only: bool,
    /// Every other parameter, in order.
    pub params: Params,
}

impl Replaces {
    pub fn parse(value: &str) -> Option<Replaces> {
        let s = skip_ws(value);
        let end = s.find([';', ' ', '\t']).unwrap_or(s.len());
        let call_id = s.get(..end)?;
        if call_id.is_empty() || call_id.chars().any(|c| c.is_control()) {
            return None;
        }
        let (mut to_tag, mut from_tag, mut early) = (None, None, None);
        let mut params = Params::default();
        for (name, value) in parse_params(s.get(end..)?)?.0 {
            let tag = value.as_deref().filter(|v| is_token(v)).map(str::to_string);
            match name.to_ascii_lowercase().as_str() {
                "to-tag" => once(&mut to_tag, tag)?,
                "from-tag" => once(&mut from_tag, tag)?,
                "early-only" => once(&mut early, value.is_none().then_some(()))?,
                _ => params.0.push((name, value)),
            }
        }
        Some(Replaces {
            call_id: call_id.to_string(),
            to_tag: to_tag?,
            from_tag: from_tag?,
            early_only: early.is_some(),
            params,
        })
    }
}

impl fmt::Display for Replaces {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{};to-tag={};from-tag={}",
            self.call_id, self.to_tag, self.from_tag
        )?;
        if self.early_only {
            f.write_str(";early-only")?;
        }
        self.params.fmt(f)
    }
}

/// Which side refreshes the session (RFC 4028 §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresher {
    Uac,
    Uas,
}

impl Refresher {
    pub fn as_str(self) -> &'static str {
        match self {
            Refresher::Uac => "uac",
            Refresher::Uas => "uas",
        }
    }
}

/// `Session-Expires: 1800;refresher=uac` (RFC 4028 §4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionExpires {
    /// The session interval in seconds.
    pub delta: u32,
    pub refresher: Option<Refresher>,
    /// Every other parameter, in order.
    pub params: Params,
}

impl SessionExpires {
    pub fn parse(value: &str) -> Option<SessionExpires> {
        let s = skip_ws(value);
        let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let delta = delta_seconds(s.get(..end)?)?;
        let mut refresher = None;
        let mut params = Params::default();
        for (name, value) in parse_params(s.get(end..)?)?.0 {
            if name.eq_ignore_ascii_case("refresher") {
                let r = match value.as_deref().map(str::to_ascii_lowercase).as_deref() {
                    Some("uac") => Some(Refresher::Uac),
                    Some("uas") => Some(Refresher::Uas),
                    _ => None,
                };
                once(&mut refresher, r)?;
            } else {
                params.0.push((name, value));
            }
        }
        Some(SessionExpires {
            delta,
            refresher,
            params,
        })
    }
}

impl fmt::Display for SessionExpires {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.delta)?;
        if let Some(r) = self.refresher {
            write!(f, ";refresher={}", r.as_str())?;
        }
        self.params.fmt(f)
    }
}

/// Typed accessors. Each reads a header that occurs at most once in a message and is `None`
/// when it is absent, malformed, or present on more than one line (RFC 3261 §7.3.1: only
/// comma-list headers may repeat). Compact forms need no care: the parser and
/// [`Headers::push`] store canonical names, and lookups accept either.
impl Headers {
    fn single(&self, name: &str) -> Option<&str> {
        if self.count(name) == 1 {
            self.get(name)
        } else {
            None
        }
    }

    pub fn rack(&self) -> Option<RAck> {
        self.single("RAck").and_then(RAck::parse)
    }

    pub fn rseq(&self) -> Option<RSeq> {
        self.single("RSeq").and_then(RSeq::parse)
    }

    pub fn subscription_state(&self) -> Option<SubscriptionState> {
        self.single("Subscription-State")
            .and_then(SubscriptionState::parse)
    }

    /// `Event` (compact `o`).
    pub fn event(&self) -> Option<Event> {
        self.single("Event").and_then(Event::parse)
    }

    /// `Content-Type` (compact `c`).
    pub fn content_type(&self) -> Option<ContentType> {
        self.single("Content-Type").and_then(ContentType::parse)
    }

    /// `Refer-To` (compact `r`).
    pub fn refer_to(&self) -> Option<ReferTo> {
        self.single("Refer-To").and_then(ReferTo::parse)
    }

    pub fn replaces(&self) -> Option<Replaces> {
        self.single("Replaces").and_then(Replaces::parse)
    }

    /// `Join` (RFC 3911 §7.1): the same grammar as `Replaces` without `early-only` (a stray
    /// `early-only` is kept as [`Replaces::early_only`] and printed back as it came).
    pub fn join(&self) -> Option<Replaces> {
        self.single("Join").and_then(Replaces::parse)
    }

    /// `Session-Expires` (compact `x`).
    pub fn session_expires(&self) -> Option<SessionExpires> {
        self.single("Session-Expires")
            .and_then(SessionExpires::parse)
    }

    /// The option tags of `Require`, `Proxy-Require`, `Supported` (compact `k`) or
    /// `Unsupported`, over all its lines, trimmed, empty items left out (RFC 3261 §20.32).
    pub fn option_tags(&self, name: &str) -> Vec<&str> {
        self.values(name)
            .into_iter()
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .collect()
    }

    /// Whether the option-tag header `name` lists `tag` (compared case-insensitively).
    pub fn has_option_tag(&self, name: &str, tag: &str) -> bool {
        self.option_tags(name)
            .iter()
            .any(|t| t.eq_ignore_ascii_case(tag))
    }
}

#[cfg(test)]
mod tests;

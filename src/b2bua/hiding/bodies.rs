//! Bodies across the border: which types may cross toward a destination, and what of a
//! sipfrag, multipart, conference-info or dialog-info body is rewritten on the way (the SDP of
//! a body is anchored afterwards, in `build`).

use super::{identity_for_leg, map_status, reason_phrase};
use crate::sip::message::is_token;
use crate::sip::multipart::{self, Part};
use crate::sip::{ContentType, Headers, Message};

/// Copies the body and its Content-Type when the destination's policy allows the type
/// (`allowed`, `type/subtype`): a body of any other type, or without a Content-Type, stays on its
/// side. `message/sipfrag` (RFC 3420, the progress of a REFER) crosses as its status line only,
/// with the border's phrase: its header lines are the far leg's (Via, Call-ID, tags).
///
/// Toward a peer (`public` as in [`Crossing::public`]) the SIP URIs of a conference-info
/// (RFC 4575) or dialog-info (RFC 4235) document are rewritten like From/To: a host that is not
/// one of `public`'s domains becomes the public domain, URI parameters go.
///
/// A `multipart/mixed` body (SIP-I: SDP + ISUP) is screened part by part with the same rules
/// (see [`screen_multipart`]); its SDP part is anchored afterwards like a plain SDP body.
pub fn copy_body(
    src: &Message,
    dst_headers: &mut Headers,
    allowed: &[String],
    public: Option<(&[String], &str)>,
) -> Vec<u8> {
    if src.body.is_empty() {
        return Vec::new();
    }
    let Some(ct) = src.headers.get("Content-Type") else {
        return Vec::new();
    };
    match screen_body(ct, &src.body, BodyRules { allowed, public }) {
        Some((ct, body)) => {
            dst_headers.push("Content-Type", ct);
            body
        }
        None => Vec::new(),
    }
}

/// The destination's body list and, toward a peer, the public domains (see [`copy_body`]).
#[derive(Clone, Copy)]
struct BodyRules<'a> {
    allowed: &'a [String],
    public: Option<(&'a [String], &'a str)>,
}

/// What of a body of type `ct` may cross (its Content-Type and content), per [`copy_body`].
fn screen_body(ct: &str, body: &[u8], rules: BodyRules<'_>) -> Option<(String, Vec<u8>)> {
    let BodyRules { allowed, public } = rules;
    let media_type = ct.split(';').next().unwrap_or("").trim();
    if media_type.eq_ignore_ascii_case("multipart/mixed") {
        return screen_multipart(ct, body, rules);
    }
    let listed = allowed.iter().any(|a| a.eq_ignore_ascii_case(media_type));
    // Other multipart kinds (alternative, related) are not looked into: nothing crosses unseen.
    let multipart = media_type
        .get(..10)
        .is_some_and(|p| p.eq_ignore_ascii_case("multipart/"));
    if !listed || multipart {
        return None;
    }
    if media_type.eq_ignore_ascii_case("message/sipfrag") {
        let frag = sipfrag_status(body)?;
        return Some(("message/sipfrag;version=2.0".to_string(), frag.into_bytes()));
    }
    let xml_info = [
        "application/conference-info+xml",
        "application/dialog-info+xml",
    ]
    .iter()
    .any(|t| t.eq_ignore_ascii_case(media_type));
    if let (true, Some((domains, domain))) = (xml_info, public) {
        let text = std::str::from_utf8(body).ok()?;
        let mut text = public_uris(text, domains, domain);
        if media_type.eq_ignore_ascii_case("application/dialog-info+xml") {
            // RFC 4235 §4.1.1: a dialog's `call-id` and tags are optional, and they are the far
            // leg's (or another dialog's) identifiers: they stay home.
            text = without_attributes(&text, &["call-id", "local-tag", "remote-tag"]);
        }
        return Some((ct.to_string(), text.into_bytes()));
    }
    Some((ct.to_string(), body.to_vec()))
}

/// A `multipart/mixed` body screened part by part: each part crosses under the rules of a whole
/// body of its type (so `application/isup` only toward a partner whose list has it), with its
/// Content-Type and its Content-Disposition's type and `handling` (RFC 3204: whether the far end
/// may ignore it); other part headers (Content-ID names a host) stay. Only the first SDP part is
/// kept (one session description per message), nested multiparts are dropped. The parts that
/// are left get a fresh boundary; a lone SDP part crosses as a plain SDP body. A body that does
/// not parse does not cross.
fn screen_multipart(ct: &str, body: &[u8], rules: BodyRules<'_>) -> Option<(String, Vec<u8>)> {
    let boundary = ContentType::parse(ct)?.param("boundary")?;
    let mut sdp_seen = false;
    let mut kept = Vec::new();
    for part in multipart::parse(body, &boundary)? {
        let Some(part_ct) = part.header("Content-Type") else {
            continue;
        };
        let typed = ContentType::parse(part_ct);
        if typed.as_ref().is_some_and(|c| c.mtype == "multipart") {
            continue;
        }
        if typed.as_ref().is_some_and(ContentType::is_sdp) {
            if sdp_seen {
                continue;
            }
            sdp_seen = true;
        }
        let Some((part_ct, content)) = screen_body(part_ct, &part.body, rules) else {
            continue;
        };
        let mut headers = vec![("Content-Type".to_string(), part_ct)];
        if let Some(d) = part
            .header("Content-Disposition")
            .and_then(screened_disposition)
        {
            headers.push(("Content-Disposition".to_string(), d));
        }
        kept.push(Part {
            headers,
            body: content,
        });
    }
    match kept.as_slice() {
        [] => None,
        [only] if only.content_type().is_some_and(|c| c.is_sdp()) => {
            let ct = only.header("Content-Type").unwrap_or("application/sdp");
            Some((ct.to_string(), only.body.clone()))
        }
        parts => {
            let b = multipart::fresh_boundary(parts);
            Some((
                format!("multipart/mixed;boundary={b}"),
                multipart::write(parts, &b),
            ))
        }
    }
}

/// A Content-Disposition (RFC 3261 §20.11) cut to its type and `handling` parameter.
fn screened_disposition(value: &str) -> Option<String> {
    let mut parts = value.split(';').map(str::trim);
    let kind = parts.next().filter(|k| !k.is_empty() && is_token(k))?;
    let mut out = kind.to_string();
    for p in parts {
        let Some((k, v)) = p.split_once('=') else {
            continue;
        };
        let v = v.trim();
        if k.trim().eq_ignore_ascii_case("handling") && is_token(v) {
            out.push_str(";handling=");
            out.push_str(v);
        }
    }
    Some(out)
}

/// Every `sip:`/`sips:` URI in an XML document, rewritten like a From/To URI toward a peer. A URI
/// ends at a quote, `<`, `>` or whitespace (XML attribute and element text).
fn public_uris(text: &str, domains: &[String], domain: &str) -> String {
    // Lower-cased once (ASCII only, so byte offsets match the original).
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    while let Some(i) = find_sip_scheme(&lower[at..]).map(|i| at + i) {
        out.push_str(&text[at..i]);
        let tail = &text[i..];
        let end = tail
            .find(|c: char| c == '"' || c == '\'' || c == '<' || c == '>' || c.is_whitespace())
            .unwrap_or(tail.len());
        let uri = &tail[..end];
        let rewritten = identity_for_leg(&format!("<{uri}>"), true, domains, domain);
        out.push_str(
            rewritten
                .strip_prefix('<')
                .and_then(|r| r.strip_suffix('>'))
                .unwrap_or(&rewritten),
        );
        // `end` > 0: the tail starts with the scheme, which holds no terminator.
        at = i + end;
    }
    out.push_str(&text[at..]);
    out
}

/// An XML text without the attributes named (` name="value"` or `name='value'`, the whitespace
/// before included). Names compare exactly, as XML's do.
fn without_attributes(text: &str, names: &[&str]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    'scan: while !rest.is_empty() {
        for (i, c) in rest.char_indices() {
            if !c.is_whitespace() {
                continue;
            }
            let after = &rest[i + c.len_utf8()..];
            let Some(name) = names
                .iter()
                .find(|n| after.starts_with(**n) && after[n.len()..].trim_start().starts_with('='))
            else {
                continue;
            };
            let value = after[name.len()..].trim_start()[1..].trim_start();
            let Some(quote) = value.chars().next().filter(|q| *q == '"' || *q == '\'') else {
                continue;
            };
            let Some(end) = value[1..].find(quote) else {
                continue;
            };
            out.push_str(&rest[..i]);
            // Past the closing quote: `value` is a suffix of `rest`.
            rest = &value[1 + end + 1..];
            continue 'scan;
        }
        out.push_str(rest);
        break;
    }
    out
}

/// The first `sip:` or `sips:` in an already lower-cased text.
fn find_sip_scheme(lower: &str) -> Option<usize> {
    let at = lower.find("sip:");
    let at_s = lower.find("sips:");
    match (at, at_s) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The status line of a sipfrag body, rebuilt (`SIP/2.0 <code> <the border's phrase>`); `None`
/// when the fragment does not start with one.
fn sipfrag_status(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let first = text.lines().next()?.trim();
    let rest = first.strip_prefix("SIP/2.0 ")?;
    let code: u16 = rest.get(..3)?.parse().ok()?;
    if !(100..700).contains(&code) {
        return None;
    }
    Some(format!(
        "SIP/2.0 {code} {}\r\n",
        reason_phrase(map_status(code))
    ))
}

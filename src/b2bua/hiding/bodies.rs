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
pub fn copy_body(src: &Message, dst_headers: &mut Headers, rules: BodyRules<'_>) -> Vec<u8> {
    if src.body.is_empty() {
        return Vec::new();
    }
    let Some(ct) = src.headers.get("Content-Type") else {
        return Vec::new();
    };
    match screen_body(ct, &src.body, rules) {
        Some((ct, body)) => {
            dst_headers.push("Content-Type", ct);
            body
        }
        None => Vec::new(),
    }
}

/// What the destination may get of a body (see [`copy_body`]).
#[derive(Clone, Copy)]
pub struct BodyRules<'a> {
    /// The destination's `headers.bodies`.
    pub allowed: &'a [String],
    /// Toward a peer: the public domains and the one that replaces other hosts.
    pub public: Option<(&'a [String], &'a str)>,
    /// A dialog as the sender names it in a dialog-info document → as the destination knows
    /// it; `None` when no dialog between them crosses this border ([`DialogIds`]).
    pub dialogs: &'a dyn Fn(&DialogIds) -> Option<DialogIds>,
}

/// A dialog as a dialog-info document names it (RFC 4235 §4.1.1): from the notifier's side,
/// `local-tag` is the notifier's tag and `remote-tag` its peer's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialogIds {
    pub call_id: String,
    pub local_tag: String,
    pub remote_tag: String,
}

/// What of a body of type `ct` may cross (its Content-Type and content), per [`copy_body`].
fn screen_body(ct: &str, body: &[u8], rules: BodyRules<'_>) -> Option<(String, Vec<u8>)> {
    let BodyRules {
        allowed, public, ..
    } = rules;
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
    if xml_info {
        let mut text = std::str::from_utf8(body).ok()?.to_string();
        if media_type.eq_ignore_ascii_case("application/dialog-info+xml") {
            // RFC 4235 §4.1.1: a dialog's `call-id` and tags are the sender's leg's: they are
            // translated to the destination's leg of the same call, or stay home.
            text = translated_dialogs(&text, rules.dialogs);
        }
        if let Some((domains, domain)) = public {
            text = public_uris(&text, domains, domain);
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

/// The dialog identifiers that `call-id`, `local-tag` and `remote-tag` attributes name (on a
/// `<dialog>`, and on its `<replaces>` of RFC 4235 §4.1.6), each start tag's three rewritten as
/// `dialogs` maps them, or removed when it maps them to nothing (or some are missing). A
/// `<dialog>`'s `id`, which notifiers often build from the same values, has them replaced too
/// (by `-` when removed), so it stays the same across NOTIFYs and names nothing.
fn translated_dialogs(text: &str, dialogs: &dyn Fn(&DialogIds) -> Option<DialogIds>) -> String {
    const IDS: [&str; 3] = ["call-id", "local-tag", "remote-tag"];
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(lt) = rest.find('<') {
        out.push_str(&rest[..lt]);
        rest = &rest[lt..];
        let Some((tag, len)) = StartTag::parse(rest) else {
            out.push('<');
            rest = &rest[1..];
            continue;
        };
        rest = &rest[len..];
        let value = |name: &str| tag.attrs.iter().find(|a| a.0 == name).map(|a| a.2.as_str());
        if !IDS.iter().any(|n| value(n).is_some()) {
            out.push_str(&tag.original);
            continue;
        }
        let named = match (value(IDS[0]), value(IDS[1]), value(IDS[2])) {
            (Some(c), Some(l), Some(r)) => Some(DialogIds {
                call_id: xml_unescape(c),
                local_tag: xml_unescape(l),
                remote_tag: xml_unescape(r),
            }),
            _ => None,
        };
        let mapped = named.as_ref().and_then(dialogs);
        let before: Vec<String> = IDS
            .iter()
            .map(|n| value(n).map(xml_unescape).unwrap_or_default())
            .collect();
        let after: Vec<&str> = match &mapped {
            Some(d) => vec![&d.call_id, &d.local_tag, &d.remote_tag],
            None => Vec::new(),
        };
        out.push('<');
        out.push_str(&tag.name);
        for (name, quote, v) in &tag.attrs {
            let v = match IDS.iter().position(|n| n == name) {
                Some(k) => match &mapped {
                    Some(_) => after[k].to_string(),
                    None => continue,
                },
                None if name == "id" && tag.name == "dialog" => {
                    let mut id = xml_unescape(v);
                    for (k, old) in before.iter().enumerate().filter(|(_, o)| !o.is_empty()) {
                        id = id.replace(old.as_str(), after.get(k).copied().unwrap_or("-"));
                    }
                    id
                }
                None => {
                    out.push_str(&format!(" {name}={quote}{v}{quote}"));
                    continue;
                }
            };
            out.push_str(&format!(" {name}={quote}{}{quote}", xml_escape(&v)));
        }
        out.push_str(&tag.end);
    }
    out.push_str(rest);
    out
}

/// An XML start tag as [`translated_dialogs`] reads it.
struct StartTag {
    name: String,
    /// (name, quote character, value as written).
    attrs: Vec<(String, char, String)>,
    /// `>` or `/>`.
    end: String,
    original: String,
}

impl StartTag {
    /// The start tag at the beginning of `text` and its length; `None` for anything else (an end
    /// tag, a comment, a declaration, a malformed tag).
    fn parse(text: &str) -> Option<(StartTag, usize)> {
        let body = text.strip_prefix('<')?;
        let name_len = body
            .find(|c: char| c.is_whitespace() || c == '>' || c == '/')
            .unwrap_or(body.len());
        let name = &body[..name_len];
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_alphanumeric() || "-_.:".contains(c))
        {
            return None;
        }
        let mut at = 1 + name_len;
        let mut attrs = Vec::new();
        loop {
            let tail = &text[at..];
            let trimmed = tail.trim_start();
            at += tail.len() - trimmed.len();
            for end in ["/>", ">"] {
                if trimmed.starts_with(end) {
                    let len = at + end.len();
                    let tag = StartTag {
                        name: name.to_string(),
                        attrs,
                        end: end.to_string(),
                        original: text[..len].to_string(),
                    };
                    return Some((tag, len));
                }
            }
            let (attr, after) = trimmed.split_once('=')?;
            let attr = attr.trim_end();
            if attr.is_empty() || attr.contains(|c: char| c.is_whitespace() || c == '>') {
                return None;
            }
            let after_trim = after.trim_start();
            let quote = after_trim
                .chars()
                .next()
                .filter(|q| *q == '"' || *q == '\'')?;
            let close = after_trim[1..].find(quote)?;
            attrs.push((
                attr.to_string(),
                quote,
                after_trim[1..1 + close].to_string(),
            ));
            at = text.len() - after_trim.len() + 1 + close + 1;
        }
    }
}

fn xml_unescape(v: &str) -> String {
    v.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

fn xml_escape(v: &str) -> String {
    v.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dialog_ids_are_translated_removed_or_left_and_odd_xml_survives() {
        let map = |d: &DialogIds| {
            (d.call_id == "c1").then(|| DialogIds {
                call_id: "C<1>".into(),
                local_tag: "L".into(),
                remote_tag: "R".into(),
            })
        };
        let text = "<d:x a='>'/><!-- <dialog call-id='c9'> --><dialog id=\"c1x\" call-id=\"c1\" local-tag=\"l\" remote-tag=\"r\">\
            <dialog id='c2' call-id='c2' local-tag='l' remote-tag='r'/><replaces call-id='c1'/>";
        let out = translated_dialogs(text, &map);
        // Even in a comment, a dialog's identifiers do not cross untranslated.
        assert!(out.starts_with("<d:x a='>'/><!-- <dialog> -->"), "{out}");
        assert!(
            out.contains(
                "<dialog id=\"C&lt;1>x\" call-id=\"C&lt;1>\" local-tag=\"L\" remote-tag=\"R\">"
            ),
            "{out}"
        );
        assert!(out.contains("<dialog id='-'/>"), "{out}");
        assert!(
            out.contains("<replaces/>"),
            "a partial reference names nothing: {out}"
        );
        for odd in [
            "<",
            "<dialog call-id='",
            "<dialog call-id=x>",
            "a<b",
            "<dialog\u{e9} call-id='c1'>",
        ] {
            let _ = translated_dialogs(odd, &map);
        }
    }
}

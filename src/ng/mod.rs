//! rtpengine's ng control protocol, the subset a SIP proxy uses to anchor a call's media:
//! `ping`, `offer`, `answer`, `delete`. Each request is one UDP datagram, `cookie SP
//! bencode-dictionary`, and the reply is the same cookie, a space and a dictionary with
//! `result` (`pong`, `ok` or `error` with an `error-reason`).
//!
//! Sans-IO: [`Server::handle`] is given a datagram and the B2BUA's [`Anchoring`] (port pools,
//! flow ids and the TrGW command queue) and returns the reply; the media commands it queued
//! come out of [`crate::b2bua::Border::poll_media`] like the B2BUA's own, so an ng call and a
//! SIP call get their relay ports from the same pools and their flows from the same relay. The
//! SDP is anchored by the same code as a SIP call's ([`Anchoring::anchor`]: `o=`, `c=`, `m=`
//! and `a=rtcp` rewritten to the relay address of the realm the SDP is sent into), so
//! `replace` `origin` and `session-connection` are always in effect; `ICE=remove` also strips
//! every ICE attribute. The socket is `service::ng`'s.
//!
//! `direction` names the realms of the offerer's and the answerer's side (`[ng] directions`
//! maps other names, such as rtpengine interface names, onto realms). What is not supported
//! gets an error reply naming it rather than being half done; unknown `flags` are ignored and
//! named in the reply's `warning`.

pub mod bencode;
mod calls;

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;

use crate::b2bua::media::{Anchoring, LegRealm};
use crate::config::{Config, NgSettings, RealmKind};
use crate::media::FlowId;
use bencode::Value;
use calls::Calls;

/// A request's fields that the subset reads (byte strings borrowed from the datagram).
#[derive(Debug, Default)]
struct Request<'a> {
    command: &'a str,
    call_id: Option<&'a str>,
    from_tag: Option<&'a str>,
    to_tag: Option<&'a str>,
    sdp: Option<&'a [u8]>,
    direction: Vec<&'a str>,
    ice_remove: bool,
    ignored_flags: Vec<&'a str>,
}

/// The ng side of one border: its settings resolved against the realms, the calls it set up
/// and the replies it remembers.
pub struct Server {
    settings: NgSettings,
    /// (name, media address) of every realm, by index.
    realms: Vec<(String, IpAddr)>,
    default_legs: Option<[usize; 2]>,
    calls: Calls,
    cache: ReplyCache,
}

impl Server {
    pub fn new(cfg: &Config) -> Server {
        let realms: Vec<(String, IpAddr)> = cfg
            .realms
            .iter()
            .map(|r| (r.name.clone(), r.media_address))
            .collect();
        let index = |n: &str| realms.iter().position(|(r, _)| r == n);
        let default_legs = match &cfg.ng.default_direction {
            Some([a, b]) => index(a).zip(index(b)).map(|(a, b)| [a, b]),
            None => {
                let home = cfg.realms.iter().position(|r| r.kind == RealmKind::Home);
                let peer = cfg.realms.iter().position(|r| r.kind == RealmKind::Peer);
                home.zip(peer).map(|(a, b)| [a, b])
            }
        };
        Server {
            settings: cfg.ng.clone(),
            realms,
            default_legs,
            calls: Calls::new(cfg.ng.max_calls),
            cache: ReplyCache::new(cfg.ng.reply_cache),
        }
    }

    /// Whether requests from `src` are served: the configured `sources`, or loopback
    /// addresses when none are configured. Others are dropped unanswered.
    pub fn accepts(&self, src: IpAddr) -> bool {
        if self.settings.sources.is_empty() {
            src.is_loopback()
        } else {
            self.settings.sources.contains(&src.to_canonical())
                || self.settings.sources.contains(&src)
        }
    }

    /// Calls set up over ng and not deleted.
    pub fn calls(&self) -> usize {
        self.calls.len()
    }

    /// Serves one datagram. `None` when it has no cookie to answer with (no space, or an
    /// empty cookie): such a datagram is dropped.
    pub fn handle(&mut self, anchoring: &mut Anchoring, datagram: &[u8]) -> Option<Vec<u8>> {
        let sp = datagram.iter().position(|b| *b == b' ')?;
        let (cookie, body) = (&datagram[..sp], &datagram[sp + 1..]);
        if cookie.is_empty() {
            return None;
        }
        if let Some(reply) = self.cache.get(cookie) {
            return Some(reply.to_vec());
        }
        let mut out = cookie.to_vec();
        out.push(b' ');
        let (reply, cacheable) = match bencode::decode(body) {
            Err(e) => (error_reply(&e.to_string()), false),
            Ok(v) => match self.serve(anchoring, &v) {
                Ok(r) => (r, true),
                Err(reason) => (error_reply(&reason), true),
            },
        };
        out.extend_from_slice(&reply);
        if cacheable {
            self.cache.put(cookie, &out);
        }
        Some(out)
    }

    /// Deletes the calls all of whose flows carried nothing for the inactivity timeout (a
    /// proxy that lost its `delete`, as rtpengine's `--timeout`); returns how many.
    pub fn media_idle(&mut self, anchoring: &mut Anchoring, idle: &HashSet<FlowId>) -> usize {
        self.calls.reap_idle(anchoring, idle)
    }

    fn serve(&mut self, anchoring: &mut Anchoring, v: &Value) -> Result<Vec<u8>, String> {
        let req = parse_request(v)?;
        match req.command {
            "ping" => Ok(dict(&[(b"result", Value::Bytes(b"pong"))])),
            "offer" | "answer" => {
                let call_id = req.call_id.ok_or("missing call-id")?;
                let from_tag = req.from_tag.ok_or("missing from-tag")?;
                let sdp = req.sdp.ok_or("missing sdp")?;
                let body = if req.command == "offer" {
                    let legs = self.legs(&req.direction)?;
                    self.calls.offer(anchoring, call_id, from_tag, legs, sdp)?
                } else {
                    let to_tag = req.to_tag.ok_or("missing to-tag")?;
                    self.calls
                        .answer(anchoring, call_id, from_tag, to_tag, sdp)?
                };
                let body = if req.ice_remove {
                    crate::sdp::parse(&body)
                        .map(|s| s.without_ice().to_bytes())
                        .unwrap_or(body)
                } else {
                    body
                };
                let warning = (!req.ignored_flags.is_empty())
                    .then(|| format!("flags ignored: {}", req.ignored_flags.join(" ")));
                let mut items = vec![
                    (b"result".as_slice(), Value::Bytes(b"ok")),
                    (b"sdp".as_slice(), Value::Bytes(&body)),
                ];
                if let Some(w) = &warning {
                    items.push((b"warning".as_slice(), Value::Bytes(w.as_bytes())));
                }
                Ok(Value::Dict(items).to_bytes())
            }
            "delete" => {
                let call_id = req.call_id.ok_or("missing call-id")?;
                self.calls.delete(anchoring, call_id, req.from_tag)?;
                Ok(dict(&[(b"result", Value::Bytes(b"ok"))]))
            }
            "" => Err("missing command".to_string()),
            other => Err(format!(
                "unsupported command `{other}` (supported: ping, offer, answer, delete)"
            )),
        }
    }

    /// The realms (and their relay addresses) of an offer's two sides.
    fn legs(&self, direction: &[&str]) -> Result<[LegRealm; 2], String> {
        let idx = match direction {
            [] => self.default_legs.ok_or(
                "no direction given and no default_direction (needs a home and a peer realm)",
            )?,
            [a, b] => [self.realm(a)?, self.realm(b)?],
            _ => return Err("direction must name two realms".to_string()),
        };
        Ok(idx.map(|realm| LegRealm {
            realm,
            addr: self.realms[realm].1,
        }))
    }

    fn realm(&self, name: &str) -> Result<usize, String> {
        let name = self
            .settings
            .directions
            .iter()
            .find(|(k, _)| k == name)
            .map_or(name, |(_, r)| r.as_str());
        self.realms
            .iter()
            .position(|(r, _)| r == name)
            .ok_or_else(|| {
                let names: Vec<&str> = self.realms.iter().map(|(r, _)| r.as_str()).collect();
                format!("unknown direction `{name}` (realms: {})", names.join(", "))
            })
    }
}

fn dict(items: &[(&'static [u8], Value<'static>)]) -> Vec<u8> {
    Value::Dict(items.to_vec()).to_bytes()
}

fn error_reply(reason: &str) -> Vec<u8> {
    Value::Dict(vec![
        (b"result", Value::Bytes(b"error")),
        (b"error-reason", Value::Bytes(reason.as_bytes())),
    ])
    .to_bytes()
}

fn text<'a>(v: &Value<'a>, key: &str) -> Result<Option<&'a str>, String> {
    match v.get(key) {
        None => Ok(None),
        Some(x) => x
            .as_str()
            .map(Some)
            .ok_or_else(|| format!("{key} must be a UTF-8 string")),
    }
}

/// A list of strings (a single string counts as a list of one, as rtpengine takes it).
fn strings<'a>(v: &Value<'a>, key: &str) -> Result<Vec<&'a str>, String> {
    let bad = || format!("{key} must be a list of strings");
    match v.get(key) {
        None => Ok(Vec::new()),
        Some(Value::List(items)) => items.iter().map(|i| i.as_str().ok_or_else(bad)).collect(),
        Some(x) => x.as_str().map(|s| vec![s]).ok_or_else(bad),
    }
}

fn parse_request<'a>(v: &Value<'a>) -> Result<Request<'a>, String> {
    if !matches!(v, Value::Dict(_)) {
        return Err("the request must be a dictionary".to_string());
    }
    let mut req = Request {
        command: text(v, "command")?.unwrap_or(""),
        call_id: text(v, "call-id")?,
        from_tag: text(v, "from-tag")?,
        to_tag: text(v, "to-tag")?,
        direction: strings(v, "direction")?,
        ..Request::default()
    };
    if let Some(s) = v.get("sdp") {
        req.sdp = Some(s.as_bytes().ok_or("sdp must be a string")?);
    }
    match text(v, "ICE")? {
        None | Some("default") => {}
        Some("remove") => req.ice_remove = true,
        Some(other) => {
            return Err(format!(
                "ICE={other} is not supported (remove, or default: ICE stays end to end through the relay)"
            ))
        }
    }
    for r in strings(v, "replace")? {
        // The anchoring rewrite always writes the relay address into o= and c=, the username
        // `-` and s= `-`.
        if !matches!(
            r,
            "origin" | "session-connection" | "session connection" | "username" | "session-name"
        ) {
            return Err(format!(
                "replace {r} is not supported (origin, session-connection, username, session-name)"
            ));
        }
    }
    req.ignored_flags = strings(v, "flags")?;
    Ok(req)
}

/// Replies by cookie, the oldest forgotten first.
struct ReplyCache {
    cap: usize,
    map: HashMap<Vec<u8>, Vec<u8>>,
    order: VecDeque<Vec<u8>>,
}

impl ReplyCache {
    fn new(cap: usize) -> ReplyCache {
        ReplyCache {
            cap,
            map: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    fn get(&self, cookie: &[u8]) -> Option<&[u8]> {
        self.map.get(cookie).map(Vec::as_slice)
    }

    fn put(&mut self, cookie: &[u8], reply: &[u8]) {
        if self.cap == 0 {
            return;
        }
        while self.order.len() >= self.cap {
            if let Some(old) = self.order.pop_front() {
                self.map.remove(&old);
            }
        }
        self.order.push_back(cookie.to_vec());
        self.map.insert(cookie.to_vec(), reply.to_vec());
    }
}

#[cfg(test)]
mod tests;

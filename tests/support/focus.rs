//! The conference focus of operator A (RFC 4579, TS 24.147) for the Case 2 tests, on
//! 127.0.10.1:5060: where Palisade A delivers requests from operator B to A's core.
//!
//! - INVITE to the factory URI or the conference URI: the caller joins the (one) conference;
//!   the 200 carries the focus's Contact with `;isfocus`.
//! - REFER in a participant's dialog: 202, a refer NOTIFY (message/sipfrag) `100 Trying`,
//!   an INVITE to the Refer-To target (A's own users directly, everyone else through
//!   Palisade A's home side), then a NOTIFY with the target's final status.
//! - SUBSCRIBE to the `conference` event (RFC 4575), in or out of dialog: 200 and a full-state
//!   conference-info NOTIFY, and a new one to every subscriber when the participants change.
//! - BYE: the participant leaves.
//! - Media: one endpoint per participant, mixed by [`Mixer`] (each hears the sum of the
//!   others). The lab has no WebRTC gateway, so the focus interworks itself: a WebRTC offer
//!   (it names a DTLS fingerprint) is answered by a str0m endpoint, a plain RTP/AVP one by
//!   a plain RTP endpoint; when dialling out it offers WebRTC to the targets configured as
//!   WebRTC clients and plain RTP/AVP to everyone else.
//! - As A's core: a request for one of A's users (`Config::users`: out of dialog by user name,
//!   in dialog by the Contact in its request URI) is proxied statelessly to that user's UA
//!   (and its responses back), so B can call Alice and Bob.

use super::confinfo;
use super::endpoint::{is_webrtc, Endpoint, Offered};
use super::mixer::Mixer;
use crate::client::Report;
use crate::common::msg::{self, Msg};
use crate::common::registry;
use crate::common::ua::{Dialog, Incoming, Ua, UaConfig, R};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub const ADDR: &str = "127.0.10.1:5060";
pub const FACTORY: &str = "sip:conf-factory@operator-a.example";
const FACTORY_USER: &str = "conf-factory";
const CONF_USER: &str = "conf-1";
/// The conference URI (the focus hosts one conference).
pub const CONF_URI: &str = "sip:conf-1@operator-a.example";
/// Palisade A's home side: where requests for other operators go.
pub const BORDER: &str = "127.0.10.2:5060";
const DOMAIN: &str = "operator-a.example";
const SIPFRAG: &str = "message/sipfrag;version=2.0";

pub struct Config {
    /// A's location service: user name → where that user's UA listens.
    pub users: Vec<(String, SocketAddr)>,
    /// Dial-out targets that are WebRTC clients (offered ICE + DTLS-SRTP); others get RTP/AVP.
    pub webrtc: Vec<String>,
    /// Media legs end by then at the latest.
    pub deadline: Instant,
}

struct Member {
    id: usize,
    /// The participant's URI as the focus knows it (From of a dial-in, the target of a
    /// dial-out).
    uri: String,
    dialog: Dialog,
    leg: JoinHandle<Report>,
}

struct DialOut {
    target: String,
    dialog: Dialog,
    offered: Offered,
    /// Call-ID of the dialog the REFER came in (its NOTIFYs go there).
    referrer: String,
}

#[derive(Default)]
struct State {
    members: Vec<Member>,
    subscribers: Vec<Dialog>,
    /// Call-IDs of participants' dialogs that carry a conference subscription too.
    member_subs: Vec<String>,
    /// Branch of our dial-out INVITE → what it is for.
    pending: HashMap<String, DialOut>,
    /// Branches of the Vias we put on requests we proxied.
    proxied: HashSet<String>,
    version: u32,
    next_id: usize,
    /// The ports of every media endpoint the focus opened.
    media_ports: Vec<u16>,
    problems: Vec<String>,
}

struct Inner {
    ua: Ua,
    cfg: Config,
    mixer: Arc<Mixer>,
    state: Mutex<State>,
    stop: AtomicBool,
}

/// The running focus; dropping it ends its thread and every media leg.
pub struct Focus {
    inner: Arc<Inner>,
    thread: Option<JoinHandle<()>>,
}

impl Focus {
    pub fn start(cfg: Config) -> R<Focus> {
        let mut ua_cfg = UaConfig::a_core(CONF_USER);
        ua_cfg.bind = ADDR.parse().unwrap();
        ua_cfg.advertise = ua_cfg.bind;
        ua_cfg.proxy = BORDER.parse().unwrap();
        ua_cfg.listen_tcp = false;
        let inner = Arc::new(Inner {
            ua: Ua::new(ua_cfg)?,
            cfg,
            mixer: Mixer::new(),
            state: Mutex::new(State::default()),
            stop: AtomicBool::new(false),
        });
        let i2 = inner.clone();
        let thread = std::thread::Builder::new()
            .name("focus".into())
            .spawn(move || serve(&i2))
            .map_err(|e| e.to_string())?;
        Ok(Focus {
            inner,
            thread: Some(thread),
        })
    }

    /// The URIs of the participants now in the conference.
    pub fn members(&self) -> Vec<String> {
        let st = self.inner.state.lock().unwrap();
        st.members.iter().map(|m| m.uri.clone()).collect()
    }

    /// The ports of every media endpoint the focus opened (none may reach B).
    pub fn media_ports(&self) -> Vec<u16> {
        self.inner.state.lock().unwrap().media_ports.clone()
    }

    /// What went wrong while serving requests (empty when all was well).
    pub fn problems(&self) -> Vec<String> {
        self.inner.state.lock().unwrap().problems.clone()
    }

    /// The focus's user agent (its log, the identifiers it made).
    pub fn ua(&self) -> &Ua {
        &self.inner.ua
    }

    /// Bounded wait until the conference has `n` participants.
    pub fn wait_members(&self, n: usize, limit: Duration) -> R<()> {
        let end = Instant::now() + limit;
        loop {
            let now = self.members();
            if now.len() == n {
                return Ok(());
            }
            if Instant::now() >= end {
                return Err(format!(
                    "focus: {} participants after {limit:?} (want {n}): {now:?}; problems: {:?}",
                    now.len(),
                    self.problems()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Focus {
    fn drop(&mut self) {
        self.inner.stop.store(true, Ordering::SeqCst);
        self.inner.mixer.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let members = std::mem::take(&mut self.inner.state.lock().unwrap().members);
        for m in members {
            let _ = m.leg.join();
        }
    }
}

fn serve(f: &Inner) {
    while !f.stop.load(Ordering::SeqCst) {
        let Ok(inc) =
            f.ua.wait_for("any message", Duration::from_millis(50), |_| true)
        else {
            continue;
        };
        if let Err(e) = f.handle(&inc) {
            let line = format!("{}: {e}", inc.msg.summary());
            f.state.lock().unwrap().problems.push(line);
        }
    }
}

/// The next full-state conference-info document (a new version each time).
fn conf_body(st: &mut State) -> String {
    conf_body_of(&mut st.version, &st.members)
}

fn conf_body_of(version: &mut u32, members: &[Member]) -> String {
    *version += 1;
    let users: Vec<String> = members.iter().map(|m| m.uri.clone()).collect();
    confinfo::full_state(CONF_URI, *version, &users)
}

/// User part of a SIP URI.
fn user_of(uri: &str) -> &str {
    let rest = uri.split_once(':').map(|x| x.1).unwrap_or(uri);
    rest.split_once('@').map(|x| x.0).unwrap_or("")
}

fn contact() -> String {
    format!("<sip:{CONF_USER}@{ADDR}>;isfocus")
}

impl Inner {
    fn handle(&self, inc: &Incoming) -> R<()> {
        let m = &inc.msg;
        if m.is_response() {
            return self.on_response(m);
        }
        let method = m.method().unwrap_or("");
        let user = user_of(m.request_uri().unwrap_or(""));
        let in_dialog = m.to_tag().is_some();
        if let Some(addr) = self.user_route(m, user, in_dialog) {
            return self.proxy(m, addr);
        }
        match method {
            "ACK" => Ok(()),
            "INVITE" if !in_dialog && (user == FACTORY_USER || user == CONF_USER) => self.join(inc),
            "REFER" if in_dialog => self.refer(inc),
            "SUBSCRIBE" => self.subscribe(inc),
            "BYE" => self.bye(inc),
            "NOTIFY" => self.reply(inc, 200, "OK"),
            _ if !in_dialog => self.reply(inc, 404, "Not Found"),
            _ => self.reply(inc, 501, "Not Implemented"),
        }
    }

    /// Where a request for one of A's users goes: an initial one by the location service, a
    /// dialog one (routed here by the Record-Route of A's core) to the user's Contact.
    fn user_route(&self, m: &Msg, user: &str, in_dialog: bool) -> Option<SocketAddr> {
        let users = &self.cfg.users;
        if in_dialog {
            let target = msg::uri_addr(m.request_uri()?)?;
            users.iter().any(|(_, a)| *a == target).then_some(target)
        } else {
            users.iter().find(|(u, _)| u == user).map(|(_, a)| *a)
        }
    }

    fn reply(&self, inc: &Incoming, code: u16, reason: &str) -> R<()> {
        let tag = registry::fresh("ftag");
        self.ua
            .respond(inc, code, reason, Some(&tag), None)
            .map(drop)
    }

    /// Dial-in: answer with a media endpoint of the offer's kind; the caller joins.
    fn join(&self, inc: &Incoming) -> R<()> {
        let offer = inc.msg.body_str();
        let tag = registry::fresh("ftag");
        let id = self.next_id();
        let (answer, endpoint) =
            Endpoint::answer("focus", "127.0.10.1", &offer, is_webrtc(&offer))?;
        self.opened(endpoint.addr());
        let audio = Box::new(self.mixer.join(id));
        self.ua.respond(inc, 100, "Trying", None, None)?;
        self.ua.respond_ext(
            inc,
            200,
            "OK",
            Some(&tag),
            Some(("application/sdp", &answer)),
            &[("Contact", contact())],
        )?;
        let dialog = self.ua.uas_dialog(inc, &tag);
        let uri = msg::uri_of(inc.msg.header("from").unwrap_or("")).to_string();
        self.add_member(Member {
            id,
            uri,
            dialog,
            leg: endpoint.spawn(audio, self.cfg.deadline),
        })
    }

    fn opened(&self, addr: SocketAddr) {
        self.state.lock().unwrap().media_ports.push(addr.port());
    }

    fn next_id(&self) -> usize {
        let mut st = self.state.lock().unwrap();
        st.next_id += 1;
        st.next_id
    }

    fn add_member(&self, m: Member) -> R<()> {
        self.state.lock().unwrap().members.push(m);
        self.notify_subscribers()
    }

    /// REFER (RFC 3515, RFC 4579 §5.5): 202, `100 Trying`, then dial out to the target.
    fn refer(&self, inc: &Incoming) -> R<()> {
        let m = &inc.msg;
        let cid = m.call_id().unwrap_or("").to_string();
        let Some(refer_to) = m.header("refer-to").map(|v| msg::uri_of(v).to_string()) else {
            return self.reply(inc, 400, "Missing Refer-To");
        };
        if !self.is_member_dialog(&cid) {
            return self.reply(inc, 481, "Call/Transaction Does Not Exist");
        }
        self.ua
            .respond_ext(inc, 202, "Accepted", None, None, &[("Contact", contact())])?;
        self.refer_notify(&cid, "SIP/2.0 100 Trying", "active;expires=60")?;
        // the target without URI headers or parameters of the REFER (method=, ?Replaces...)
        let target = refer_to.split(['?', ';']).next().unwrap_or("").to_string();
        let dest = match self
            .cfg
            .users
            .iter()
            .find(|(u, _)| target.ends_with(&format!("@{DOMAIN}")) && u == user_of(&target))
        {
            Some((_, a)) => *a,
            None => BORDER.parse().unwrap(),
        };
        let (offer, offered) =
            Offered::new("focus", "127.0.10.1", self.cfg.webrtc.contains(&target))?;
        self.opened(offered.addr());
        let referred_by = m
            .header("referred-by")
            .map(str::to_string)
            .unwrap_or_else(|| m.header("from").unwrap_or("").to_string());
        let extra = [
            ("Contact", contact()),
            ("Referred-By", referred_by),
            (
                "Allow",
                "INVITE, ACK, CANCEL, BYE, REFER, SUBSCRIBE, NOTIFY".into(),
            ),
        ];
        let (tx, dialog) = self.ua.invite_to(&target, &offer, &extra, dest)?;
        self.state.lock().unwrap().pending.insert(
            tx.branch,
            DialOut {
                target,
                dialog,
                offered,
                referrer: cid,
            },
        );
        Ok(())
    }

    fn is_member_dialog(&self, call_id: &str) -> bool {
        let st = self.state.lock().unwrap();
        st.members.iter().any(|m| m.dialog.call_id == call_id)
    }

    /// A NOTIFY of the implicit refer subscription in the dialog with Call-ID `call_id`.
    fn refer_notify(&self, call_id: &str, frag: &str, sub_state: &str) -> R<()> {
        let mut st = self.state.lock().unwrap();
        let Some(m) = st.members.iter_mut().find(|m| m.dialog.call_id == call_id) else {
            return Err(format!("no dialog {call_id} for a refer NOTIFY"));
        };
        let frag = format!("{frag}\r\n");
        self.ua.request_ext(
            &mut m.dialog,
            "NOTIFY",
            Some((SIPFRAG, &frag)),
            &[
                ("Event", "refer".into()),
                ("Subscription-State", sub_state.into()),
                ("Contact", contact()),
            ],
        )?;
        Ok(())
    }

    fn on_response(&self, m: &Msg) -> R<()> {
        let branch = m.branch().unwrap_or_default();
        if self.state.lock().unwrap().proxied.contains(&branch) {
            return self.proxy_response(m);
        }
        if m.cseq_method().as_deref() != Some("INVITE") || m.status() < 200 {
            return Ok(());
        }
        let Some(mut d) = self.state.lock().unwrap().pending.remove(&branch) else {
            return Ok(());
        };
        let status = format!(
            "SIP/2.0 {}",
            m.start.split_once(' ').map(|x| x.1).unwrap_or("")
        );
        if m.status() >= 300 {
            return self.refer_notify(&d.referrer, &status, "terminated;reason=noresource");
        }
        self.ua.ack_2xx(&mut d.dialog, m)?;
        let answer = m.body_str();
        let id = self.next_id();
        let audio = Box::new(self.mixer.join(id));
        let deadline = self.cfg.deadline;
        let leg = d.offered.complete(&answer)?.spawn(audio, deadline);
        self.add_member(Member {
            id,
            uri: d.target,
            dialog: d.dialog,
            leg,
        })?;
        self.refer_notify(&d.referrer, &status, "terminated;reason=noresource")
    }

    /// SUBSCRIBE to the conference event package: 200, then a full-state NOTIFY.
    fn subscribe(&self, inc: &Incoming) -> R<()> {
        let m = &inc.msg;
        let event = m.header("event").unwrap_or("");
        if event.split(';').next().map(str::trim) != Some("conference") {
            return self.reply(inc, 489, "Bad Event");
        }
        let expires: u32 = m
            .header("expires")
            .and_then(|e| e.trim().parse().ok())
            .unwrap_or(600);
        let cid = m.call_id().unwrap_or("").to_string();
        let tag = m.to_tag().unwrap_or_else(|| registry::fresh("ftag"));
        self.ua.respond_ext(
            inc,
            200,
            "OK",
            Some(&tag),
            None,
            &[("Contact", contact()), ("Expires", expires.to_string())],
        )?;
        let state = if expires == 0 {
            "terminated;reason=timeout".to_string()
        } else {
            format!("active;expires={expires}")
        };
        let mut st = self.state.lock().unwrap();
        let body = conf_body(&mut st);
        if st.members.iter().any(|x| x.dialog.call_id == cid) {
            // in a participant's dialog: its NOTIFYs go in that dialog
            st.member_subs.retain(|c| *c != cid);
            if expires > 0 {
                st.member_subs.push(cid.clone());
            }
            let member = st.members.iter_mut().find(|x| x.dialog.call_id == cid);
            return self.send_conf(&mut member.unwrap().dialog, &body, &state);
        }
        // a dialog of its own (RFC 6665), new or refreshed
        let pos = st.subscribers.iter().position(|d| d.call_id == cid);
        let mut dialog = match pos {
            Some(p) => st.subscribers.remove(p),
            None => self.ua.uas_dialog(inc, &tag),
        };
        self.send_conf(&mut dialog, &body, &state)?;
        if expires > 0 {
            st.subscribers.push(dialog);
        }
        Ok(())
    }

    fn send_conf(&self, dialog: &mut Dialog, body: &str, sub_state: &str) -> R<()> {
        self.ua.request_ext(
            dialog,
            "NOTIFY",
            Some((confinfo::CONTENT_TYPE, body)),
            &[
                ("Event", "conference".into()),
                ("Subscription-State", sub_state.into()),
                ("Contact", contact()),
            ],
        )?;
        Ok(())
    }

    /// A full-state NOTIFY to every subscriber.
    fn notify_subscribers(&self) -> R<()> {
        let mut st = self.state.lock().unwrap();
        let mut res = Ok(());
        let st = &mut *st;
        for d in st.subscribers.iter_mut() {
            let body = conf_body_of(&mut st.version, &st.members);
            res = res.and(self.send_conf(d, &body, "active"));
        }
        for cid in &st.member_subs {
            let body = conf_body_of(&mut st.version, &st.members);
            if let Some(m) = st.members.iter_mut().find(|m| m.dialog.call_id == *cid) {
                res = res.and(self.send_conf(&mut m.dialog, &body, "active"));
            }
        }
        res
    }

    fn bye(&self, inc: &Incoming) -> R<()> {
        let cid = inc.msg.call_id().unwrap_or("").to_string();
        let gone = {
            let mut st = self.state.lock().unwrap();
            st.subscribers.retain(|d| d.call_id != cid);
            st.member_subs.retain(|c| *c != cid);
            let pos = st.members.iter().position(|m| m.dialog.call_id == cid);
            pos.map(|p| st.members.remove(p))
        };
        let Some(gone) = gone else {
            return self.reply(inc, 481, "Call/Transaction Does Not Exist");
        };
        self.ua.respond(inc, 200, "OK", None, None)?;
        self.mixer.leave(gone.id);
        let _ = gone.leg.join();
        self.notify_subscribers()
    }

    /// Stateless proxy (RFC 3261 §16.11) to one of A's users: our Via on top.
    fn proxy(&self, m: &Msg, dest: SocketAddr) -> R<()> {
        let branch = registry::fresh("z9hG4bKcore");
        let mut fwd = m.clone();
        fwd.headers.insert(
            0,
            ("Via".into(), format!("SIP/2.0/UDP {ADDR};branch={branch}")),
        );
        self.state.lock().unwrap().proxied.insert(branch);
        self.ua.send_raw(&fwd, dest)
    }

    /// A response to a request we proxied: our Via off, on to the next one.
    fn proxy_response(&self, m: &Msg) -> R<()> {
        let mut fwd = m.clone();
        let top = fwd
            .headers
            .iter()
            .position(|(n, _)| msg::canon(n) == "via")
            .ok_or("response without Via")?;
        fwd.headers.remove(top);
        let next = fwd.top_via().ok_or("proxied response with only our Via")?;
        let dest = msg::via_response_addr(&next).ok_or("Via without address")?;
        self.ua.send_raw(&fwd, dest)
    }
}

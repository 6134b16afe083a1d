//! A small, independent RFC 3261 user agent for black-box tests (UDP and TCP).
//!
//! A background thread owns the sockets: it records every message, runs the
//! retransmission timers (Timer A/E for client transactions over UDP, 2xx
//! retransmission until ACK, non-2xx final retransmission until ACK), absorbs
//! retransmitted requests by resending the last response, generates the ACK for
//! non-2xx final responses inside the INVITE transaction and re-sends the ACK for
//! retransmitted 2xx. Everything else is driven by the test through bounded waits.

use super::msg::{self, Msg};
use super::registry;
use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub const T1: Duration = Duration::from_millis(500);
pub const T2: Duration = Duration::from_secs(4);
/// Default bound of every wait.
pub const WAIT: Duration = Duration::from_secs(5);
const TX_LIFETIME: Duration = Duration::from_secs(32);

pub type R<T> = Result<T, String>;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    pub fn via_name(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
        }
    }
}

#[derive(Clone, Debug)]
pub struct UaConfig {
    /// Local address bound for UDP (and a TCP listener on the same address).
    pub bind: SocketAddr,
    /// host:port put in Via sent-by and Contact.
    pub advertise: SocketAddr,
    /// Where out-of-dialog requests go (Palisade's home side).
    pub proxy: SocketAddr,
    /// If set, every request (also in-dialog) is physically sent here.
    pub force_next_hop: Option<SocketAddr>,
    /// Transport for requests this UA originates.
    pub transport: Transport,
    pub user: String,
    pub domain: String,
    /// Internal domain of this UA's core, e.g. "operator-a-core.internal";
    /// used in X-Internal and Record-Route values that must never leak.
    pub internal: String,
    /// Also listen on TCP at `bind`.
    pub listen_tcp: bool,
    /// Record-route as this UA's own core proxy (`<sip:scscf.INTERNAL;lr>`, which must never
    /// leak); false when a real proxy stands in front of the UA and record-routes itself.
    pub own_record_route: bool,
}

impl UaConfig {
    pub fn a_core(user: &str) -> UaConfig {
        UaConfig {
            bind: "127.0.10.1:5060".parse().unwrap(),
            advertise: "127.0.10.1:5060".parse().unwrap(),
            proxy: "127.0.10.2:5060".parse().unwrap(),
            force_next_hop: None,
            transport: Transport::Udp,
            user: user.to_string(),
            domain: "operator-a.example".to_string(),
            internal: "operator-a-core.internal".to_string(),
            listen_tcp: true,
            own_record_route: true,
        }
    }
    pub fn b_core(user: &str) -> UaConfig {
        UaConfig {
            bind: "127.0.40.1:5060".parse().unwrap(),
            advertise: "127.0.40.1:5060".parse().unwrap(),
            proxy: "127.0.40.2:5060".parse().unwrap(),
            force_next_hop: None,
            transport: Transport::Udp,
            user: user.to_string(),
            domain: "operator-b.example".to_string(),
            internal: "operator-b-core.internal".to_string(),
            listen_tcp: true,
            own_record_route: true,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Logged {
    pub outgoing: bool,
    pub peer: SocketAddr,
    pub transport: Transport,
    pub bytes: Vec<u8>,
    pub at: Instant,
}

#[derive(Clone, Debug)]
pub struct Incoming {
    pub msg: Msg,
    pub src: SocketAddr,
    pub transport: Transport,
    pub conn: Option<usize>,
}

#[derive(Clone, Debug, PartialEq)]
enum RetxKey {
    Client { branch: String, method: String },
    Server2xx { call_id: String, cseq: u32 },
    ServerNon2xx { branch: String },
}

struct Retx {
    key: RetxKey,
    bytes: Vec<u8>,
    dest: SocketAddr,
    transport: Transport,
    conn: Option<usize>,
    next: Instant,
    interval: Duration,
    cap: Duration,
    deadline: Instant,
}

#[derive(Clone)]
struct ClientTxInfo {
    req: Msg,
    dest: SocketAddr,
    transport: Transport,
    conn: Option<usize>,
}

#[derive(Clone)]
struct Out {
    bytes: Vec<u8>,
    dest: SocketAddr,
    transport: Transport,
    conn: Option<usize>,
}

struct Conn {
    id: usize,
    peer: SocketAddr,
    stream: TcpStream,
}

#[derive(Default)]
struct State {
    queue: Vec<Incoming>,
    retx: Vec<Retx>,
    client_tx: HashMap<(String, String), ClientTxInfo>,
    server_last: HashMap<(String, String), Out>,
    seen_req: HashSet<(String, String)>,
    seen_resp: HashSet<(String, String, u16, String)>,
    acks_2xx: HashMap<(String, u32), Out>,
    acks_non2xx: HashMap<String, Out>,
    log: Vec<Logged>,
    conns: Vec<Conn>,
    next_conn: usize,
}

struct Shared {
    cfg: UaConfig,
    udp: UdpSocket,
    state: Mutex<State>,
    cond: Condvar,
    stop: AtomicBool,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

/// A client transaction handle.
#[derive(Clone, Debug)]
pub struct ClientTx {
    pub req: Msg,
    pub branch: String,
    pub method: String,
    pub dest: SocketAddr,
    pub transport: Transport,
}

/// Dialog state (RFC 3261 12).
#[derive(Clone, Debug)]
pub struct Dialog {
    pub call_id: String,
    pub local_tag: String,
    pub remote_tag: String,
    pub local_uri: String,
    pub remote_uri: String,
    pub remote_target: String,
    pub route_set: Vec<String>,
    pub local_cseq: u32,
    pub invite_cseq: u32,
    pub transport: Transport,
}

pub struct Ua {
    sh: Arc<Shared>,
    generated: Mutex<Vec<String>>,
}

impl Drop for Ua {
    fn drop(&mut self) {
        self.sh.stop.store(true, Ordering::SeqCst);
        let ts: Vec<_> = std::mem::take(&mut *self.sh.threads.lock().unwrap());
        for t in ts {
            let _ = t.join();
        }
        let st = self.sh.state.lock().unwrap();
        for c in &st.conns {
            let _ = c.stream.shutdown(std::net::Shutdown::Both);
        }
    }
}

fn assert_loopback(a: &SocketAddr) {
    assert!(
        a.ip().is_loopback(),
        "test sockets must stay on loopback: {a}"
    );
}

impl Ua {
    pub fn new(cfg: UaConfig) -> R<Ua> {
        assert_loopback(&cfg.bind);
        assert_loopback(&cfg.proxy);
        let udp = bind_udp(cfg.bind)?;
        udp.set_read_timeout(Some(Duration::from_millis(10)))
            .map_err(|e| e.to_string())?;
        let listener = if cfg.listen_tcp {
            let l = bind_tcp_listener(cfg.bind)?;
            l.set_nonblocking(true).map_err(|e| e.to_string())?;
            Some(l)
        } else {
            None
        };
        let sh = Arc::new(Shared {
            cfg,
            udp,
            state: Mutex::new(State::default()),
            cond: Condvar::new(),
            stop: AtomicBool::new(false),
            threads: Mutex::new(Vec::new()),
        });
        let s2 = sh.clone();
        let t = std::thread::spawn(move || udp_loop(s2));
        sh.threads.lock().unwrap().push(t);
        if let Some(l) = listener {
            let s3 = sh.clone();
            let t = std::thread::spawn(move || accept_loop(s3, l));
            sh.threads.lock().unwrap().push(t);
        }
        Ok(Ua {
            sh,
            generated: Mutex::new(Vec::new()),
        })
    }

    pub fn cfg(&self) -> &UaConfig {
        &self.sh.cfg
    }

    fn fresh(&self, prefix: &str) -> String {
        let id = registry::fresh(prefix);
        self.generated.lock().unwrap().push(id.clone());
        id
    }

    /// Every identifier (Call-ID token, tag, branch) this UA generated.
    pub fn generated_ids(&self) -> Vec<String> {
        self.generated.lock().unwrap().clone()
    }

    pub fn log(&self) -> Vec<Logged> {
        self.sh.state.lock().unwrap().log.clone()
    }

    /// All bytes this UA received, concatenated (for leak assertions).
    pub fn received_bytes(&self) -> Vec<u8> {
        let mut v = Vec::new();
        for l in self.log().iter().filter(|l| !l.outgoing) {
            v.extend_from_slice(&l.bytes);
            v.extend_from_slice(b"\r\n\r\n");
        }
        v
    }

    pub fn received(&self) -> Vec<Msg> {
        self.log()
            .iter()
            .filter(|l| !l.outgoing)
            .filter_map(|l| Msg::parse(&l.bytes))
            .collect()
    }

    pub fn sent(&self) -> Vec<Msg> {
        self.log()
            .iter()
            .filter(|l| l.outgoing)
            .filter_map(|l| Msg::parse(&l.bytes))
            .collect()
    }

    /// Drop everything queued for the foreground.
    pub fn clear_queue(&self) {
        self.sh.state.lock().unwrap().queue.clear();
    }

    pub fn queued(&self) -> Vec<Incoming> {
        self.sh.state.lock().unwrap().queue.clone()
    }

    fn new_branch(&self) -> String {
        self.fresh("z9hG4bK")
    }

    fn via(&self, tr: Transport, branch: &str) -> String {
        format!(
            "SIP/2.0/{} {};branch={};rport",
            tr.via_name(),
            self.sh.cfg.advertise,
            branch
        )
    }

    pub fn contact(&self, tr: Transport) -> String {
        let c = &self.sh.cfg;
        let t = if tr == Transport::Tcp {
            ";transport=tcp"
        } else {
            ""
        };
        format!("<sip:{}@{}{}>", c.user, c.advertise, t)
    }

    fn x_internal(&self) -> String {
        format!("pcscf1.{}", self.sh.cfg.internal)
    }

    fn own_rr(&self) -> String {
        format!("<sip:scscf.{};lr>", self.sh.cfg.internal)
    }

    fn send_out(&self, o: &Out) -> R<()> {
        let mut st = self.sh.state.lock().unwrap();
        send_locked(&self.sh, &mut st, o)
    }

    /// Send `m` once as it is, over UDP, outside any transaction (a stateless proxy's forwarding).
    pub fn send_raw(&self, m: &Msg, dest: SocketAddr) -> R<()> {
        self.send_out(&Out {
            bytes: m.to_bytes(),
            dest,
            transport: Transport::Udp,
            conn: None,
        })
    }

    /// Send a request as a new client transaction (with retransmission over UDP).
    pub fn send_request(&self, req: Msg, dest: SocketAddr, tr: Transport) -> R<ClientTx> {
        assert_loopback(&dest);
        let branch = req.branch().ok_or("request without branch")?;
        let method = req.method().ok_or("not a request")?.to_string();
        let bytes = req.to_bytes();
        let mut st = self.sh.state.lock().unwrap();
        let o = Out {
            bytes: bytes.clone(),
            dest,
            transport: tr,
            conn: None,
        };
        send_locked(&self.sh, &mut st, &o)?;
        let conn = if tr == Transport::Tcp {
            st.conns.iter().find(|c| c.peer == dest).map(|c| c.id)
        } else {
            None
        };
        if method != "ACK" {
            st.client_tx.insert(
                (branch.clone(), method.clone()),
                ClientTxInfo {
                    req: req.clone(),
                    dest,
                    transport: tr,
                    conn,
                },
            );
            if tr == Transport::Udp {
                let cap = if method == "INVITE" { TX_LIFETIME } else { T2 };
                let now = Instant::now();
                st.retx.push(Retx {
                    key: RetxKey::Client {
                        branch: branch.clone(),
                        method: method.clone(),
                    },
                    bytes,
                    dest,
                    transport: tr,
                    conn: None,
                    next: now + T1,
                    interval: T1,
                    cap,
                    deadline: now + TX_LIFETIME,
                });
            }
        }
        Ok(ClientTx {
            req,
            branch,
            method,
            dest,
            transport: tr,
        })
    }

    fn next_hop(&self, natural: Option<SocketAddr>) -> SocketAddr {
        let c = &self.sh.cfg;
        c.force_next_hop.or(natural).unwrap_or(c.proxy)
    }

    /// Send a new out-of-dialog INVITE to `target` with an SDP offer.
    pub fn invite(&self, target: &str, sdp: &str) -> R<(ClientTx, Dialog)> {
        self.invite_with(target, sdp, &[])
    }

    pub fn invite_with(
        &self,
        target: &str,
        sdp: &str,
        extra: &[(&str, String)],
    ) -> R<(ClientTx, Dialog)> {
        self.invite_to(target, sdp, extra, self.next_hop(None))
    }

    /// [`Ua::invite_with`], sent to `dest` instead of the configured next hop.
    pub fn invite_to(
        &self,
        target: &str,
        sdp: &str,
        extra: &[(&str, String)],
        dest: SocketAddr,
    ) -> R<(ClientTx, Dialog)> {
        let c = &self.sh.cfg;
        let tr = c.transport;
        let call_id = format!("{}@ua.{}", self.fresh("cid"), c.internal);
        let tag = self.fresh("tag");
        let branch = self.new_branch();
        let local_uri = format!("sip:{}@{}", c.user, c.domain);
        let mut h: Vec<(&str, String)> = vec![
            ("Via", self.via(tr, &branch)),
            ("Max-Forwards", "70".into()),
            ("From", format!("<{}>;tag={}", local_uri, tag)),
            ("To", format!("<{}>", target)),
            ("Call-ID", call_id.clone()),
            ("CSeq", "1 INVITE".into()),
            ("Contact", self.contact(tr)),
            ("X-Internal", self.x_internal()),
            ("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS".into()),
            ("Content-Type", "application/sdp".into()),
        ];
        if c.own_record_route {
            h.insert(7, ("Record-Route", self.own_rr()));
        }
        with_extra(&mut h, extra);
        let req = msg::request("INVITE", target, &h, sdp.as_bytes());
        let tx = self.send_request(req, dest, tr)?;
        let dlg = Dialog {
            call_id,
            local_tag: tag,
            remote_tag: String::new(),
            local_uri,
            remote_uri: target.to_string(),
            remote_target: target.to_string(),
            route_set: Vec::new(),
            local_cseq: 1,
            invite_cseq: 1,
            transport: tr,
        };
        Ok((tx, dlg))
    }

    /// Out-of-dialog non-INVITE request (e.g. OPTIONS) to `ruri`, sent to the proxy.
    pub fn out_of_dialog(&self, method: &str, ruri: &str, extra: &[(&str, String)]) -> R<ClientTx> {
        let c = &self.sh.cfg;
        let tr = c.transport;
        let branch = self.new_branch();
        let mut h: Vec<(&str, String)> = vec![
            ("Via", self.via(tr, &branch)),
            ("Max-Forwards", "70".into()),
            (
                "From",
                format!("<sip:{}@{}>;tag={}", c.user, c.domain, self.fresh("tag")),
            ),
            ("To", format!("<{}>", ruri)),
            (
                "Call-ID",
                format!("{}@ua.{}", self.fresh("cid"), c.internal),
            ),
            ("CSeq", format!("1 {}", method)),
            ("Contact", self.contact(tr)),
            ("X-Internal", self.x_internal()),
        ];
        h.extend(extra.iter().map(|(n, v)| (*n, v.clone())));
        let req = msg::request(method, ruri, &h, &[]);
        let dest = self.next_hop(None);
        self.send_request(req, dest, tr)
    }

    /// Generic wait on the foreground queue (removes and returns the first match).
    pub fn wait_for<F: Fn(&Incoming) -> bool>(
        &self,
        what: &str,
        timeout: Duration,
        pred: F,
    ) -> R<Incoming> {
        let deadline = Instant::now() + timeout;
        let mut st = self.sh.state.lock().unwrap();
        loop {
            if let Some(i) = st.queue.iter().position(&pred) {
                return Ok(st.queue.remove(i));
            }
            let now = Instant::now();
            if now >= deadline {
                let q: Vec<String> = st.queue.iter().map(|i| i.msg.summary()).collect();
                return Err(format!(
                    "{} ({}): timed out after {:?} waiting for {}; unconsumed: {:?}",
                    self.sh.cfg.user, self.sh.cfg.bind, timeout, what, q
                ));
            }
            st = self.sh.cond.wait_timeout(st, deadline - now).unwrap().0;
        }
    }

    /// Wait for a response to `tx` with status >= min.
    pub fn wait_response(&self, tx: &ClientTx, min: u16) -> R<Msg> {
        self.wait_response_for(tx, min, WAIT)
    }

    /// [`Ua::wait_response`] bounded by `timeout`.
    pub fn wait_response_for(&self, tx: &ClientTx, min: u16, timeout: Duration) -> R<Msg> {
        let (b, m) = (tx.branch.clone(), tx.method.clone());
        self.wait_for(
            &format!("response >= {} to {}", min, tx.method),
            timeout,
            move |i| {
                i.msg.is_response()
                    && i.msg.branch().as_deref() == Some(b.as_str())
                    && i.msg.cseq_method().as_deref() == Some(m.as_str())
                    && i.msg.status() >= min
            },
        )
        .map(|i| i.msg)
    }

    pub fn wait_final(&self, tx: &ClientTx) -> R<Msg> {
        self.wait_response(tx, 200)
    }

    /// Wait for a request of `method` (optionally in a given Call-ID).
    pub fn wait_request(&self, method: &str, call_id: Option<&str>) -> R<Incoming> {
        self.wait_request_for(method, call_id, WAIT)
    }

    pub fn wait_request_for(
        &self,
        method: &str,
        call_id: Option<&str>,
        timeout: Duration,
    ) -> R<Incoming> {
        let m = method.to_string();
        let cid = call_id.map(|s| s.to_string());
        self.wait_for(&format!("{} request", method), timeout, move |i| {
            i.msg.method() == Some(m.as_str())
                && cid.as_deref().is_none_or(|c| i.msg.call_id() == Some(c))
        })
    }

    /// Fails if anything at all arrives within `dur`.
    pub fn expect_nothing(&self, dur: Duration) -> R<()> {
        match self.wait_for("nothing", dur, |_| true) {
            Ok(i) => Err(format!(
                "{}: expected nothing, received {}",
                self.sh.cfg.user,
                i.msg.summary()
            )),
            Err(_) => Ok(()),
        }
    }

    /// Confirm a UAC dialog from a 2xx and send the ACK (new transaction) for it.
    pub fn ack_2xx(&self, dlg: &mut Dialog, resp: &Msg) -> R<()> {
        if !(200..300).contains(&resp.status()) {
            return Err(format!("ack_2xx on {}", resp.start));
        }
        let (cseq, _) = resp.cseq().ok_or("2xx without CSeq")?;
        if dlg.remote_tag.is_empty() {
            dlg.remote_tag = resp.to_tag().ok_or("2xx without To tag")?;
            let mut rr = resp.header_values("record-route");
            rr.reverse();
            dlg.route_set = rr;
        }
        if let Some(c) = resp.contact_uri() {
            dlg.remote_target = c;
        } else {
            return Err("2xx to INVITE without Contact".into());
        }
        let (req, dest) = self.build_in_dialog(dlg, "ACK", cseq, None, &[]);
        let o = Out {
            bytes: req.to_bytes(),
            dest,
            transport: dlg.transport,
            conn: None,
        };
        self.send_out(&o)?;
        self.sh
            .state
            .lock()
            .unwrap()
            .acks_2xx
            .insert((dlg.call_id.clone(), cseq), o);
        Ok(())
    }

    fn build_in_dialog(
        &self,
        dlg: &Dialog,
        method: &str,
        cseq: u32,
        body: Option<(&str, &str)>,
        extra: &[(&str, String)],
    ) -> (Msg, SocketAddr) {
        let internal = self.sh.cfg.internal.clone();
        // Our own core's proxies (which we emulate) are stripped from the route set.
        let routes: Vec<String> = dlg
            .route_set
            .iter()
            .filter(|r| !r.contains(&internal))
            .cloned()
            .collect();
        let (ruri, route_hdrs, natural) = if routes.is_empty() {
            (
                dlg.remote_target.clone(),
                Vec::new(),
                msg::uri_addr(&dlg.remote_target),
            )
        } else {
            let first = msg::uri_of(&routes[0]).to_string();
            if first.contains(";lr") {
                (
                    dlg.remote_target.clone(),
                    routes.clone(),
                    msg::uri_addr(&first),
                )
            } else {
                let mut rest: Vec<String> = routes[1..].to_vec();
                rest.push(format!("<{}>", dlg.remote_target));
                (first.clone(), rest, msg::uri_addr(&first))
            }
        };
        let branch = self.new_branch();
        let mut h: Vec<(&str, String)> = vec![
            ("Via", self.via(dlg.transport, &branch)),
            ("Max-Forwards", "70".into()),
        ];
        for r in &route_hdrs {
            h.push(("Route", r.clone()));
        }
        h.push(("From", format!("<{}>;tag={}", dlg.local_uri, dlg.local_tag)));
        h.push(("To", format!("<{}>;tag={}", dlg.remote_uri, dlg.remote_tag)));
        h.push(("Call-ID", dlg.call_id.clone()));
        h.push(("CSeq", format!("{} {}", cseq, method)));
        if method == "INVITE" {
            h.push(("Contact", self.contact(dlg.transport)));
        }
        h.push(("X-Internal", self.x_internal()));
        if let Some((ct, _)) = body {
            h.push(("Content-Type", ct.into()));
        }
        with_extra(&mut h, extra);
        let req = msg::request(
            method,
            &ruri,
            &h,
            body.map(|b| b.1.as_bytes()).unwrap_or(&[]),
        );
        (req, self.next_hop(natural))
    }

    /// Send an in-dialog request (BYE, re-INVITE, OPTIONS...). CSeq is incremented.
    pub fn request(&self, dlg: &mut Dialog, method: &str, body: Option<&str>) -> R<ClientTx> {
        self.request_ext(dlg, method, body.map(|b| ("application/sdp", b)), &[])
    }

    /// [`Ua::request`] with a body of any type (`(content type, text)`) and extra headers
    /// (one named like a header we write replaces it), e.g. REFER with Refer-To or NOTIFY.
    pub fn request_ext(
        &self,
        dlg: &mut Dialog,
        method: &str,
        body: Option<(&str, &str)>,
        extra: &[(&str, String)],
    ) -> R<ClientTx> {
        dlg.local_cseq += 1;
        if method == "INVITE" {
            dlg.invite_cseq = dlg.local_cseq;
        }
        let (req, dest) = self.build_in_dialog(dlg, method, dlg.local_cseq, body, extra);
        self.send_request(req, dest, dlg.transport)
    }

    /// CANCEL a pending INVITE client transaction.
    pub fn cancel(&self, inv: &ClientTx) -> R<ClientTx> {
        let r = &inv.req;
        let (n, _) = r.cseq().ok_or("INVITE without CSeq")?;
        let mut h: Vec<(&str, String)> = vec![
            ("Via", r.top_via().ok_or("no Via")?),
            ("Max-Forwards", "70".into()),
        ];
        for rt in r.header_values("route") {
            h.push(("Route", rt));
        }
        h.push(("From", r.header("from").unwrap_or("").to_string()));
        h.push(("To", r.header("to").unwrap_or("").to_string()));
        h.push(("Call-ID", r.call_id().unwrap_or("").to_string()));
        h.push(("CSeq", format!("{} CANCEL", n)));
        let req = msg::request("CANCEL", r.request_uri().unwrap_or(""), &h, &[]);
        self.send_request(req, inv.dest, inv.transport)
    }

    /// Send a response to an incoming request. Returns the response sent.
    pub fn respond(
        &self,
        inc: &Incoming,
        code: u16,
        reason: &str,
        to_tag: Option<&str>,
        body: Option<&str>,
    ) -> R<Msg> {
        let body = body.map(|b| ("application/sdp", b));
        self.respond_ext(inc, code, reason, to_tag, body, &[])
    }

    /// [`Ua::respond`] with a body of any type (`(content type, text)`) and extra headers (one
    /// named like a header we write replaces it, e.g. a Contact with feature tags).
    pub fn respond_ext(
        &self,
        inc: &Incoming,
        code: u16,
        reason: &str,
        to_tag: Option<&str>,
        body: Option<(&str, &str)>,
        extra: &[(&str, String)],
    ) -> R<Msg> {
        let req = &inc.msg;
        let method = req.method().ok_or("respond to a response")?.to_string();
        let mut h: Vec<(String, String)> = Vec::new();
        for v in req.header_values("via") {
            h.push(("Via".into(), v));
        }
        h.push(("From".into(), req.header("from").unwrap_or("").into()));
        let mut to = req.header("to").unwrap_or("").to_string();
        if msg::param(&to, "tag").is_none() && code > 100 {
            if let Some(t) = to_tag {
                to = format!("{};tag={}", to, t);
            }
        }
        h.push(("To".into(), to));
        h.push(("Call-ID".into(), req.call_id().unwrap_or("").into()));
        h.push(("CSeq".into(), req.header("cseq").unwrap_or("").into()));
        let dialog_creating = method == "INVITE" && code > 100 && code < 300;
        if dialog_creating {
            if req.to_tag().is_none() {
                if self.sh.cfg.own_record_route {
                    h.push(("Record-Route".into(), self.own_rr()));
                }
                for rr in req.header_values("record-route") {
                    h.push(("Record-Route".into(), rr));
                }
            }
            h.push(("Contact".into(), self.contact(inc.transport)));
        }
        if code > 100 {
            h.push(("X-Internal".into(), self.x_internal()));
        }
        if let Some((ct, _)) = body {
            h.push(("Content-Type".into(), ct.into()));
        }
        for (n, v) in extra {
            match h.iter().position(|(hn, _)| hn.eq_ignore_ascii_case(n)) {
                Some(p) => h[p].1 = v.clone(),
                None => h.push((n.to_string(), v.clone())),
            }
        }
        let resp = Msg {
            start: format!("SIP/2.0 {} {}", code, reason),
            headers: h,
            body: body.map(|b| b.1.as_bytes().to_vec()).unwrap_or_default(),
        };
        let dest = match inc.transport {
            Transport::Tcp => inc.src,
            Transport::Udp => req
                .top_via()
                .and_then(|v| msg::via_response_addr(&v))
                .filter(|a| a.ip().is_loopback())
                .unwrap_or(inc.src),
        };
        let bytes = resp.to_bytes();
        let o = Out {
            bytes: bytes.clone(),
            dest,
            transport: inc.transport,
            conn: inc.conn,
        };
        let mut st = self.sh.state.lock().unwrap();
        send_locked(&self.sh, &mut st, &o)?;
        let branch = req.branch().unwrap_or_default();
        st.server_last.insert((branch.clone(), method.clone()), o);
        let now = Instant::now();
        if method == "INVITE" && (200..300).contains(&code) {
            let (n, _) = req.cseq().unwrap_or((0, String::new()));
            st.retx.push(Retx {
                key: RetxKey::Server2xx {
                    call_id: req.call_id().unwrap_or("").to_string(),
                    cseq: n,
                },
                bytes,
                dest,
                transport: inc.transport,
                conn: inc.conn,
                next: now + T1,
                interval: T1,
                cap: T2,
                deadline: now + TX_LIFETIME,
            });
        } else if method == "INVITE" && code >= 300 && inc.transport == Transport::Udp {
            st.retx.push(Retx {
                key: RetxKey::ServerNon2xx { branch },
                bytes,
                dest,
                transport: inc.transport,
                conn: inc.conn,
                next: now + T1,
                interval: T1,
                cap: T2,
                deadline: now + TX_LIFETIME,
            });
        }
        Ok(resp)
    }

    /// UAS side of an incoming INVITE: sends 100, 180 and the final response
    /// (200 with `sdp` when `code` is 2xx). Returns the dialog for 2xx.
    pub fn answer_invite(&self, inc: &Incoming, code: u16, sdp: &str) -> R<Option<Dialog>> {
        let tag = self.fresh("tag");
        self.respond(inc, 100, "Trying", None, None)?;
        self.respond(inc, 180, "Ringing", Some(&tag), None)?;
        if (200..300).contains(&code) {
            self.respond(inc, code, "OK", Some(&tag), Some(sdp))?;
            Ok(Some(self.uas_dialog(inc, &tag)))
        } else {
            self.respond(inc, code, reason_for(code), Some(&tag), None)?;
            Ok(None)
        }
    }

    /// Ring only (100 + 180); returns the to-tag used.
    pub fn ring(&self, inc: &Incoming) -> R<String> {
        let tag = self.fresh("tag");
        self.respond(inc, 100, "Trying", None, None)?;
        self.respond(inc, 180, "Ringing", Some(&tag), None)?;
        Ok(tag)
    }

    pub fn uas_dialog(&self, inc: &Incoming, tag: &str) -> Dialog {
        let r = &inc.msg;
        let (n, _) = r.cseq().unwrap_or((1, String::new()));
        Dialog {
            call_id: r.call_id().unwrap_or("").to_string(),
            local_tag: tag.to_string(),
            remote_tag: r.from_tag().unwrap_or_default(),
            local_uri: msg::uri_of(r.header("to").unwrap_or("")).to_string(),
            remote_uri: msg::uri_of(r.header("from").unwrap_or("")).to_string(),
            remote_target: r.contact_uri().unwrap_or_default(),
            route_set: r.header_values("record-route"),
            local_cseq: 100 + (rand::random::<u32>() % 1000),
            invite_cseq: n,
            transport: inc.transport,
        }
    }

    /// Wait for the ACK of our 2xx in dialog `dlg`.
    pub fn wait_ack(&self, dlg: &Dialog) -> R<Incoming> {
        self.wait_request("ACK", Some(&dlg.call_id))
    }

    /// Handle an incoming CANCEL for a ringing INVITE: 200 to CANCEL, 487 to INVITE.
    pub fn handle_cancel(&self, invite: &Incoming, to_tag: &str) -> R<Incoming> {
        let cid = invite.msg.call_id().map(|s| s.to_string());
        let c = self.wait_request("CANCEL", cid.as_deref())?;
        if c.msg.branch() != invite.msg.branch() {
            return Err("CANCEL branch differs from INVITE branch".into());
        }
        self.respond(&c, 200, "OK", Some(to_tag), None)?;
        self.respond(invite, 487, "Request Terminated", Some(to_tag), None)?;
        Ok(c)
    }
}

/// Add `extra` to `h`; a header already in `h` (same name) gets the extra value instead.
fn with_extra<'a>(h: &mut Vec<(&'a str, String)>, extra: &[(&'a str, String)]) {
    for (n, v) in extra {
        match h.iter().position(|(hn, _)| hn.eq_ignore_ascii_case(n)) {
            Some(p) => h[p].1 = v.clone(),
            None => h.push((n, v.clone())),
        }
    }
}

pub fn reason_for(code: u16) -> &'static str {
    match code {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        480 => "Temporarily Unavailable",
        486 => "Busy Here",
        487 => "Request Terminated",
        603 => "Decline",
        _ => "Whatever",
    }
}

/// Plain RTP/AVP audio SDP.
pub fn sdp(ip: &str, port: u16, version: u32, direction: &str) -> String {
    format!(
        "v=0\r\no=- 4711 {version} IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
m=audio {port} RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\na={direction}\r\n"
    )
}

fn bind_udp(a: SocketAddr) -> R<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s =
        Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).map_err(|e| e.to_string())?;
    // no SO_REUSEADDR: a second UDP socket on the same address must fail loudly
    let _ = s.set_recv_buffer_size(4 << 20);
    s.bind(&a.into())
        .map_err(|e| format!("bind udp {a}: {e}"))?;
    Ok(s.into())
}

fn bind_tcp_listener(a: SocketAddr) -> R<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s =
        Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).map_err(|e| e.to_string())?;
    let _ = s.set_reuse_address(true);
    s.bind(&a.into())
        .map_err(|e| format!("bind tcp {a}: {e}"))?;
    s.listen(16).map_err(|e| e.to_string())?;
    Ok(s.into())
}

/// TCP connection from `local_ip`:ephemeral to `dest` (bind before connect so the
/// source address is the core's address).
pub fn tcp_connect_from(local_ip: std::net::IpAddr, dest: SocketAddr) -> R<TcpStream> {
    use socket2::{Domain, Protocol, Socket, Type};
    assert_loopback(&dest);
    let s =
        Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).map_err(|e| e.to_string())?;
    s.bind(&SocketAddr::new(local_ip, 0).into())
        .map_err(|e| e.to_string())?;
    s.connect_timeout(&dest.into(), Duration::from_secs(2))
        .map_err(|e| format!("tcp connect {dest}: {e}"))?;
    Ok(s.into())
}

fn send_locked(sh: &Arc<Shared>, st: &mut State, o: &Out) -> R<()> {
    assert_loopback(&o.dest);
    match o.transport {
        Transport::Udp => {
            sh.udp
                .send_to(&o.bytes, o.dest)
                .map_err(|e| format!("udp send to {}: {e}", o.dest))?;
        }
        Transport::Tcp => {
            let idx = match o
                .conn
                .and_then(|id| st.conns.iter().position(|c| c.id == id))
            {
                Some(i) => i,
                None => match st.conns.iter().position(|c| c.peer == o.dest) {
                    Some(i) => i,
                    None => {
                        let s = tcp_connect_from(sh.cfg.bind.ip(), o.dest)?;
                        add_conn(sh, st, s)?;
                        st.conns.len() - 1
                    }
                },
            };
            let mut s = &st.conns[idx].stream;
            s.write_all(&o.bytes)
                .map_err(|e| format!("tcp send to {}: {e}", o.dest))?;
        }
    }
    st.log.push(Logged {
        outgoing: true,
        peer: o.dest,
        transport: o.transport,
        bytes: o.bytes.clone(),
        at: Instant::now(),
    });
    Ok(())
}

fn add_conn(sh: &Arc<Shared>, st: &mut State, s: TcpStream) -> R<usize> {
    let peer = s.peer_addr().map_err(|e| e.to_string())?;
    let id = st.next_conn;
    st.next_conn += 1;
    let reader = s.try_clone().map_err(|e| e.to_string())?;
    st.conns.push(Conn {
        id,
        peer,
        stream: s,
    });
    let sh2 = sh.clone();
    let t = std::thread::spawn(move || tcp_reader(sh2, reader, id, peer));
    sh.threads.lock().unwrap().push(t);
    Ok(id)
}

fn udp_loop(sh: Arc<Shared>) {
    let mut buf = vec![0u8; 70_000];
    while !sh.stop.load(Ordering::SeqCst) {
        if let Ok((n, src)) = sh.udp.recv_from(&mut buf) {
            let data = buf[..n].to_vec();
            let mut st = sh.state.lock().unwrap();
            on_data(&sh, &mut st, data, src, Transport::Udp, None);
        }
        let mut st = sh.state.lock().unwrap();
        run_timers(&sh, &mut st);
    }
}

fn accept_loop(sh: Arc<Shared>, l: TcpListener) {
    while !sh.stop.load(Ordering::SeqCst) {
        match l.accept() {
            Ok((s, _)) => {
                let _ = s.set_nonblocking(false);
                let mut st = sh.state.lock().unwrap();
                let _ = add_conn(&sh, &mut st, s);
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

fn tcp_reader(sh: Arc<Shared>, mut s: TcpStream, id: usize, peer: SocketAddr) {
    let _ = s.set_read_timeout(Some(Duration::from_millis(50)));
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 65536];
    while !sh.stop.load(Ordering::SeqCst) {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => break,
        }
        while let Some(len) = msg::stream_frame_len(&buf) {
            let data: Vec<u8> = buf.drain(..len).collect();
            let lead = data
                .iter()
                .take_while(|b| **b == b'\r' || **b == b'\n')
                .count();
            let data = data[lead..].to_vec();
            let mut st = sh.state.lock().unwrap();
            on_data(&sh, &mut st, data, peer, Transport::Tcp, Some(id));
        }
        if buf.len() > 1 << 20 {
            break;
        }
    }
    let mut st = sh.state.lock().unwrap();
    st.conns.retain(|c| c.id != id);
}

fn run_timers(sh: &Arc<Shared>, st: &mut State) {
    let now = Instant::now();
    st.retx.retain(|r| r.deadline > now);
    let due: Vec<usize> = (0..st.retx.len())
        .filter(|i| st.retx[*i].next <= now)
        .collect();
    for i in due {
        let o = Out {
            bytes: st.retx[i].bytes.clone(),
            dest: st.retx[i].dest,
            transport: st.retx[i].transport,
            conn: st.retx[i].conn,
        };
        let _ = send_locked(sh, st, &o);
        let r = &mut st.retx[i];
        r.interval = (r.interval * 2).min(r.cap);
        r.next = now + r.interval;
    }
}

fn on_data(
    sh: &Arc<Shared>,
    st: &mut State,
    data: Vec<u8>,
    src: SocketAddr,
    tr: Transport,
    conn: Option<usize>,
) {
    st.log.push(Logged {
        outgoing: false,
        peer: src,
        transport: tr,
        bytes: data.clone(),
        at: Instant::now(),
    });
    let Some(m) = Msg::parse(&data) else {
        return;
    };
    let branch = m.branch().unwrap_or_default();
    let inc = Incoming {
        msg: m.clone(),
        src,
        transport: tr,
        conn,
    };
    if m.is_response() {
        let method = m.cseq_method().unwrap_or_default();
        let status = m.status();
        let key = (branch.clone(), method.clone());
        if let Some(tx) = st.client_tx.get(&key).cloned() {
            let ck = RetxKey::Client {
                branch: branch.clone(),
                method: method.clone(),
            };
            if method == "INVITE" || status >= 200 {
                st.retx.retain(|r| r.key != ck);
            } else if let Some(r) = st.retx.iter_mut().find(|r| r.key == ck) {
                r.interval = T2;
                r.cap = T2;
            }
            if method == "INVITE" && status >= 300 {
                let ack = Out {
                    bytes: non2xx_ack(&tx.req, &m).to_bytes(),
                    dest: tx.dest,
                    transport: tx.transport,
                    conn: if tr == Transport::Tcp { conn } else { tx.conn },
                };
                let _ = send_locked(sh, st, &ack);
                st.acks_non2xx.insert(branch.clone(), ack);
            }
            if method == "INVITE" && (200..300).contains(&status) {
                let k = (
                    m.call_id().unwrap_or("").to_string(),
                    m.cseq().map(|c| c.0).unwrap_or(0),
                );
                if let Some(a) = st.acks_2xx.get(&k).cloned() {
                    let _ = send_locked(sh, st, &a);
                }
            }
        }
        let dk = (branch, method, status, m.to_tag().unwrap_or_default());
        if !st.seen_resp.insert(dk) {
            return;
        }
    } else {
        let method = m.method().unwrap_or("").to_string();
        if method == "ACK" {
            let k2 = RetxKey::Server2xx {
                call_id: m.call_id().unwrap_or("").to_string(),
                cseq: m.cseq().map(|c| c.0).unwrap_or(0),
            };
            let k3 = RetxKey::ServerNon2xx {
                branch: branch.clone(),
            };
            st.retx.retain(|r| r.key != k2 && r.key != k3);
        } else if st.seen_req.contains(&(branch.clone(), method.clone())) {
            if let Some(o) = st.server_last.get(&(branch, method)).cloned() {
                let _ = send_locked(sh, st, &o);
            }
            return;
        }
        let dk = (branch.clone(), method.clone());
        if !st.seen_req.insert(dk) {
            return;
        }
        if method == "OPTIONS" {
            // answered automatically (e.g. keep-alive pings), not queued
            let o = auto_200(&m, src, tr, conn);
            let _ = send_locked(sh, st, &o);
            st.server_last.insert((branch, method), o);
            return;
        }
    }
    st.queue.push(inc);
    sh.cond.notify_all();
}

/// ACK for a non-2xx final response: same branch, To with tag (RFC 3261 17.1.1.3).
fn non2xx_ack(invite: &Msg, resp: &Msg) -> Msg {
    let mut h: Vec<(&str, String)> = vec![
        ("Via", invite.top_via().unwrap_or_default()),
        ("Max-Forwards", "70".into()),
    ];
    for r in invite.header_values("route") {
        h.push(("Route", r));
    }
    h.push(("From", invite.header("from").unwrap_or("").to_string()));
    h.push(("To", resp.header("to").unwrap_or("").to_string()));
    h.push(("Call-ID", invite.call_id().unwrap_or("").to_string()));
    let n = invite.cseq().map(|c| c.0).unwrap_or(1);
    h.push(("CSeq", format!("{} ACK", n)));
    msg::request("ACK", invite.request_uri().unwrap_or(""), &h, &[])
}

/// 200 OK to an OPTIONS request.
fn auto_200(req: &Msg, src: SocketAddr, tr: Transport, conn: Option<usize>) -> Out {
    let mut h: Vec<(String, String)> = req
        .header_values("via")
        .into_iter()
        .map(|v| ("Via".to_string(), v))
        .collect();
    let mut to = req.header("to").unwrap_or("").to_string();
    if msg::param(&to, "tag").is_none() {
        to.push_str(";tag=opt200");
    }
    h.push(("From".into(), req.header("from").unwrap_or("").into()));
    h.push(("To".into(), to));
    h.push(("Call-ID".into(), req.call_id().unwrap_or("").into()));
    h.push(("CSeq".into(), req.header("cseq").unwrap_or("").into()));
    h.push(("Allow".into(), "INVITE, ACK, CANCEL, BYE, OPTIONS".into()));
    let resp = Msg {
        start: "SIP/2.0 200 OK".into(),
        headers: h,
        body: Vec::new(),
    };
    let dest = match tr {
        Transport::Tcp => src,
        Transport::Udp => req
            .top_via()
            .and_then(|v| msg::via_response_addr(&v))
            .filter(|a| a.ip().is_loopback())
            .unwrap_or(src),
    };
    Out {
        bytes: resp.to_bytes(),
        dest,
        transport: tr,
        conn,
    }
}

/// The connection address and port of the first audio stream of an SDP body (a media-level
/// `c=` overrides the session-level one).
pub fn sdp_media_addr(body: &str) -> R<SocketAddr> {
    let mut session_ip = None;
    let mut media_ip = None;
    let mut port = None;
    let mut in_audio = false;
    let mut before_media = true;
    for line in body.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("m=") {
            before_media = false;
            in_audio = port.is_none() && rest.starts_with("audio ");
            if in_audio {
                port = rest
                    .split_whitespace()
                    .nth(1)
                    .and_then(|p| p.split('/').next())
                    .and_then(|p| p.parse::<u16>().ok());
            }
        } else if let Some(rest) = line.strip_prefix("c=") {
            let ip = rest.split_whitespace().nth(2).map(str::to_string);
            if before_media {
                session_ip = ip;
            } else if in_audio {
                media_ip = ip;
            }
        }
    }
    let (Some(ip), Some(port)) = (media_ip.or(session_ip), port) else {
        return Err(format!("no c=/m=audio in SDP:\n{body}"));
    };
    let ip: std::net::IpAddr = ip.parse().map_err(|e| format!("SDP address {ip}: {e}"))?;
    Ok(SocketAddr::new(ip, port))
}

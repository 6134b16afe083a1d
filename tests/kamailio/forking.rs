//! `forked_early_dialogs`: Kamailio-B forks the INVITE in parallel to two user agents of B's
//! core (RFC 3261 §16.6 parallel forking), each of which answers from its own early dialog
//! (own To tag) with a reliable 183 carrying SDP (RFC 3262: Require: 100rel, RSeq). The caller
//! behind Kamailio-A (a test UA on real sockets) sees one early dialog per fork, PRACKs each
//! 183 and sends an UPDATE in each early dialog; each must reach its own fork (checked at the
//! fork: its To tag, and a RAck naming the RSeq it sent) and get a 200 back in the same early
//! dialog. Fork 1 then answers, the caller ACKs, Kamailio CANCELs fork 2 (which answers 487),
//! and the caller's BYE ends the call. Kamailio's traces show the PRACKs, UPDATEs, ACK and BYE
//! loose-routed by both proxies (so through the route sets the borders echoed and kept per
//! early dialog) and nothing refused for want of a Route.
//!
//! ```text
//!  caller 127.0.71.1 ─► Kamailio-A ─► Palisade A ─► Palisade B ─► Kamailio-B ─┬─► fork 1 127.0.73.1
//!                                                                             └─► fork 2 127.0.73.4
//! ```

use super::*;
use common::msg::Msg;
use common::ua::{sdp, Dialog, Incoming, Transport, Ua, UaConfig, WAIT};

/// The user Kamailio-B forks (any other is relayed to the single callee).
pub const FORK_USER: &str = "forked";
/// Where Kamailio-B sends the two branches.
pub const FORK_ADDRS: [&str; 2] = ["127.0.73.1:5060", "127.0.73.4:5060"];
/// The RSeq each fork starts from: distinct, so a RAck shows which 183 it acknowledges.
const FORK_RSEQ: [u32; 2] = [11, 21];

/// A UA behind a real proxy: it does not record-route as its own core (the proxy does).
fn ua(addr: &str, proxy: &str, user: &str, domain: &str, internal: &str) -> R<Ua> {
    let parse = |a: &str| a.parse().map_err(|e| format!("{a}: {e}"));
    Ua::new(UaConfig {
        bind: parse(addr)?,
        advertise: parse(addr)?,
        proxy: parse(proxy)?,
        force_next_hop: None,
        transport: Transport::Udp,
        user: user.into(),
        domain: domain.into(),
        internal: internal.into(),
        listen_tcp: false,
        own_record_route: false,
    })
}

/// The caller's early dialog that a dialog-creating response `resp` defines (RFC 3261
/// §12.1.2: remote tag and target from it, the route set its Record-Route reversed).
fn early_dialog(base: &Dialog, resp: &Msg) -> R<Dialog> {
    let mut d = base.clone();
    d.remote_tag = resp.to_tag().ok_or("183 without To tag")?;
    d.remote_target = resp.contact_uri().ok_or("183 without Contact")?;
    let mut rr = resp.header_values("record-route");
    rr.reverse();
    d.route_set = rr;
    Ok(d)
}

/// Waits at fork `i` for an in-dialog `method`; if it does not come, says what the other fork
/// got instead (the misrouted request is the interesting part of a failure).
fn wait_at_fork(forks: &[Ua; 2], i: usize, method: &str, call_id: &str) -> R<Incoming> {
    forks[i]
        .wait_request_for(method, Some(call_id), WAIT)
        .map_err(|e| {
            let other: Vec<String> = forks[1 - i]
                .queued()
                .iter()
                .map(|q| {
                    format!(
                        "{} (To tag {:?}, RAck {:?})",
                        q.msg.summary(),
                        q.msg.to_tag(),
                        q.msg.header("rack")
                    )
                })
                .collect();
            format!(
                "fork {}: no {method}: {e}; fork {} has {other:?}",
                i + 1,
                2 - i
            )
        })
}

/// An in-dialog request `method` from the caller in early dialog `i`, checked at fork `i`
/// (its To tag, and for PRACK the RAck naming the fork's own RSeq), answered 200 by the fork
/// and the 200 checked at the caller (same early dialog).
/// The parties of the forked call and what names each fork's early dialog at B.
struct Forked<'a> {
    caller: &'a Ua,
    forks: &'a [Ua; 2],
    fork_tags: &'a [String; 2],
    call_id_b: &'a str,
}

fn in_early_dialog(
    c: &Forked,
    early: &mut [Dialog; 2],
    i: usize,
    method: &str,
    rack: Option<String>,
) -> R<()> {
    let extra: Vec<(&str, String)> = rack.into_iter().map(|r| ("RAck", r)).collect();
    let (caller, forks, fork_tags) = (c.caller, c.forks, c.fork_tags);
    let tx = caller.request_ext(&mut early[i], method, None, &extra)?;
    let got = wait_at_fork(forks, i, method, c.call_id_b)?;
    let n = i + 1;
    ensure(
        got.msg.to_tag().as_deref() == Some(fork_tags[i].as_str()),
        || {
            format!(
                "{method} in early dialog {n} reached fork {n} with To tag {:?}, its tag is {}",
                got.msg.to_tag(),
                fork_tags[i]
            )
        },
    )?;
    if method == "PRACK" {
        let rack = got.msg.header("rack").unwrap_or("").to_string();
        let rseq = rack.split_whitespace().next().unwrap_or("");
        ensure(rseq == FORK_RSEQ[i].to_string(), || {
            format!(
                "PRACK at fork {n} has RAck `{rack}`; fork {n}'s 183 had RSeq {}",
                FORK_RSEQ[i]
            )
        })?;
    }
    let contact = forks[i].contact(Transport::Udp);
    forks[i].respond_ext(&got, 200, "OK", None, None, &[("Contact", contact)])?;
    let ok = caller.wait_final(&tx)?;
    ensure(ok.status() == 200, || {
        format!("{method} in early dialog {n}: caller got {}", ok.start)
    })?;
    ensure(ok.to_tag() == Some(early[i].remote_tag.clone()), || {
        format!(
            "{method} in early dialog {n}: 200 has To tag {:?}, the dialog's is {}",
            ok.to_tag(),
            early[i].remote_tag
        )
    })
}

pub fn forked_early_dialogs(s: &mut Setup) -> R<()> {
    let (from_a, from_b) = (s.kam_a.line_count(), s.kam_b.line_count());
    let caller = ua(
        &format!("{CALLER_IP}:5060"),
        &format!("{KAM_A_IP}:5060"),
        "alice",
        "operator-a.example",
        "operator-a-core.internal",
    )?;
    let forks = [
        ua(
            FORK_ADDRS[0],
            &format!("{KAM_B_IP}:5060"),
            FORK_USER,
            "operator-b.example",
            "operator-b-core.internal",
        )?,
        ua(
            FORK_ADDRS[1],
            &format!("{KAM_B_IP}:5060"),
            FORK_USER,
            "operator-b.example",
            "operator-b-core.internal",
        )?,
    ];
    let target = format!("sip:{FORK_USER}@operator-b.example");
    let (inv_tx, base) = caller.invite_with(
        &target,
        &sdp(CALLER_IP, 40000, 1, "sendrecv"),
        &[("Supported", "100rel".into())],
    )?;

    // Both forks get the INVITE (the same Call-ID: Kamailio forks one transaction).
    let invites = [
        forks[0].wait_request("INVITE", None)?,
        forks[1].wait_request("INVITE", None)?,
    ];
    let call_id_b = invites[0].msg.call_id().unwrap_or("").to_string();
    ensure(invites[1].msg.call_id() == Some(call_id_b.as_str()), || {
        "the two forks got different Call-IDs".into()
    })?;

    // Each fork sends a reliable 183 with SDP from its own early dialog; the caller sees each
    // as an early dialog of its own.
    let fork_tags = [
        format!("fork1-{}", rand::random::<u32>()),
        format!("fork2-{}", rand::random::<u32>()),
    ];
    let mut early = Vec::new();
    let mut caller_rseq = Vec::new();
    for i in 0..2 {
        let ip = FORK_ADDRS[i].split(':').next().unwrap_or("");
        let body = sdp(ip, 41000 + 2 * i as u16, 1, "sendrecv");
        forks[i].respond_ext(
            &invites[i],
            183,
            "Session Progress",
            Some(&fork_tags[i]),
            Some(("application/sdp", &body)),
            &[
                ("Require", "100rel".into()),
                ("RSeq", FORK_RSEQ[i].to_string()),
            ],
        )?;
        let seen: Vec<String> = early
            .iter()
            .map(|d: &Dialog| d.remote_tag.clone())
            .collect();
        let branch = inv_tx.branch.clone();
        let p = caller
            .wait_for(&format!("183 of fork {}", i + 1), WAIT, |q| {
                q.msg.is_response()
                    && q.msg.status() == 183
                    && q.msg.branch().as_deref() == Some(branch.as_str())
                    && q.msg.to_tag().is_some_and(|t| !seen.contains(&t))
            })?
            .msg;
        ensure(
            p.header("require").is_some_and(|r| r.contains("100rel"))
                && p.header("rseq").is_some()
                && p.body_str().contains("m=audio"),
            || {
                format!(
                    "183 of fork {} at the caller is not reliable with SDP: {p:?}",
                    i + 1
                )
            },
        )?;
        caller_rseq.push(p.header("rseq").unwrap_or("").trim().to_string());
        early.push(early_dialog(&base, &p)?);
    }
    let mut early: [Dialog; 2] = early.try_into().map_err(|_| "two early dialogs")?;

    // PRACK each 183 (the second fork's first), then an UPDATE in each early dialog.
    let c = Forked {
        caller: &caller,
        forks: &forks,
        fork_tags: &fork_tags,
        call_id_b: &call_id_b,
    };
    for i in [1, 0] {
        let rack = format!("{} 1 INVITE", caller_rseq[i]);
        in_early_dialog(&c, &mut early, i, "PRACK", Some(rack))?;
    }
    for i in [0, 1] {
        in_early_dialog(&c, &mut early, i, "UPDATE", None)?;
    }

    // Fork 1 answers; the caller ACKs in fork 1's dialog; Kamailio CANCELs fork 2.
    let answer = sdp(
        FORK_ADDRS[0].split(':').next().unwrap_or(""),
        41000,
        2,
        "sendrecv",
    );
    forks[0].respond(&invites[0], 200, "OK", Some(&fork_tags[0]), Some(&answer))?;
    let ok = caller.wait_final(&inv_tx)?;
    ensure(
        ok.status() == 200 && ok.to_tag() == Some(early[0].remote_tag.clone()),
        || {
            format!(
                "the answer at the caller: {} with To tag {:?}, fork 1's early dialog is {}",
                ok.start,
                ok.to_tag(),
                early[0].remote_tag
            )
        },
    )?;
    caller.ack_2xx(&mut early[0], &ok)?;
    let fork1 = forks[0].uas_dialog(&invites[0], &fork_tags[0]);
    let ack = forks[0].wait_ack(&fork1)?;
    ensure(
        ack.msg.to_tag().as_deref() == Some(fork_tags[0].as_str()),
        || format!("ACK at fork 1 with To tag {:?}", ack.msg.to_tag()),
    )?;
    forks[1].handle_cancel(&invites[1], &fork_tags[1])?;

    // The caller hangs up.
    let bye = caller.request(&mut early[0], "BYE", None)?;
    let got = wait_at_fork(&forks, 0, "BYE", &call_id_b)?;
    forks[0].respond(&got, 200, "OK", None, None)?;
    let bye_ok = caller.wait_final(&bye)?;
    ensure(bye_ok.status() == 200, || format!("BYE: {}", bye_ok.start))?;

    // Both Kamailios loose-routed every in-dialog request (so the route sets held), and
    // Kamailio-B saw the 487 of the cancelled fork.
    let call_id_a = base.call_id.clone();
    let end = Instant::now() + LOG_WAIT;
    loop {
        let mut problems = check_forked(
            "kamailio-a",
            &s.kam_a.traces_since(from_a),
            &call_id_a,
            CALLER_IP,
            &[],
        );
        let fork_ips: Vec<&str> = FORK_ADDRS
            .iter()
            .map(|a| a.split(':').next().unwrap_or(""))
            .collect();
        problems.extend(check_forked(
            "kamailio-b",
            &s.kam_b.traces_since(from_b),
            &call_id_b,
            B_HOME_IP,
            &fork_ips,
        ));
        if problems.is_empty() {
            return Ok(());
        }
        if Instant::now() >= end {
            return ensure(false, || {
                format!(
                    "{}\n    (logs in {})",
                    problems.join("\n    "),
                    work_dir().display()
                )
            });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// What one Kamailio must have seen of the forked call `call_id`: the INVITE, two PRACKs, two
/// UPDATEs, the ACK and the BYE relayed from `from` (all but the INVITE by loose routing), a
/// 183 from each of `fork_ips` (at the forking proxy), the 200s, and no request refused for
/// want of a Route.
fn check_forked(
    name: &str,
    traces: &[Trace],
    call_id: &str,
    from: &str,
    fork_ips: &[&str],
) -> Vec<String> {
    let calls = by_call(traces);
    let Some(ts) = calls.get(call_id) else {
        return vec![format!("{name}: nothing logged for Call-ID {call_id}")];
    };
    let count = |kind: &str, method: &str, status: u16, src: &str| {
        ts.iter()
            .filter(|t| {
                t.kind == kind && t.method == method && t.status == status && t.src_ip == src
            })
            .count()
    };
    let mut problems = Vec::new();
    let mut want = |n: usize, kind: &str, method: &str, status: u16, src: &str| {
        if count(kind, method, status, src) < n {
            problems.push(format!(
                "{name}: want {n} `{kind} {method} {status}` from {src}; saw {:?}",
                ts.iter()
                    .map(|t| format!("{} {} {} from {}", t.kind, t.method, t.status, t.src_ip))
                    .collect::<Vec<_>>()
            ));
        }
    };
    want(1, "initial", "INVITE", 0, from);
    for (n, m) in [(2, "PRACK"), (2, "UPDATE"), (1, "ACK"), (1, "BYE")] {
        want(n, "in-dialog", m, 0, from);
    }
    for ip in fork_ips {
        want(1, "reply", "INVITE", 183, ip);
        want(1, "reply", "PRACK", 200, ip);
        want(1, "reply", "UPDATE", 200, ip);
    }
    if let Some(answering) = fork_ips.first() {
        want(1, "reply", "INVITE", 200, answering);
        want(1, "reply", "BYE", 200, answering);
    }
    if let Some(cancelled) = fork_ips.get(1) {
        want(1, "reply", "INVITE", 487, cancelled);
    }
    for t in ts.iter().filter(|t| t.kind == "no-route") {
        problems.push(format!(
            "{name}: in-dialog {} from {} carried no Route to it (404)",
            t.method, t.src_ip
        ));
    }
    problems
}

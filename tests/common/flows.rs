//! Call flows between two test UAs (directly or through the lab). Each step is
//! bounded; errors carry what was awaited.

use super::msg::Msg;
use super::ua::{sdp, ClientTx, Dialog, Incoming, Ua, R};

pub struct Established {
    pub tx: ClientTx,
    pub a: Dialog,
    pub b: Dialog,
    /// The INVITE as the callee saw it.
    pub b_invite: Incoming,
    /// The 200 as the caller saw it.
    pub a_ok: Msg,
}

fn ip(u: &Ua) -> String {
    u.cfg().advertise.ip().to_string()
}

/// INVITE/100/180/200/ACK between caller `a` and callee `b`.
pub fn establish(a: &Ua, b: &Ua, target: &str) -> R<Established> {
    let (tx, mut da) = a.invite(target, &sdp(&ip(a), 40000, 1, "sendrecv"))?;
    let inc = b.wait_request("INVITE", None)?;
    let db = b
        .answer_invite(&inc, 200, &sdp(&ip(b), 50000, 1, "sendrecv"))?
        .ok_or("no dialog")?;
    let ok = a.wait_final(&tx)?;
    if ok.status() != 200 {
        return Err(format!("caller got {} instead of 200", ok.start));
    }
    a.ack_2xx(&mut da, &ok)?;
    b.wait_ack(&db)?;
    Ok(Established {
        tx,
        a: da,
        b: db,
        b_invite: inc,
        a_ok: ok,
    })
}

/// re-INVITE from `from` with `direction`; returns (request seen by `to`, 200 seen by `from`).
pub fn reinvite(
    from: &Ua,
    fd: &mut Dialog,
    to: &Ua,
    td: &Dialog,
    version: u32,
    direction: &str,
) -> R<(Incoming, Msg)> {
    let offer = sdp(&ip(from), 40000, version, direction);
    let tx = from.request(fd, "INVITE", Some(&offer))?;
    let inc = to.wait_request("INVITE", Some(&td.call_id))?;
    let answer_dir = match direction {
        "sendonly" => "recvonly",
        "recvonly" => "sendonly",
        d => d,
    };
    to.respond(
        &inc,
        200,
        "OK",
        Some(&td.local_tag),
        Some(&sdp(&ip(to), 50000, version, answer_dir)),
    )?;
    let ok = from.wait_final(&tx)?;
    if ok.status() != 200 {
        return Err(format!("re-INVITE ({direction}) got {}", ok.start));
    }
    from.ack_2xx(fd, &ok)?;
    to.wait_ack(td)?;
    Ok((inc, ok))
}

/// BYE from `from`; 200 at both ends.
pub fn bye(from: &Ua, fd: &mut Dialog, to: &Ua, td: &Dialog) -> R<()> {
    let tx = from.request(fd, "BYE", None)?;
    let inc = to.wait_request("BYE", Some(&td.call_id))?;
    to.respond(&inc, 200, "OK", None, None)?;
    let r = from.wait_final(&tx)?;
    if r.status() != 200 {
        return Err(format!("BYE answered {}", r.start));
    }
    Ok(())
}

/// Call rejected by `b` with `code`: caller must see `code`; callee must get the ACK.
pub fn rejected(a: &Ua, b: &Ua, target: &str, code: u16) -> R<(Msg, Incoming)> {
    let (tx, _) = a.invite(target, &sdp(&ip(a), 40000, 1, "sendrecv"))?;
    let inc = b.wait_request("INVITE", None)?;
    b.answer_invite(&inc, code, "")?;
    let fin = a.wait_final(&tx)?;
    if fin.status() != code {
        return Err(format!("caller got {} instead of {}", fin.start, code));
    }
    let cid = inc.msg.call_id().map(|s| s.to_string());
    let ack = b.wait_request("ACK", cid.as_deref())?;
    Ok((fin, ack))
}

/// CANCEL before answer: 200 for CANCEL and 487 for INVITE at the caller, CANCEL at the callee.
pub fn cancelled(a: &Ua, b: &Ua, target: &str) -> R<Incoming> {
    let (tx, _) = a.invite(target, &sdp(&ip(a), 40000, 1, "sendrecv"))?;
    let inc = b.wait_request("INVITE", None)?;
    let tag = b.ring(&inc)?;
    let ringing = a.wait_response(&tx, 180)?;
    if ringing.status() != 180 {
        return Err(format!("expected 180 before CANCEL, got {}", ringing.start));
    }
    let ctx = a.cancel(&tx)?;
    let c = b.handle_cancel(&inc, &tag)?;
    let r = a.wait_final(&ctx)?;
    if r.status() != 200 {
        return Err(format!("CANCEL answered {}", r.start));
    }
    let f = a.wait_final(&tx)?;
    if f.status() != 487 {
        return Err(format!("INVITE after CANCEL answered {}", f.start));
    }
    let cid = inc.msg.call_id().map(|s| s.to_string());
    b.wait_request("ACK", cid.as_deref())?;
    Ok(c)
}

/// Full Case-1 call: establish, hold, resume, BYE from caller or callee.
pub fn full_call(a: &Ua, b: &Ua, target: &str, bye_from_caller: bool) -> R<Established> {
    let mut e = establish(a, b, target)?;
    let (held, _) = reinvite(a, &mut e.a, b, &e.b, 2, "sendonly")?;
    if !held.msg.body_str().contains("a=sendonly") {
        return Err(format!(
            "hold re-INVITE lost a=sendonly: {}",
            held.msg.body_str()
        ));
    }
    let (resumed, _) = reinvite(a, &mut e.a, b, &e.b, 3, "sendrecv")?;
    if !resumed.msg.body_str().contains("a=sendrecv") {
        return Err(format!(
            "resume re-INVITE lost a=sendrecv: {}",
            resumed.msg.body_str()
        ));
    }
    if bye_from_caller {
        bye(a, &mut e.a, b, &e.b)?;
    } else {
        let mut bd = e.b.clone();
        bye(b, &mut bd, a, &e.a)?;
        e.b = bd;
    }
    Ok(e)
}

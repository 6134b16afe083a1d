//! Several engines per border, as the service runs them (one per core): every message goes to
//! the shard its Call-ID steers to (`sip::steer`), nothing else connects the shards. Many calls
//! at once, with retransmissions from the cores and a lossy interconnect, CANCELs and requests
//! from the far side: each call must behave exactly as on one engine, which it can only if
//! every retransmission, CANCEL, ACK and in-dialog request reaches the shard owning its dialog
//! (a stray one would start a second call, or get 481).

use super::*;
use crate::b2bua::Shard;
use crate::sip::steer;

const SHARDS: usize = 3;

struct ShardedSim {
    now: Instant,
    /// Per border, its engines; engine `i` is shard `i`.
    borders: [Vec<Border>; 2],
    core: [VecDeque<Vec<u8>>; 2],
    /// Drop every n-th datagram between the borders (0 = lossless).
    lossy: usize,
    sent: usize,
    /// Messages each shard of each border was given.
    handled: [[usize; SHARDS]; 2],
    /// Every status code that reached either core, over the whole run.
    statuses: Vec<u16>,
}

impl ShardedSim {
    fn new() -> ShardedSim {
        ShardedSim::sharing(true)
    }

    /// `share`: the engines of each border share one [`DialogIndex`], as the service's do.
    fn sharing(sharing: bool) -> ShardedSim {
        let engines = |name: &str, seed: u64| -> Vec<Border> {
            let dialogs = crate::b2bua::DialogIndex::new();
            let cfg = lab(name);
            (0..SHARDS)
                .map(|index| {
                    let share = Arc::new(cfg.shard(index, SHARDS));
                    let shard = Shard {
                        index,
                        count: SHARDS,
                    };
                    let router = Box::new(crate::routing::StaticRouter);
                    let mut b = Border::sharded(share, seed * 10 + index as u64, router, shard);
                    if sharing {
                        b.share_dialogs(dialogs.clone());
                    }
                    b
                })
                .collect()
        };
        ShardedSim {
            now: Instant::now(),
            borders: [engines("operator-a.toml", 1), engines("operator-b.toml", 2)],
            core: [VecDeque::new(), VecDeque::new()],
            lossy: 0,
            sent: 0,
            handled: [[0; SHARDS]; 2],
            statuses: Vec::new(),
        }
    }

    fn listener(&self, to: SocketAddr) -> Option<(usize, usize)> {
        for (bi, b) in self.borders.iter().enumerate() {
            for (ri, r) in b[0].config().realms.iter().enumerate() {
                if r.listen.iter().any(|l| l.addr == to) {
                    return Some((bi, ri));
                }
            }
        }
        None
    }

    fn deliver(&mut self, from: SocketAddr, to: SocketAddr, bytes: Vec<u8>) {
        if let Some((bi, realm)) = self.listener(to) {
            let shard = steer::shard_of(&bytes, SHARDS);
            self.handled[bi][shard] += 1;
            let now = self.now;
            self.borders[bi][shard].handle_input(
                now,
                Inbound {
                    realm,
                    transport: Transport::Udp,
                    remote: from,
                    bytes: &bytes,
                    peer: None,
                },
            );
        } else if to == addr(CORE_A) {
            self.core[0].push_back(bytes);
        } else if to == addr(CORE_B) {
            self.core[1].push_back(bytes);
        }
    }

    fn settle(&mut self) {
        for _ in 0..10_000 {
            let mut moved = Vec::new();
            for (bi, engines) in self.borders.iter_mut().enumerate() {
                for b in engines.iter_mut() {
                    while b.poll_media().is_some() {}
                    while let Some(t) = b.poll_transmit() {
                        let from = b.config().realms[t.flow.realm].listen[0].addr;
                        moved.push((bi, from, t.flow.remote, t.bytes));
                    }
                    while b.poll_event().is_some() {}
                }
            }
            if moved.is_empty() {
                return;
            }
            for (_, from, to, bytes) in moved {
                if self.listener(to).is_some() {
                    self.sent += 1;
                    if self.lossy > 0 && self.sent % self.lossy == 0 {
                        continue;
                    }
                }
                self.deliver(from, to, bytes);
            }
        }
        panic!("sharded simulation did not settle");
    }

    fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        for _ in 0..100_000 {
            let next = self
                .borders
                .iter()
                .flatten()
                .filter_map(|b| b.poll_timeout())
                .min()
                .filter(|t| *t <= end);
            let Some(t) = next else { break };
            self.now = t.max(self.now);
            let now = self.now;
            for b in self.borders.iter_mut().flatten() {
                b.handle_timeout(now);
            }
            self.settle();
        }
        self.now = end;
    }

    fn send_from_core(&mut self, side: usize, text: &str) {
        let (from, to) = if side == 0 {
            (addr(CORE_A), addr("127.0.10.2:5060"))
        } else {
            (addr(CORE_B), addr("127.0.40.2:5060"))
        };
        self.deliver(from, to, text.replace('\n', "\r\n").into_bytes());
        self.settle();
    }

    /// Everything that reached a core since the last call, parsed, without 100 Trying.
    fn drain(&mut self, side: usize) -> Vec<Message> {
        let msgs: Vec<Message> = self.core[side]
            .drain(..)
            .map(|b| parse_message(&b, &Limits::default()).expect("border output parses"))
            .filter(|m| m.status() != Some(100))
            .collect();
        self.statuses.extend(msgs.iter().filter_map(|m| m.status()));
        msgs
    }
}

fn is(m: &Message, method: &str) -> bool {
    m.method().is_some_and(|x| x.as_str() == method)
}

/// The first message of each Call-ID (retransmissions and repeated ACKs dropped).
fn per_call(msgs: impl Iterator<Item = Message>) -> Vec<Message> {
    let mut out: Vec<Message> = Vec::new();
    for m in msgs {
        if !out.iter().any(|o| h(o, "Call-ID") == h(&m, "Call-ID")) {
            out.push(m);
        }
    }
    out
}

fn call_invite(n: usize) -> String {
    invite_from_a(&format!("shard-{n}@127.0.10.1"), &format!("z9hG4bKsh{n}"))
        .replace("tag=alicetag1", &format!("tag=alice{n}"))
}

#[test]
fn every_message_of_a_call_reaches_the_shard_that_owns_it() {
    const CALLS: usize = 48;
    let mut sim = ShardedSim::new();
    sim.lossy = 5;
    // All calls start, and each INVITE is retransmitted by A's core as a UDP UAC would.
    for n in 0..CALLS {
        let invite = call_invite(n);
        sim.send_from_core(0, &invite);
        sim.send_from_core(0, &invite);
    }
    sim.advance(Duration::from_secs(2));
    // Border B retransmits each INVITE to B's core (which sends no 100): one call per Call-ID.
    let invites = per_call(sim.drain(1).into_iter().filter(|m| is(m, "INVITE")));
    assert_eq!(
        invites.len(),
        CALLS,
        "each call reached B's core once: retransmissions were absorbed by the shard owning the \
         transaction, none started a second call"
    );
    // B's core rings every call; every third one is cancelled, the others answered (each 200
    // sent twice, as a UAS retransmits it before the ACK).
    let sdp =
        "v=0\no=c 1 1 IN IP4 127.0.40.1\ns=-\nc=IN IP4 127.0.40.1\nt=0 0\nm=audio 5000 RTP/AVP 0\n";
    for (i, inv) in invites.iter().enumerate() {
        let tag = format!("cindy{i}");
        sim.send_from_core(1, &answer(inv, 180, &tag, "sip:cindy@127.0.40.1:5060", ""));
    }
    sim.advance(Duration::from_secs(2));
    sim.drain(0); // the 180s (a few lost on the way: 1xx are not retransmitted)
    let cancelled: Vec<usize> = (0..CALLS).filter(|n| n % 3 == 0).collect();
    for &n in &cancelled {
        let cancel = format!(
            "CANCEL sip:cindy@operator-b.example SIP/2.0\nVia: SIP/2.0/UDP 127.0.10.1:5060;branch=z9hG4bKsh{n}\n\
             Max-Forwards: 70\nFrom: \"Alice\" <sip:alice@operator-a.example>;tag=alice{n}\n\
             To: <sip:cindy@operator-b.example>\nCall-ID: shard-{n}@127.0.10.1\n\
             CSeq: 1 CANCEL\nContent-Length: 0\n\n"
        );
        sim.send_from_core(0, &cancel);
    }
    sim.advance(Duration::from_secs(2));
    let at_b = sim.drain(1);
    let mut answered_b = Vec::new();
    for (i, inv) in invites.iter().enumerate() {
        let tag = format!("cindy{i}");
        let cancel = at_b
            .iter()
            .find(|m| is(m, "CANCEL") && h(m, "Call-ID") == h(inv, "Call-ID"));
        if let Some(c) = cancel {
            sim.send_from_core(1, &answer(c, 200, &tag, "", ""));
            sim.send_from_core(1, &answer(inv, 487, &tag, "", ""));
        } else {
            answered_b.push(h(inv, "Call-ID").to_string());
            let ok = answer(inv, 200, &tag, "sip:cindy@127.0.40.1:5060", sdp);
            sim.send_from_core(1, &ok);
            sim.send_from_core(1, &ok);
        }
    }
    let mut cancels: Vec<&str> = at_b
        .iter()
        .filter(|m| is(m, "CANCEL"))
        .map(|m| h(m, "Call-ID"))
        .collect();
    cancels.sort();
    cancels.dedup();
    assert_eq!(
        cancels.len(),
        cancelled.len(),
        "each CANCEL reached the shard holding its INVITE and crossed"
    );
    sim.advance(Duration::from_secs(2));
    let finals = sim.drain(0);
    let mut answered = Vec::new();
    for n in 0..CALLS {
        let call_id = format!("shard-{n}@127.0.10.1");
        let fin: Vec<&Message> = finals
            .iter()
            .filter(|m| h(m, "Call-ID") == call_id && m.status().is_some_and(|s| s >= 200))
            .filter(|m| h(m, "CSeq").ends_with("INVITE"))
            .collect();
        let want = if n % 3 == 0 { 487 } else { 200 };
        assert!(
            fin.iter().all(|m| m.status() == Some(want)) && !fin.is_empty(),
            "call {n}: {:?}",
            fin.iter().map(|m| m.status()).collect::<Vec<_>>()
        );
        if want == 200 {
            answered.push((n, fin[0].clone()));
        }
    }
    // A acknowledges; B's side sends an in-dialog INFO (its Call-ID is one the owning shard of
    // border B made, so it must steer back there) and then hangs up half of the calls, A the
    // other half.
    for (n, ok) in &answered {
        sim.send_from_core(
            0,
            &in_dialog("ACK", 1, true, ok, &format!("z9hG4bKshack{n}")),
        );
    }
    sim.advance(Duration::from_secs(2));
    // A UAC acknowledges every 200 it receives again (an ACK lost on the interconnect makes
    // border B retransmit its 200, which crosses back).
    let mut at_b = sim.drain(1);
    for round in 0..4 {
        let again: Vec<Message> = sim
            .drain(0)
            .into_iter()
            .filter(|m| m.status() == Some(200))
            .collect();
        for (k, ok) in again.iter().enumerate() {
            sim.send_from_core(
                0,
                &in_dialog("ACK", 1, true, ok, &format!("z9hG4bKre{round}x{k}")),
            );
        }
        sim.advance(Duration::from_secs(2));
        at_b.extend(sim.drain(1));
    }
    // An ACK is sent again for each 200 retransmitted: one dialog per Call-ID.
    // (ACKs of the 487s are the border's own, hop by hop.)
    let acks = per_call(
        at_b.into_iter()
            .filter(|m| is(m, "ACK") && answered_b.iter().any(|c| c == h(m, "Call-ID"))),
    );
    assert_eq!(
        acks.len(),
        answered.len(),
        "every ACK crossed, in the dialog its 200 made"
    );
    for (i, ack) in acks.iter().enumerate() {
        sim.send_from_core(
            1,
            &in_dialog("INFO", 1, false, ack, &format!("z9hG4bKinfo{i}")),
        );
        sim.advance(Duration::from_secs(2));
        let infos = per_call(sim.drain(0).into_iter().filter(|m| is(m, "INFO")));
        assert_eq!(
            infos.len(),
            1,
            "B's request reached the shard owning the dialog, once"
        );
        sim.send_from_core(0, &answer(&infos[0], 200, "", "", ""));
        // Half of the calls are hung up by B, the others by A.
        let bye = if i % 2 == 0 {
            (
                1,
                in_dialog("BYE", 2, false, ack, &format!("z9hG4bKbyeb{i}")),
            )
        } else {
            let ok_a = &answered
                .iter()
                .find(|(_, m)| h(m, "Call-ID") == h(&infos[0], "Call-ID"))
                .expect("the INFO names a call A's core knows")
                .1;
            (
                0,
                in_dialog("BYE", 2, true, ok_a, &format!("z9hG4bKbyea{i}")),
            )
        };
        sim.send_from_core(bye.0, &bye.1);
    }
    sim.advance(Duration::from_secs(2));
    for side in 0..2 {
        let byes: Vec<Message> = sim
            .drain(side)
            .into_iter()
            .filter(|m| is(m, "BYE"))
            .collect();
        for bye in &byes {
            sim.send_from_core(side, &answer(bye, 200, "", "", ""));
        }
    }
    sim.advance(Duration::from_secs(64));
    sim.drain(0);
    sim.drain(1);
    assert!(
        !sim.statuses.contains(&481),
        "no request reached a shard without its dialog"
    );
    for (bi, engines) in sim.borders.iter().enumerate() {
        for (si, b) in engines.iter().enumerate() {
            assert_eq!(
                b.held_state(),
                (0, 0, 0, 0),
                "border {bi} shard {si} freed everything"
            );
            assert!(
                sim.handled[bi][si] > 0,
                "border {bi} shard {si} carried calls"
            );
        }
    }
}

/// A `Replaces` naming a call another shard owns (the new INVITE steers by its own Call-ID):
/// translated through the shards' shared dialog index on both borders, as on one engine. Alice
/// at A is in a call with Cindy; Bob at A takes it over with a Replaces naming Alice's dialog,
/// his INVITE's Call-ID chosen to steer elsewhere; Cindy's core gets Bob's INVITE with a
/// Replaces naming her own dialog. Without the index each border answers 481.
#[test]
fn a_replaces_naming_another_shards_call_is_translated() {
    for sharing in [true, false] {
        let mut sim = ShardedSim::sharing(sharing);
        sim.send_from_core(0, &call_invite(0));
        let inv_b = sim.drain(1).into_iter().find(|m| is(m, "INVITE")).unwrap();
        let sdp = "v=0\no=c 1 1 IN IP4 127.0.40.1\ns=-\nc=IN IP4 127.0.40.1\nt=0 0\nm=audio 5000 RTP/AVP 0\n";
        let ok = answer(&inv_b, 200, "cindy0", "sip:cindy@127.0.40.1:5060", sdp);
        sim.send_from_core(1, &ok);
        let ok_a = sim
            .drain(0)
            .into_iter()
            .find(|m| m.status() == Some(200))
            .unwrap();
        sim.send_from_core(0, &in_dialog("ACK", 1, true, &ok_a, "z9hG4bKrack"));
        sim.drain(1);
        let owner = steer::shard_of_call_id(b"shard-0@127.0.10.1", SHARDS);
        let cid = (0..)
            .map(|i| format!("bob{i}@127.0.10.1"))
            .find(|c| steer::shard_of_call_id(c.as_bytes(), SHARDS) != owner)
            .unwrap();
        let a_tag = tag_of(ok_a.headers.get("To")).unwrap();
        let replaces = format!("shard-0@127.0.10.1;to-tag={a_tag};from-tag=alice0");
        let bob = invite_from_a(&cid, "z9hG4bKbobx")
            .replace("tag=alicetag1", "tag=bobtag")
            .replace(
                "Supported: timer",
                &format!("Supported: timer\nReplaces: {replaces}"),
            );
        sim.send_from_core(0, &bob);
        let at_a = sim.drain(0);
        let at_b = sim.drain(1);
        if !sharing {
            assert!(at_a.iter().any(|m| m.status() == Some(481)), "{at_a:?}");
            assert!(at_b.is_empty());
            continue;
        }
        assert!(
            !at_a.iter().any(|m| m.status().is_some_and(|s| s >= 300)),
            "{at_a:?}"
        );
        let got = at_b
            .iter()
            .find(|m| is(m, "INVITE"))
            .expect("Bob's INVITE reached B's core");
        let r = crate::sip::Replaces::parse(h(got, "Replaces")).expect("translated");
        assert_eq!(
            (r.call_id.as_str(), r.to_tag.as_str(), r.from_tag.as_str()),
            (
                h(&inv_b, "Call-ID"),
                "cindy0",
                tag_of(inv_b.headers.get("From")).unwrap().as_str()
            ),
            "the Replaces names Cindy's own dialog"
        );
    }
}

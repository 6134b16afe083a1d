//! Early dialogs of a forked INVITE (RFC 3261 §12.1, §13.2.2.4) and the reliable provisional
//! numbering between the legs (RFC 3262).
//!
//! Each branch that answers with a tagged provisional is an early dialog of its own, on both
//! legs: on leg B its To tag, remote target, route set and CSeq; on leg A a tag of the border's
//! own, so the caller sees one early dialog per branch; between them, its RSeq mapping. The legs
//! hold the early dialog a message was last about; the others wait in [`Forks`] and are swapped
//! in by [`Session::select_for`] when a message names one of them. When a 2xx picks the dialog,
//! the other early dialogs are dropped.

use super::call::{Call, Phase};
use super::session::{Leg, Session};
use super::{tag_of, Border};
use crate::sip::{Message, Uri};

/// RSeq of a reliable provisional on one leg ↔ the one received on the other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RseqMap {
    pub side: usize,
    pub ours: u32,
    pub theirs: u32,
    pub their_cseq: u32,
}

/// The RSeq mappings of one dialog pair, and the next RSeq the border uses on each leg.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Rseqs {
    pub maps: Vec<RseqMap>,
    pub next: [u32; 2],
}

impl Rseqs {
    pub fn heap_bytes(&self) -> usize {
        self.maps.capacity() * std::mem::size_of::<RseqMap>()
    }

    /// RFC 3262: a PRACK received on `side` names the reliable provisional by the RSeq the
    /// border gave it on that leg; the PRACK relayed names the one the far side gave.
    pub fn map_rack(&self, side: usize, rack: &crate::sip::RAck) -> Option<crate::sip::RAck> {
        self.maps
            .iter()
            .find(|m| m.side == side && m.ours == rack.rseq)
            .map(|m| crate::sip::RAck {
                rseq: m.theirs,
                cseq: m.their_cseq,
                method: rack.method.clone(),
            })
    }
}

impl Rseqs {
    /// The RSeq the border gives on `side` to the reliable provisional the other leg numbered
    /// `theirs` (in the INVITE of CSeq `their_cseq`): the same one for its retransmissions.
    pub fn ours_for(&mut self, side: usize, theirs: u32, their_cseq: u32) -> u32 {
        let known = self
            .maps
            .iter()
            .find(|m| m.side == side && m.theirs == theirs && m.their_cseq == their_cseq);
        if let Some(m) = known {
            return m.ours;
        }
        let ours = self.next[side];
        self.next[side] += 1;
        self.maps.push(RseqMap {
            side,
            ours,
            theirs,
            their_cseq,
        });
        ours
    }
}

impl Default for Rseqs {
    fn default() -> Self {
        Rseqs {
            maps: Vec::new(),
            next: [1, 1],
        }
    }
}

/// What differs between the early dialogs of one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Fork {
    /// The border's tag on leg A for this early dialog.
    pub a_tag: String,
    pub a_remote_cseq: Option<u32>,
    /// The branch's tag, target, route set and CSeq on leg B.
    pub b_tag: Option<String>,
    pub b_target: Option<Uri>,
    pub b_route_set: Vec<String>,
    pub b_remote_cseq: Option<u32>,
    pub rseq: Rseqs,
}

impl Fork {
    fn take(legs: &mut [Leg; 2], rseq: &mut Rseqs) -> Fork {
        Fork {
            a_tag: std::mem::take(&mut legs[0].local_tag),
            a_remote_cseq: legs[0].remote_cseq,
            b_tag: legs[1].remote_tag.take(),
            b_target: legs[1].remote_target.take(),
            b_route_set: std::mem::take(&mut legs[1].route_set),
            b_remote_cseq: legs[1].remote_cseq,
            rseq: std::mem::take(rseq),
        }
    }

    fn put(self, legs: &mut [Leg; 2], rseq: &mut Rseqs) {
        legs[0].local_tag = self.a_tag;
        legs[0].remote_cseq = self.a_remote_cseq;
        legs[1].remote_tag = self.b_tag;
        legs[1].remote_target = self.b_target;
        legs[1].route_set = self.b_route_set;
        legs[1].remote_cseq = self.b_remote_cseq;
        *rseq = self.rseq;
    }

    fn has_tag(&self, side: usize, tag: &str) -> bool {
        match side {
            0 => self.a_tag == tag,
            _ => self.b_tag.as_deref() == Some(tag),
        }
    }
}

/// The early dialogs the legs do not hold right now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Forks {
    waiting: Vec<Fork>,
}

impl Forks {
    /// Heap bytes of the waiting early dialogs (`Border::held_bytes`).
    pub fn heap_bytes(&self) -> usize {
        let strings = |v: &[String]| v.iter().map(String::capacity).sum::<usize>();
        self.waiting.capacity() * std::mem::size_of::<Fork>()
            + self
                .waiting
                .iter()
                .map(|f| {
                    f.a_tag.capacity()
                        + f.b_tag.as_ref().map_or(0, String::capacity)
                        + f.b_target.as_ref().map_or(0, Uri::heap_bytes)
                        + f.b_route_set.capacity() * std::mem::size_of::<String>()
                        + strings(&f.b_route_set)
                        + f.rseq.heap_bytes()
                })
                .sum::<usize>()
    }

    /// Drops the waiting early dialogs (a final answer decided the call), returning the leg A
    /// tags that named them, for the dialog index.
    pub fn drop_all(&mut self) -> Vec<String> {
        self.waiting.drain(..).map(|f| f.a_tag).collect()
    }
}

/// The tag that names a dialog of `side` in `msg`: the border's own tag on leg A, the far
/// branch's on leg B, read from To or From by who sent the message.
fn dialog_tag(side: usize, msg: &Message) -> Option<String> {
    let request = msg.status().is_none();
    // Leg A: the caller is remote, so the border's tag is in To of what the caller sends and in
    // From of responses to what the border sent. Leg B: the branch's tag is the other way round.
    let header = match (side, request) {
        (0, true) | (1, false) => "To",
        _ => "From",
    };
    tag_of(msg.headers.get(header))
}

impl Session {
    /// Makes the early dialog that `msg`, received on (or answering on) `side`, belongs to the
    /// one the legs hold. Returns false when the message names an early dialog this session
    /// does not have (the legs are left as they were).
    pub fn select_for(&mut self, side: usize, msg: &Message) -> bool {
        let Some(tag) = dialog_tag(side, msg) else {
            return true;
        };
        let held = match side {
            0 => self.legs[0].local_tag == tag,
            _ => self.legs[1].remote_tag.as_deref().is_none_or(|t| t == tag),
        };
        held || self
            .usage
            .call_mut()
            .is_some_and(|c| c.select(&mut self.legs, side, &tag))
    }

    /// A response to the initial request from a branch with no early dialog yet, while the
    /// legs hold another's: a new early dialog, known to the caller by `a_tag`. Its target and
    /// route set are then read from the response like any other's.
    pub fn add_fork(&mut self, a_tag: String, b_tag: String) {
        // The caller numbers each early dialog from its INVITE on.
        let a_cseq = super::cseq_of(&self.initial).map(|c| c.seq);
        if let Some(c) = self.usage.call_mut() {
            c.add_fork(&mut self.legs, a_tag, a_cseq, b_tag);
        }
    }
}

impl Call {
    /// Swaps the waiting early dialog that `tag` names on `side` into the legs.
    fn select(&mut self, legs: &mut [Leg; 2], side: usize, tag: &str) -> bool {
        // Fields, not accessors: the early state and the RSeq numbering are borrowed apart.
        let Phase::Early(early) = &mut self.phase else {
            return false;
        };
        let Some(i) = early
            .forks
            .waiting
            .iter()
            .position(|f| f.has_tag(side, tag))
        else {
            return false;
        };
        let next = early.forks.waiting.swap_remove(i);
        let current = Fork::take(legs, &mut self.rseq);
        early.forks.waiting.push(current);
        next.put(legs, &mut self.rseq);
        true
    }

    fn add_fork(&mut self, legs: &mut [Leg; 2], a_tag: String, a_cseq: Option<u32>, b_tag: String) {
        let Phase::Early(early) = &mut self.phase else {
            return;
        };
        early.forks.waiting.push(Fork::take(legs, &mut self.rseq));
        Fork {
            a_tag,
            a_remote_cseq: a_cseq,
            b_tag: Some(b_tag),
            b_target: None,
            b_route_set: Vec::new(),
            b_remote_cseq: None,
            rseq: Rseqs::default(),
        }
        .put(legs, &mut self.rseq);
    }
}

impl Border {
    /// The early phase of a session is over (answered, failed, cancelled): the early dialogs
    /// it did not keep are forgotten, and so are the tags the caller knew them by.
    pub(super) fn leave_early(&mut self, sid: u64) {
        let Some(sess) = self.sessions.get_mut(&sid) else {
            return;
        };
        let Some(early) = sess.usage.early_mut() else {
            return;
        };
        let call_id = &sess.legs[0].call_id;
        for tag in early.forks.drop_all() {
            self.dialogs.remove(&(call_id.clone(), tag));
        }
    }
}

//! The calls set up over ng: per Call-ID, the realms of its two sides, the tags that name them
//! and its anchored media ([`CallMedia`], the B2BUA's own per-call media state). Side 0 is the
//! first offerer's (its `from-tag`), side 1 the answerer's (`to-tag` of the answer).

use std::collections::{HashMap, HashSet};

use crate::b2bua::media::{AnchorError, Anchoring, CallMedia, LegRealm};
use crate::media::FlowId;

struct NgCall {
    legs: [LegRealm; 2],
    /// The offerer's tag, and the answerer's once an answer named it.
    tags: [String; 2],
    media: CallMedia,
}

impl NgCall {
    /// The side whose tag this is.
    fn side_of(&self, tag: &str) -> Option<usize> {
        self.tags.iter().position(|t| !t.is_empty() && t == tag)
    }
}

pub(super) struct Calls {
    max: usize,
    map: HashMap<String, NgCall>,
}

fn anchor_error(e: AnchorError) -> String {
    match e {
        AnchorError::BadSdp(why) => format!("bad SDP: {why}"),
        AnchorError::NoPorts => "no relay ports left".to_string(),
    }
}

impl Calls {
    pub(super) fn new(max: usize) -> Calls {
        Calls {
            max,
            map: HashMap::new(),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.map.len()
    }

    /// An offer from the side tagged `from_tag`: a new call on `legs`, or a re-offer by either
    /// side of an existing one (then `legs` is not used: a call keeps its realms). Returns the
    /// SDP for the other side.
    pub(super) fn offer(
        &mut self,
        anchoring: &mut Anchoring,
        call_id: &str,
        from_tag: &str,
        legs: [LegRealm; 2],
        sdp: &[u8],
    ) -> Result<Vec<u8>, String> {
        if let Some(call) = self.map.get_mut(call_id) {
            let from = call
                .side_of(from_tag)
                .ok_or("from-tag does not belong to this call")?;
            return anchoring
                .anchor(&mut call.media, call.legs, from, sdp)
                .map_err(anchor_error);
        }
        if self.map.len() >= self.max {
            return Err(format!("call limit reached ({} ng calls)", self.max));
        }
        let mut media = CallMedia::default();
        match anchoring.anchor(&mut media, legs, 0, sdp) {
            Ok(body) => {
                self.map.insert(
                    call_id.to_string(),
                    NgCall {
                        legs,
                        tags: [from_tag.to_string(), String::new()],
                        media,
                    },
                );
                Ok(body)
            }
            Err(e) => {
                // Streams anchored before the one that failed give their ports back.
                anchoring.release(&mut media, legs);
                Err(anchor_error(e))
            }
        }
    }

    /// The answer to the last offer: `from_tag` is the offerer's, `to_tag` the answerer's. The
    /// streams' gates open (media flows from now on). Returns the SDP for the offerer.
    pub(super) fn answer(
        &mut self,
        anchoring: &mut Anchoring,
        call_id: &str,
        from_tag: &str,
        to_tag: &str,
        sdp: &[u8],
    ) -> Result<Vec<u8>, String> {
        let call = self.map.get_mut(call_id).ok_or("Unknown call-id")?;
        let offerer = call
            .side_of(from_tag)
            .ok_or("from-tag does not belong to this call")?;
        let from = 1 - offerer;
        if offerer == 0 {
            // A forked offer's answer, or the first: the answering branch's tag names side 1.
            call.tags[1] = to_tag.to_string();
        }
        let body = anchoring
            .anchor(&mut call.media, call.legs, from, sdp)
            .map_err(anchor_error)?;
        anchoring.open_gates(&mut call.media);
        Ok(body)
    }

    /// Ends a call (both sides) and gives its ports back. `from_tag`, when given, must be one
    /// of the call's.
    pub(super) fn delete(
        &mut self,
        anchoring: &mut Anchoring,
        call_id: &str,
        from_tag: Option<&str>,
    ) -> Result<(), String> {
        let call = self.map.get(call_id).ok_or("Unknown call-id")?;
        if let Some(tag) = from_tag {
            if call.side_of(tag).is_none() {
                return Err("from-tag does not belong to this call".to_string());
            }
        }
        if let Some(mut call) = self.map.remove(call_id) {
            anchoring.release(&mut call.media, call.legs);
        }
        Ok(())
    }

    /// Deletes every call with media all of whose flows are in `idle`.
    pub(super) fn reap_idle(&mut self, anchoring: &mut Anchoring, idle: &HashSet<FlowId>) -> usize {
        let dead: Vec<String> = self
            .map
            .iter()
            .filter(|(_, c)| !c.media.is_empty() && c.media.flows().all(|f| idle.contains(&f)))
            .map(|(id, _)| id.clone())
            .collect();
        for id in &dead {
            if let Some(mut call) = self.map.remove(id) {
                anchoring.release(&mut call.media, call.legs);
            }
        }
        dead.len()
    }
}

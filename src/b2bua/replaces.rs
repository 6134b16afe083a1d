//! `Replaces` (RFC 3891) and `Join` (RFC 3911) across the border, on an INVITE and embedded in a
//! REFER's `Refer-To` (`?Replaces=`): they name a dialog by its Call-ID and tags, which differ per
//! leg, so the value received on one leg is translated to the identifiers of the same session's
//! other leg, and a value naming no dialog of this border never crosses.
//!
//! The sender writes the dialog as its recipient will match it (RFC 3891 §3: `to-tag` is the
//! recipient's local tag, `from-tag` its remote one). On the leg it arrives on, the party across
//! the border is stood for by this border, so `to-tag` is our local tag there and `from-tag` the
//! sender's side's tag; on the other leg the roles turn: `to-tag` becomes that leg's remote tag
//! and `from-tag` our local tag. The same rule holds whichever side set the dialog up.
//!
//! A dialog-info document (RFC 4235) names dialogs the same way, from its notifier's side
//! (`local-tag` the notifier's, `remote-tag` its peer's): [`Border::dialog_view`] gives the
//! destination's leg of the same call, with the border as the notifier there.

#[allow(unused_imports)]
use super::*;

use super::dialog_index::{Facing, Named, NamedLeg};
use crate::b2bua::hiding::DialogIds;
use crate::sip::Replaces;

/// Why a dialog reference cannot cross.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RefError {
    /// Malformed, or both `Replaces` and `Join` on one request (RFC 3911 §4): 400.
    Malformed,
    /// It names no dialog this border holds with the sender, or the dialog's other leg is not
    /// toward where the request goes (its identifiers would mean nothing there, and would be
    /// another party's).
    Unknown,
    /// The destination's `headers.allow` does not name it (403): dropping it would turn a
    /// takeover or a join into a plain new call to a party already in the call.
    NotAllowed,
}

/// The dialog-naming headers of an INVITE that are translated (both are never copied, see
/// `hiding::NEVER_CROSS`).
pub(super) const DIALOG_REFS: [&str; 2] = ["Replaces", "Join"];

impl Border {
    /// Who `party` is, by name: what another shard can compare ([`Facing`]).
    fn facing(&self, party: Party) -> Facing {
        match party {
            Party::Core => Facing::Core,
            Party::Peer(id) => Facing::Peer(self.partners.name(id)),
        }
    }

    fn named_of(&self, leg: &Leg) -> NamedLeg {
        NamedLeg {
            realm: leg.realm,
            faces: self.facing(leg.party),
            call_id: leg.call_id.clone(),
            local_tag: leg.local_tag.clone(),
            remote_tag: leg.remote_tag.clone(),
        }
    }

    fn faces(&self, leg: &NamedLeg, end: (usize, Party)) -> bool {
        leg.realm == end.0 && leg.faces == self.facing(end.1)
    }

    /// Tells the other shards of an answered call's dialogs (see [`DialogIndex`]).
    pub(super) fn publish_dialogs(&self, sess: &Session) {
        if let Some(index) = &self.dialog_index {
            index.publish([self.named_of(&sess.legs[0]), self.named_of(&sess.legs[1])]);
        }
    }

    /// Withdraws a session's dialogs from the shared index when it ends.
    pub(super) fn withdraw_dialogs(&self, legs: &[Leg]) {
        if let Some(index) = &self.dialog_index {
            for l in legs {
                index.withdraw(&l.call_id, &l.local_tag);
            }
        }
    }

    /// The leg whose dialog on the border's side is (`call_id`, `local_tag`), with its
    /// session's other leg: from this engine's table (`live`: only while the session has not
    /// ended), else from the shards' shared index (answered calls until they end).
    fn named(&self, call_id: &str, local_tag: &str, live: bool) -> Option<Named> {
        let key = (call_id.to_string(), local_tag.to_string());
        if let Some(&(sid, side)) = self.dialogs.get(&key) {
            let sess = self.sessions.get(&sid)?;
            return (!live || !sess.usage.is_ended()).then(|| Named {
                leg: self.named_of(&sess.legs[side]),
                other: self.named_of(&sess.legs[1 - side]),
            });
        }
        self.dialog_index.as_ref()?.get(call_id, local_tag)
    }

    /// The leg of a live session that `r` names as the party `from` (realm, party) knows it.
    fn named_leg(&self, r: &Replaces, from: (usize, Party)) -> Option<Named> {
        let n = self.named(&r.call_id, &r.to_tag, true)?;
        let theirs = self.faces(&n.leg, from);
        (theirs && n.leg.remote_tag.as_deref() == Some(r.from_tag.as_str())).then_some(n)
    }

    /// `r` as received from `from`, written with the identifiers of the same session's other leg,
    /// which must face `to`. `early-only` is kept (the recipient decides, RFC 3891 §3); other
    /// parameters are the sender's and stay on its side.
    pub(super) fn translate_ref(
        &self,
        r: &Replaces,
        from: (usize, Party),
        to: (usize, Party),
    ) -> Result<Replaces, RefError> {
        let Named { other, .. } = self.named_leg(r, from).ok_or(RefError::Unknown)?;
        if !self.faces(&other, to) {
            return Err(RefError::Unknown);
        }
        // An early dialog whose far leg has no tag yet has no name there.
        let remote = other.remote_tag.ok_or(RefError::Unknown)?;
        Ok(Replaces {
            call_id: other.call_id,
            to_tag: remote,
            from_tag: other.local_tag,
            early_only: r.early_only,
            params: Default::default(),
        })
    }

    /// Checks the `Replaces`/`Join` of a new INVITE from `from` before it is routed: each names a
    /// dialog this border holds with the sender (RFC 3891 §3: 481 otherwise; where it goes is
    /// checked when the other leg is known, [`Border::dialog_refs_for`]).
    pub(super) fn check_dialog_refs(
        &self,
        msg: &Message,
        from: (usize, Party),
    ) -> Result<(), RefError> {
        let refs = Self::dialog_refs(msg)?;
        for (_, r) in &refs {
            self.named_leg(r, from).ok_or(RefError::Unknown)?;
        }
        Ok(())
    }

    /// The translated `Replaces`/`Join` headers (name, value) of an initial INVITE from `from`
    /// going to `to`.
    pub(super) fn dialog_refs_for(
        &self,
        msg: &Message,
        from: (usize, Party),
        to: (usize, Party),
    ) -> Result<Vec<(&'static str, String)>, RefError> {
        let allow = &self.party_headers(to.0, to.1).allow;
        Self::dialog_refs(msg)?
            .into_iter()
            .map(|(name, r)| {
                if !allow.iter().any(|a| a.eq_ignore_ascii_case(name)) {
                    return Err(RefError::NotAllowed);
                }
                Ok((name, self.translate_ref(&r, from, to)?.to_string()))
            })
            .collect()
    }

    fn dialog_refs(msg: &Message) -> Result<Vec<(&'static str, Replaces)>, RefError> {
        let mut refs = Vec::new();
        for name in DIALOG_REFS {
            if msg.headers.get(name).is_none() {
                continue;
            }
            let parsed = match name {
                "Replaces" => msg.headers.replaces(),
                _ => msg.headers.join(),
            };
            refs.push((name, parsed.ok_or(RefError::Malformed)?));
        }
        if refs.len() > 1 {
            return Err(RefError::Malformed);
        }
        Ok(refs)
    }

    /// The `Refer-To` of a REFER built for the leg facing `to` (`built`, already screened),
    /// with the `Replaces` that `src` (received from `from`) embeds translated. `None` when there
    /// is nothing to translate.
    ///
    /// A Replaces naming no dialog of this border refuses the REFER ([`RefError::Unknown`], sent
    /// as 403) rather than dropping the parameter: without it the referee would place a plain
    /// new call to the target, which rings a party that is already in the call meant to be
    /// replaced. The transferor, told at once, can fall back to a blind transfer.
    pub(super) fn refer_to_for(
        &self,
        src: &Message,
        built: &Message,
        from: (usize, Party),
        to: (usize, Party),
    ) -> Result<Option<String>, RefError> {
        if src.headers.get("Refer-To").is_none() {
            return Ok(None);
        }
        let received = src.headers.refer_to().ok_or(RefError::Malformed)?;
        let Some(r) = received.replaces else {
            return Ok(None);
        };
        let mapped = self.translate_ref(&r, from, to)?;
        // Not allowed toward `to` at all: nothing was copied, nothing is added.
        let Some(mut out) = built.headers.refer_to() else {
            return Ok(None);
        };
        out.replaces = Some(mapped);
        Ok(Some(out.to_string()))
    }
}

impl Border {
    /// A dialog that a dialog-info body from `from` names (see [`DialogIds`]), as the party `to`
    /// knows the same call: the dialog is one of this border's legs toward `from` (our tag as
    /// `remote-tag`, the sender's side's as `local-tag`) whose other leg faces `to`; there the
    /// border stands for the notifier, so `local-tag` is our tag and `remote-tag` the far
    /// party's. `current` is a session taken out of the table while its message is built.
    pub(super) fn dialog_view(
        &self,
        current: Option<&Session>,
        from: (usize, Party),
        to: (usize, Party),
        d: &DialogIds,
    ) -> Option<DialogIds> {
        let names = |l: &Leg| l.call_id == d.call_id && l.local_tag == d.remote_tag;
        let n = match current.and_then(|s| s.legs.iter().position(names).map(|i| (s, i))) {
            Some((s, side)) => Named {
                leg: self.named_of(&s.legs[side]),
                other: self.named_of(&s.legs[1 - side]),
            },
            // A dialog-info document also reports dialogs that just ended.
            None => self.named(&d.call_id, &d.remote_tag, false)?,
        };
        let (leg, other) = (n.leg, n.other);
        if !self.faces(&leg, from) || leg.remote_tag.as_deref() != Some(d.local_tag.as_str()) {
            return None;
        }
        if !self.faces(&other, to) {
            return None;
        }
        Some(DialogIds {
            call_id: other.call_id,
            local_tag: other.local_tag,
            remote_tag: other.remote_tag?,
        })
    }

    /// Answers a request whose dialog reference cannot cross (`refer`: the reference is a
    /// Refer-To's embedded Replaces, see [`Border::refer_to_for`]).
    pub(super) fn refuse_ref(
        &mut self,
        now: Instant,
        stx: ServerTxId,
        msg: &Message,
        e: RefError,
        refer: bool,
    ) {
        let why = RejectReason::DialogReference;
        self.reject(now, stx, msg, e.status(refer), None, why);
    }
}

impl RefError {
    /// The status that answers a request carrying this reference (`refer`: on a REFER's
    /// Refer-To, see [`Border::refer_to_for`]).
    fn status(self, refer: bool) -> u16 {
        match (self, refer) {
            (RefError::Malformed, _) => 400,
            (RefError::Unknown, false) => 481,
            (RefError::Unknown, true) | (RefError::NotAllowed, _) => 403,
        }
    }
}

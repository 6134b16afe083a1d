//! Calls as plain, versioned data: what a standby engine needs to carry an established call on
//! (RFC 3261 dialog state of both legs, the hiding identities each leg uses, the anchored
//! streams), with every deadline as a duration relative to the moment of the snapshot, never
//! an `Instant` (which means nothing in another process).
//!
//! Only settled calls are exported: confirmed, with no ACK awaited and no BYE crossing. The
//! state of a call being set up or torn down lives in its transactions (retransmission timers,
//! the caller's INVITE), which do not survive a move; such a call is left to finish where it is.
//! Latched media addresses belong to the TrGW: a restored stream starts at the addresses the SDP
//! named and latches afresh on its first packet (symmetric RTP), as it did at set-up.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::call::Call;
use super::fork::Rseqs;
use super::media::{LegRealm, SlotSnapshot};
use super::session::{Leg, Session, Usage};
use super::subscription::{Refer, Refers, Subscription};
use super::{Border, Party, SessTimer};
use crate::config::Transport;
use crate::sip::{parse_message, Uri};
use crate::transaction::Flow;

/// The snapshot format this engine writes. Version 2 added `refers`; version 1 snapshots are
/// still read (as calls with no REFER in flight).
pub const SNAPSHOT_VERSION: u32 = 2;

/// One established call (or subscription dialog), both legs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallSnapshot {
    pub version: u32,
    /// `invite` or `subscribe`.
    pub kind: String,
    /// Leg 0 faces the caller, leg 1 the callee.
    pub legs: [LegSnapshot; 2],
    /// The request that created the call, as received on leg 0 (the source of what the border
    /// sends of its own, e.g. the BYE of a teardown).
    pub initial: String,
    pub icid: String,
    /// Time since the answer and since the last request, at the snapshot.
    pub answered_ago: Duration,
    pub idle_for: Duration,
    /// The next RSeq the border uses on each leg (RFC 3262, re-INVITEs).
    pub next_rseq: [u32; 2],
    pub media: Vec<SlotSnapshot>,
    /// REFERs relayed in the dialogs whose NOTIFYs may still come (their ids differ per leg).
    #[serde(default)]
    pub refers: Vec<ReferSnapshot>,
}

/// A REFER relayed across: the leg (0 or 1) it was sent on, its CSeq there and its CSeq on the
/// leg it came from (RFC 3515 §2.4.6 `Event: refer;id=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReferSnapshot {
    pub sent_on: usize,
    pub sent_cseq: u32,
    pub received_cseq: u32,
}

/// Who a leg faces, by name (indices of a configuration mean nothing to another engine).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PartySnapshot {
    Core,
    Peer(String),
}

/// One dialog of the call as the border's UA sees it (RFC 3261 §12).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LegSnapshot {
    pub realm: String,
    pub party: PartySnapshot,
    pub transport: Transport,
    pub remote: SocketAddr,
    pub call_id: String,
    pub local_tag: String,
    pub remote_tag: Option<String>,
    pub local_uri: String,
    pub remote_uri: String,
    pub local_cseq: u32,
    pub remote_cseq: Option<u32>,
    pub remote_target: Option<String>,
    pub route_set: Vec<String>,
}

/// Why a call cannot be written out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    #[error("no call with Call-ID {0:?}")]
    NoSuchCall(String),
    #[error("call {0:?} is not settled (being set up, awaiting its ACK, or ending)")]
    NotSettled(String),
}

/// Why a snapshot cannot be taken in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestoreError {
    #[error("snapshot version {0}, this engine reads versions 1 to {SNAPSHOT_VERSION}")]
    Version(u32),
    #[error("unknown call kind {0:?}")]
    Kind(String),
    #[error("no realm {0:?} in this configuration")]
    UnknownRealm(String),
    #[error("no partner {partner:?} in realm {realm:?}")]
    UnknownPartner { realm: String, partner: String },
    #[error("the initial request does not parse")]
    BadInitial,
    #[error("a REFER names a leg other than 0 or 1")]
    BadRefer,
    #[error("a dialog with Call-ID {0:?} and this tag already exists")]
    DialogExists(String),
    #[error("relay port {0} is not free here")]
    PortTaken(u16),
}

impl Border {
    /// The settled call one of whose legs has this Call-ID, as plain data.
    pub fn snapshot(&self, now: Instant, call_id: &str) -> Result<CallSnapshot, SnapshotError> {
        let sess = self
            .sessions
            .values()
            .filter(|s| !s.usage.is_ended())
            .find(|s| s.legs.iter().any(|l| l.call_id == call_id))
            .ok_or_else(|| SnapshotError::NoSuchCall(call_id.to_string()))?;
        self.snapshot_of(now, sess)
            .ok_or_else(|| SnapshotError::NotSettled(call_id.to_string()))
    }

    /// Every settled call, for a full sync of a standby.
    pub fn snapshot_all(&self, now: Instant) -> Vec<CallSnapshot> {
        self.sessions
            .values()
            .filter_map(|s| self.snapshot_of(now, s))
            .collect()
    }

    /// A session as a snapshot, `None` when it is not a settled call.
    fn snapshot_of(&self, now: Instant, sess: &Session) -> Option<CallSnapshot> {
        let (kind, since, next_rseq, media) = match &sess.usage {
            Usage::Call(call) => {
                let answered = call.settled()?;
                ("invite", answered.at, call.rseq.next, call.media.snapshot())
            }
            Usage::Subscription(sub) => ("subscribe", sub.active_since()?, [1, 1], Vec::new()),
            Usage::Standalone(_) => return None,
        };
        Some(CallSnapshot {
            version: SNAPSHOT_VERSION,
            kind: kind.to_string(),
            legs: [0, 1].map(|i| self.leg_snapshot(&sess.legs[i])),
            initial: String::from_utf8_lossy(&sess.initial.to_bytes()).into_owned(),
            icid: sess.icid.clone(),
            answered_ago: now.saturating_duration_since(since),
            idle_for: now.saturating_duration_since(sess.last_activity),
            next_rseq,
            media,
            refers: sess
                .refers
                .iter()
                .map(|r| ReferSnapshot {
                    sent_on: r.sent_on,
                    sent_cseq: r.sent,
                    received_cseq: r.received,
                })
                .collect(),
        })
    }

    fn leg_snapshot(&self, leg: &Leg) -> LegSnapshot {
        LegSnapshot {
            realm: self.cfg.realms[leg.realm].name.clone(),
            party: match leg.party {
                Party::Core => PartySnapshot::Core,
                Party::Peer(p) => PartySnapshot::Peer(self.partners.name(p).to_string()),
            },
            transport: leg.flow.transport,
            remote: leg.flow.remote,
            call_id: leg.call_id.clone(),
            local_tag: leg.local_tag.clone(),
            remote_tag: leg.remote_tag.clone(),
            local_uri: leg.local_uri.clone(),
            remote_uri: leg.remote_uri.clone(),
            local_cseq: leg.local_cseq,
            remote_cseq: leg.remote_cseq,
            remote_target: leg.remote_target.as_ref().map(|u| u.to_string()),
            route_set: leg.route_set.clone(),
        }
    }

    fn leg_restore(&self, s: &LegSnapshot) -> Result<Leg, RestoreError> {
        let realm = self
            .cfg
            .realms
            .iter()
            .position(|r| r.name == s.realm)
            .ok_or_else(|| RestoreError::UnknownRealm(s.realm.clone()))?;
        let party = match &s.party {
            PartySnapshot::Core => Party::Core,
            PartySnapshot::Peer(name) => {
                Party::Peer(self.partners.find(realm, name).ok_or_else(|| {
                    RestoreError::UnknownPartner {
                        realm: s.realm.clone(),
                        partner: name.clone(),
                    }
                })?)
            }
        };
        if self
            .dialogs
            .contains_key(&(s.call_id.clone(), s.local_tag.clone()))
        {
            return Err(RestoreError::DialogExists(s.call_id.clone()));
        }
        Ok(Leg {
            realm,
            party,
            flow: Flow {
                realm,
                transport: s.transport,
                remote: s.remote,
            },
            call_id: s.call_id.clone(),
            local_tag: s.local_tag.clone(),
            remote_tag: s.remote_tag.clone(),
            local_uri: s.local_uri.clone(),
            remote_uri: s.remote_uri.clone(),
            local_cseq: s.local_cseq,
            remote_cseq: s.remote_cseq,
            remote_target: s.remote_target.as_deref().and_then(Uri::parse),
            route_set: s.route_set.clone(),
        })
    }

    /// Takes over a call written by [`Border::snapshot`] (in this engine or another with the
    /// same realms and partners): its dialogs answer here from now on, its relay ports are
    /// re-opened (see [`Border::poll_media`]), its idle timer runs on. Nothing is changed when
    /// it fails.
    pub fn restore(&mut self, now: Instant, snap: &CallSnapshot) -> Result<(), RestoreError> {
        if !(1..=SNAPSHOT_VERSION).contains(&snap.version) {
            return Err(RestoreError::Version(snap.version));
        }
        let call = match snap.kind.as_str() {
            "invite" => true,
            "subscribe" => false,
            other => return Err(RestoreError::Kind(other.to_string())),
        };
        if snap.refers.iter().any(|r| r.sent_on > 1) {
            return Err(RestoreError::BadRefer);
        }
        let legs = [
            self.leg_restore(&snap.legs[0])?,
            self.leg_restore(&snap.legs[1])?,
        ];
        let initial = parse_message(snap.initial.as_bytes(), &self.limits)
            .map_err(|_| RestoreError::BadInitial)?;
        // A restored call is settled: it keeps what a settled one keeps.
        let initial = super::memory::trimmed(&initial, &super::memory::KEPT_HEADERS);
        let realms = [0, 1].map(|i| LegRealm {
            realm: legs[i].realm,
            addr: self.cfg.realms[legs[i].realm].media_address,
        });
        let at = now.checked_sub(snap.answered_ago).unwrap_or(now);
        let usage = if call {
            let media = self
                .anchoring
                .restore(&snap.media, realms)
                .map_err(RestoreError::PortTaken)?;
            let rseq = Rseqs {
                maps: Vec::new(),
                next: snap.next_rseq,
            };
            Usage::Call(Box::new(Call::restored(at, rseq, media)))
        } else {
            Usage::Subscription(Subscription::restored(at))
        };
        let last_activity = now.checked_sub(snap.idle_for).unwrap_or(now);
        let sid = self.next_session;
        self.next_session += 1;
        for (side, leg) in legs.iter().enumerate() {
            self.dialogs
                .insert((leg.call_id.clone(), leg.local_tag.clone()), (sid, side));
            if let Party::Peer(p) = leg.party {
                self.partners.hold(p);
            }
        }
        let refers = snap.refers.iter().map(|r| Refer {
            sent_on: r.sent_on,
            sent: r.sent_cseq,
            received: r.received_cseq,
        });
        let sess = Session {
            legs,
            usage,
            initial,
            initial_stx: None,
            last_activity,
            created: at,
            icid: snap.icid.clone(),
            refers: Refers::from_vec(refers.collect()),
        };
        if matches!(sess.usage, Usage::Call(_)) {
            self.publish_dialogs(&sess);
        }
        self.sessions.insert(sid, Box::new(sess));
        self.active += 1;
        let idle_at = last_activity + self.cfg.sip.dialog_idle_timeout;
        self.timers.insert((idle_at.max(now), sid, SessTimer::Idle));
        Ok(())
    }
}

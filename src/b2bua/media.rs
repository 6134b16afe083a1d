//! Media anchoring decisions (TS 24.229 §5.10.5, the IBCF's ALG role), sans-IO: which relay
//! ports a call's streams get in each realm, how each SDP is rewritten toward the other leg, and
//! the commands the TrGW must perform. The relay itself lives in [`crate::media`].

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};

use crate::config::Config;
/// Defined with the media plane, which performs it; re-exported here for the core's users.
pub use crate::media::control::MediaCommand;
use crate::media::{FlowId, FlowSpec, SideSpec};
use crate::sdp::{self, Anchor};

/// Why an SDP could not be anchored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnchorError {
    /// The body is not valid SDP: answered 488 (a request) or dropped (a response).
    BadSdp(String),
    /// No relay ports left in a realm: answered 503.
    NoPorts,
}

/// Free relay port pairs (even RTP port, RTCP on the next) of each realm.
#[derive(Debug, Clone)]
pub struct PortPools {
    free: Vec<VecDeque<u16>>,
}

impl PortPools {
    pub fn new(cfg: &Config) -> PortPools {
        let free = cfg
            .realms
            .iter()
            .map(|r| {
                let (lo, hi) = r.media_ports;
                (lo..hi).step_by(2).collect()
            })
            .collect();
        PortPools { free }
    }

    fn take(&mut self, realm: usize) -> Option<u16> {
        self.free.get_mut(realm)?.pop_front()
    }

    fn give(&mut self, realm: usize, port: u16) {
        if let Some(f) = self.free.get_mut(realm) {
            // Reused last, so a late packet of an ended call does not reach the next one.
            f.push_back(port);
        }
    }

    /// Free port pairs in a realm (leak checks and metrics).
    /// Takes one given port out of the pool (a restored call keeps its ports); false when it is
    /// not free.
    fn take_port(&mut self, realm: usize, port: u16) -> bool {
        let Some(free) = self.free.get_mut(realm) else {
            return false;
        };
        match free.iter().position(|p| *p == port) {
            Some(i) => {
                free.remove(i);
                true
            }
            None => false,
        }
    }

    pub fn available(&self, realm: usize) -> usize {
        self.free.get(realm).map_or(0, VecDeque::len)
    }
}

/// One anchored stream (an m-line, or a BUNDLE group sharing one transport).
#[derive(Debug, Clone)]
struct Slot {
    /// m-line index of the stream in the SDPs (the first m-line of a bundle group).
    mline: usize,
    /// Even RTP port per side (leg); RTCP is `port + 1`.
    ports: [u16; 2],
    rtp: FlowId,
    rtcp: FlowId,
    remote: [Option<SocketAddr>; 2],
    remote_rtcp: [Option<SocketAddr>; 2],
    gate_open: bool,
}

/// The media of one call: its slots and the realms of its two legs.
#[derive(Debug, Clone, Default)]
pub struct CallMedia {
    slots: Vec<Slot>,
    /// The last SDP sent on each leg, as anchored there: a transfer the border makes itself
    /// (`transfer.rs`) offers it to the new far end on the same relay ports.
    sent: [Option<Vec<u8>>; 2],
}

impl CallMedia {
    /// Every flow of the call (for inactivity lookups).
    pub fn flows(&self) -> impl Iterator<Item = FlowId> + '_ {
        self.slots.iter().flat_map(|s| [s.rtp, s.rtcp])
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Records an SDP the border sent on leg `side` that it did not anchor itself (one it
    /// rewrote, see `transfer.rs`).
    pub fn note_sent(&mut self, side: usize, sdp: &[u8]) {
        if let Some(s) = self.sent.get_mut(side) {
            *s = Some(sdp.to_vec());
        }
    }

    /// Heap bytes the call's media state holds (`Border::held_bytes`).
    pub fn heap_bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<Slot>()
            + self
                .sent
                .iter()
                .map(|s| s.as_ref().map_or(0, Vec::capacity))
                .sum::<usize>()
    }

    /// The last SDP the border sent on leg `side` (see the field).
    pub fn sent(&self, side: usize) -> Option<&[u8]> {
        self.sent.get(side)?.as_deref()
    }

    /// The call's streams as plain data (flow ids are the engine's own and are not kept).
    pub fn snapshot(&self) -> Vec<SlotSnapshot> {
        self.slots
            .iter()
            .map(|s| SlotSnapshot {
                mline: s.mline,
                ports: s.ports,
                remote: s.remote,
                remote_rtcp: s.remote_rtcp,
                gate_open: s.gate_open,
            })
            .collect()
    }
}

/// One anchored stream of a call snapshot: the m-line that owns it, the relay port (RTP; RTCP
/// is the next one) on each leg's realm, the far ends the SDP named on each side, and whether
/// the stream was answered.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SlotSnapshot {
    pub mline: usize,
    pub ports: [u16; 2],
    pub remote: [Option<SocketAddr>; 2],
    pub remote_rtcp: [Option<SocketAddr>; 2],
    pub gate_open: bool,
}

/// Per-leg facts the anchoring needs: realm index and its relay address.
#[derive(Debug, Clone, Copy)]
pub struct LegRealm {
    pub realm: usize,
    pub addr: IpAddr,
}

/// The anchoring engine of one border: port pools, flow ids and pending commands.
#[derive(Debug)]
pub struct Anchoring {
    pub pools: PortPools,
    next_flow: u64,
    /// Flow ids go up by the number of shards from the shard's index, so the engines of one
    /// process never name two flows alike in the media plane they share.
    flow_step: u64,
    commands: VecDeque<MediaCommand>,
}

impl Anchoring {
    pub fn new(cfg: &Config, shard: super::Shard) -> Anchoring {
        Anchoring::with_flow_ids(cfg, shard.index as u64, shard.count.max(1) as u64)
    }

    /// Flow ids `first + step`, `first + 2·step`...: for a user of the relay other than the
    /// shards (the ng control path), whose ids must not meet theirs.
    pub fn with_flow_ids(cfg: &Config, first: u64, step: u64) -> Anchoring {
        Anchoring {
            pools: PortPools::new(cfg),
            next_flow: first,
            flow_step: step.max(1),
            commands: VecDeque::new(),
        }
    }

    pub fn poll_command(&mut self) -> Option<MediaCommand> {
        self.commands.pop_front()
    }

    fn flow_id(&mut self) -> FlowId {
        self.next_flow += self.flow_step;
        FlowId(self.next_flow)
    }

    /// Anchors an SDP that arrived on leg `from` and is about to be sent on the other leg:
    /// allocates relay ports for new streams, records the far end of `from`, and returns the SDP
    /// rewritten with the other leg's relay address. `answer` opens the gates of streams whose
    /// two far ends are now known.
    pub fn anchor(
        &mut self,
        call: &mut CallMedia,
        legs: [LegRealm; 2],
        from: usize,
        body: &[u8],
    ) -> Result<Vec<u8>, AnchorError> {
        let parsed = sdp::parse(body).map_err(|e| AnchorError::BadSdp(e.to_string()))?;
        let to = 1 - from;
        let media = parsed.media();
        let groups = parsed.bundle_groups();
        let mut anchors: Vec<Option<Anchor>> = Vec::with_capacity(media.len());
        for m in &media {
            if m.is_rejected() {
                // Port 0: the stream is refused or bundle-only; its slot (if any) stays until
                // the call ends, in case it is offered again.
                anchors.push(None);
                continue;
            }
            // The relay carries UDP only: a TCP stream (MSRP `TCP/MSRP`, `TCP/RTP/AVP`, TLS
            // variants) is declined (port 0) rather than anchored as UDP or passed with the
            // far network's addresses.
            if m.proto.to_ascii_uppercase().starts_with("TCP") {
                tracing::info!(proto = %m.proto, kind = %m.kind, "declining a stream the relay cannot carry");
                anchors.push(None);
                continue;
            }
            // Bundled m-lines share the transport of the group's first live m-line.
            let owner = m
                .mid
                .as_ref()
                .and_then(|mid| groups.iter().find(|g| g.contains(mid)))
                .and_then(|g| {
                    media
                        .iter()
                        .find(|o| !o.is_rejected() && o.mid.as_ref().is_some_and(|x| g.contains(x)))
                        .map(|o| o.index)
                })
                .unwrap_or(m.index);
            let slot = match call.slots.iter().position(|s| s.mline == owner) {
                Some(i) => i,
                None => {
                    let i = call.slots.len();
                    let slot = self.open_slot(owner, legs)?;
                    call.slots.push(slot);
                    i
                }
            };
            let s = &mut call.slots[slot];
            if owner == m.index {
                let (rtp, rtcp) = (m.rtp_remote(), m.rtcp_remote());
                if s.remote[from] != rtp {
                    s.remote[from] = rtp;
                    self.commands.push_back(MediaCommand::SetRemote {
                        id: s.rtp,
                        side: from,
                        remote: rtp,
                    });
                }
                if s.remote_rtcp[from] != rtcp {
                    s.remote_rtcp[from] = rtcp;
                    self.commands.push_back(MediaCommand::SetRemote {
                        id: s.rtcp,
                        side: from,
                        remote: rtcp,
                    });
                }
            }
            let port = s.ports[to];
            anchors.push(Some(Anchor {
                addr: legs[to].addr,
                rtp_port: port,
                rtcp_port: (!m.rtcp_mux).then_some(port + 1),
            }));
        }
        let out = parsed.rewrite(&anchors, legs[to].addr).to_bytes();
        call.sent[to] = Some(out.clone());
        Ok(out)
    }

    /// Opens the gates of every stream once the SDP answer has been seen (or 183 early media).
    pub fn open_gates(&mut self, call: &mut CallMedia) {
        for s in &mut call.slots {
            if !s.gate_open {
                s.gate_open = true;
                self.commands.push_back(MediaCommand::Gate {
                    id: s.rtp,
                    open: true,
                });
                self.commands.push_back(MediaCommand::Gate {
                    id: s.rtcp,
                    open: true,
                });
            }
        }
    }

    fn open_slot(&mut self, mline: usize, legs: [LegRealm; 2]) -> Result<Slot, AnchorError> {
        let p0 = self.pools.take(legs[0].realm).ok_or(AnchorError::NoPorts)?;
        let Some(p1) = self.pools.take(legs[1].realm) else {
            self.pools.give(legs[0].realm, p0);
            return Err(AnchorError::NoPorts);
        };
        let ports = [p0, p1];
        let (rtp, rtcp) = (self.flow_id(), self.flow_id());
        for (id, offset) in [(rtp, 0u16), (rtcp, 1)] {
            let side = |i: usize| SideSpec {
                local: SocketAddr::new(legs[i].addr, ports[i] + offset),
                remote: None,
            };
            self.commands.push_back(MediaCommand::Open(FlowSpec {
                id,
                sides: [side(0), side(1)],
            }));
        }
        Ok(Slot {
            mline,
            ports,
            rtp,
            rtcp,
            remote: [None, None],
            remote_rtcp: [None, None],
            gate_open: false,
        })
    }

    /// Re-opens a restored call's streams on the ports it had: the same Open, SetRemote and Gate
    /// commands its set-up produced, with flow ids of this engine. The ports are taken from the
    /// pools; `Err(port)` names one that is not free (nothing is taken then).
    pub fn restore(
        &mut self,
        slots: &[SlotSnapshot],
        legs: [LegRealm; 2],
    ) -> Result<CallMedia, u16> {
        let mut taken: Vec<(usize, u16)> = Vec::new();
        for s in slots {
            for (side, leg) in legs.iter().enumerate() {
                if !self.pools.take_port(leg.realm, s.ports[side]) {
                    for (realm, port) in taken {
                        self.pools.give(realm, port);
                    }
                    return Err(s.ports[side]);
                }
                taken.push((leg.realm, s.ports[side]));
            }
        }
        let mut call = CallMedia::default();
        for s in slots {
            let (rtp, rtcp) = (self.flow_id(), self.flow_id());
            for (id, offset, remote) in [(rtp, 0u16, s.remote), (rtcp, 1, s.remote_rtcp)] {
                let side = |i: usize| SideSpec {
                    local: SocketAddr::new(legs[i].addr, s.ports[i] + offset),
                    remote: remote[i],
                };
                self.commands.push_back(MediaCommand::Open(FlowSpec {
                    id,
                    sides: [side(0), side(1)],
                }));
                if s.gate_open {
                    self.commands
                        .push_back(MediaCommand::Gate { id, open: true });
                }
            }
            call.slots.push(Slot {
                mline: s.mline,
                ports: s.ports,
                rtp,
                rtcp,
                remote: s.remote,
                remote_rtcp: s.remote_rtcp,
                gate_open: s.gate_open,
            });
        }
        Ok(call)
    }

    /// Closes every flow of a call and returns its ports to the pools.
    pub fn release(&mut self, call: &mut CallMedia, legs: [LegRealm; 2]) {
        // Nothing offers these again once the streams are gone (an ended call lingers 64·T1).
        call.sent = [None, None];
        for s in std::mem::take(&mut call.slots) {
            self.commands.push_back(MediaCommand::Close(s.rtp));
            self.commands.push_back(MediaCommand::Close(s.rtcp));
            for (side, leg) in legs.iter().enumerate() {
                self.pools.give(leg.realm, s.ports[side]);
            }
        }
    }
}

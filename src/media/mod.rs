//! The TrGW: media anchoring. Every stream of a call is relayed between two local endpoints, one
//! per realm; packets are forwarded byte for byte (RTP, RTCP, STUN, DTLS, SRTP are never
//! decoded). [`relay`] does it in user space on dedicated threads; once both directions of a
//! flow are latched, [`kernel`] moves it into an nftables table so packets bypass user space.
//!
//! The decisions (which ports, which remote, when to open a gate) are made by the sans-IO call
//! logic; this module only performs them. [`control`] holds the commands that cross between the
//! two, and the reports that come back.

pub mod control;
pub mod kernel;
pub mod relay;

pub use control::{CountersReport, MediaCommand};

use std::net::SocketAddr;

/// Identifies one relayed flow (one stream component: RTP, or RTCP when not multiplexed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowId(pub u64);

/// One side of a flow: the border's local endpoint in that realm and the far end behind it
/// (from the SDP; `None` until known, then corrected by latching).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SideSpec {
    pub local: SocketAddr,
    pub remote: Option<SocketAddr>,
}

/// A flow: what arrives at `sides[i].local` from side i's far end leaves from
/// `sides[1 - i].local` toward side 1-i's far end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowSpec {
    pub id: FlowId,
    pub sides: [SideSpec; 2],
}

//! The vocabulary between the call logic, the service and the media threads: the
//! [`MediaCommand`]s the sans-IO B2BUA core emits for the TrGW to perform, and the
//! [`CountersReport`]s that come back from the kernel path to the service's media plane. Plain
//! data only (no I/O, no clock), so the core can use it and stay sans-IO.

use std::collections::HashMap;
use std::net::SocketAddr;

use super::kernel::{KernelCounters, KernelError};
use super::{FlowId, FlowSpec};

/// What the TrGW must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaCommand {
    /// Bind both local endpoints and start relaying (gate closed).
    Open(FlowSpec),
    /// The far end of one side changed (SDP offer/answer): latch afresh.
    SetRemote {
        id: FlowId,
        side: usize,
        remote: Option<SocketAddr>,
    },
    /// Open the gate once the stream has been answered.
    Gate { id: FlowId, open: bool },
    /// Release the flow and its ports.
    Close(FlowId),
}

/// The answer to a [`KernelPath::request_counters`](super::kernel::KernelPath::request_counters):
/// the counters of every flow installed when the request was handled, read by the kernel path's
/// own thread and delivered on the channel the request named (the service's media plane polls
/// it), so the `nft` run never blocks the drive loop.
#[derive(Debug)]
pub struct CountersReport {
    /// The request's sequence number, as given.
    pub seq: u64,
    pub counters: Result<HashMap<FlowId, KernelCounters>, KernelError>,
}

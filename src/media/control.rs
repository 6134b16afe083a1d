//! The vocabulary between the call logic and the media plane: the [`MediaCommand`]s the sans-IO
//! B2BUA core emits for the TrGW to perform, and the reports that come back from the media
//! threads to the service. Plain data only (no I/O, no clock), so the core can use it and stay
//! sans-IO.

use std::net::SocketAddr;

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

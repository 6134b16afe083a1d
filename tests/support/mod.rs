//! Operator A's home network for the Case 2 tests: a conference focus with a PCMU mixer
//! (RFC 4579 dial-in, dial-out on REFER; RFC 4575 conference state), which also plays A's
//! core for the requests Palisade A delivers to 127.0.10.1:5060, and plain RTP/AVP endpoints.
//!
//! Needs the crate root to have the `client`, `tone` and `sdp` modules of tests/webrtc/ and
//! `common`.
#![allow(dead_code)]

pub mod confinfo;
pub mod endpoint;
pub mod focus;
pub mod mixer;
pub mod rtp;

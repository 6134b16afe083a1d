//! A media endpoint of the Case 2 tests before its run loop starts: a WebRTC client (str0m:
//! ICE, DTLS-SRTP) or a plain RTP/AVP one, and the offer/answer that makes it.

use super::rtp::{self, RtpPeer};
use crate::client::{self, Peer, Report};
use crate::sdp;
use crate::tone::Audio;
use std::net::SocketAddr;
use std::thread::JoinHandle;
use std::time::Instant;
use str0m::change::SdpPendingOffer;

pub type R<T> = Result<T, String>;

/// Negotiated, ready to run.
pub enum Endpoint {
    WebRtc(Box<Peer>),
    /// With where its media goes (the SDP's address, until it latches).
    Rtp(RtpPeer, SocketAddr),
}

/// An offer made, waiting for its answer.
pub enum Offered {
    WebRtc(Box<Peer>, SdpPendingOffer),
    Rtp(RtpPeer),
}

/// Is this SDP WebRTC (it names a DTLS fingerprint)?
pub fn is_webrtc(sdp: &str) -> bool {
    sdp.contains("a=fingerprint:")
}

/// Where the media of `sdp_text` goes.
pub fn remote_of(sdp_text: &str) -> R<SocketAddr> {
    let (ip, port) = sdp::media_endpoint(sdp_text).ok_or("SDP names no media endpoint")?;
    format!("{ip}:{port}").parse().map_err(|e| format!("{e}"))
}

impl Endpoint {
    /// Answer `offer` with a WebRTC endpoint (`webrtc`) or a plain RTP one on `ip`.
    pub fn answer(
        name: &'static str,
        ip: &str,
        offer: &str,
        webrtc: bool,
    ) -> R<(String, Endpoint)> {
        if webrtc {
            let mut peer = Peer::new(name, ip)?;
            let answer = peer.answer(offer)?;
            Ok((answer, Endpoint::WebRtc(Box::new(peer))))
        } else {
            let peer = RtpPeer::new(name, ip)?;
            Ok((peer.sdp(1), Endpoint::Rtp(peer, remote_of(offer)?)))
        }
    }

    pub fn addr(&self) -> SocketAddr {
        match self {
            Endpoint::WebRtc(p) => p.addr,
            Endpoint::Rtp(p, _) => p.addr,
        }
    }

    /// Start its run loop (its own thread) with `audio`, until `audio` is done or `deadline`.
    pub fn spawn(self, audio: Box<dyn Audio>, deadline: Instant) -> JoinHandle<Report> {
        match self {
            Endpoint::WebRtc(peer) => client::spawn_audio(*peer, audio, deadline),
            Endpoint::Rtp(peer, remote) => rtp::spawn(peer, remote, audio, deadline),
        }
    }
}

impl Offered {
    /// A WebRTC (`webrtc`) or plain RTP/AVP offer from an endpoint on `ip`.
    pub fn new(name: &'static str, ip: &str, webrtc: bool) -> R<(String, Offered)> {
        if webrtc {
            let mut peer = Peer::new(name, ip)?;
            let (offer, pending) = peer.offer()?;
            Ok((offer, Offered::WebRtc(Box::new(peer), pending)))
        } else {
            let peer = RtpPeer::new(name, ip)?;
            Ok((peer.sdp(1), Offered::Rtp(peer)))
        }
    }

    pub fn addr(&self) -> SocketAddr {
        match self {
            Offered::WebRtc(p, _) => p.addr,
            Offered::Rtp(p) => p.addr,
        }
    }

    /// Take the answer.
    pub fn complete(self, answer: &str) -> R<Endpoint> {
        match self {
            Offered::WebRtc(mut peer, pending) => {
                peer.accept_answer(pending, answer)?;
                Ok(Endpoint::WebRtc(peer))
            }
            Offered::Rtp(peer) => Ok(Endpoint::Rtp(peer, remote_of(answer)?)),
        }
    }
}

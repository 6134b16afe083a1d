//! Palisade: an inter-operator border element (3GPP IBCF + TrGW).
//!
//! Data flows one way: [`transport`] → [`transaction`] → [`b2bua`] → [`routing`] → [`transport`],
//! with media control beside it ([`ng`]: rtpengine's control protocol on the same relay). The
//! protocol modules ([`sip`], [`transaction`], [`sdp`], [`b2bua`], [`routing`], [`config`],
//! [`ng`]) are sans-IO: they are fed messages and time and return
//! actions, so they never import tokio, open sockets or read a clock (a test checks their
//! imports). [`transport`] and [`service`] own every socket, task and clock.

pub mod b2bua;
pub mod config;
pub mod files;
pub mod media;
pub mod ng;
pub mod peering;
pub mod routing;
pub mod sdp;
pub mod service;
pub mod sip;
pub mod transaction;
pub mod transport;

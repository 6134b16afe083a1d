//! Shared test tooling for the Palisade lab: SIP messages, a test UA, a lossy
//! relay, a pcap reader and leak search, and an identifier registry.
#![allow(dead_code)]

pub mod flows;
pub mod lossy;
pub mod msg;
pub mod pcap;
pub mod registry;
pub mod ua;

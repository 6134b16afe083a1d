//! Shared test tooling for the Palisade lab: SIP messages, a test UA, a lossy
//! relay, a pcap reader and leak search, the interconnect capture, an identifier registry, Palisade instances
//! (with the child registry for watchdogs), copies of the lab files and the scenario
//! runner of the harness = false binaries.
#![allow(dead_code)]

pub mod capture;
pub mod flows;
pub mod harness;
pub mod http;
pub mod instance;
pub mod knot;
pub mod labfiles;
pub mod lossy;
pub mod media;
pub mod msg;
pub mod pcap;
pub mod registry;
pub mod ua;

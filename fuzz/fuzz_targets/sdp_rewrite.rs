//! The SDP parser and the anchoring rewrite on arbitrary bodies: no panic, and a body that
//! parses prints back to one that parses again with the same media lines.
//!
//! `cargo +nightly fuzz run sdp_rewrite` (from `fuzz/`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade::sdp;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = sdp::parse(data) {
        let printed = s.to_bytes();
        let again = sdp::parse(&printed).expect("printed SDP must re-parse");
        assert_eq!(again.media().len(), s.media().len());
        let _ = s.bundle_groups();
        for m in s.media() {
            let _ = (m.rtp_remote(), m.rtcp_remote(), m.is_rejected());
        }
        let rewritten = s.rewrite(&vec![None; s.media().len()], "192.0.2.1".parse().unwrap());
        let _ = sdp::parse(&rewritten.to_bytes()).expect("rewritten SDP must parse");
    }
});

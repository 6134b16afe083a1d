//! `cargo +nightly fuzz run parse_message` (from the crate root). Seed the corpus with the shared
//! SIP corpus, e.g. `cargo fuzz run parse_message tests/corpus/rfc4475`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade::sip::{frame_stream, parse_message, Limits};

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    let _ = frame_stream(data, &limits);
    if let Ok(msg) = parse_message(data, &limits) {
        let printed = msg.to_bytes();
        let again = parse_message(&printed, &limits).expect("printed message must re-parse");
        assert_eq!(again.start, msg.start);
        assert_eq!(again.body, msg.body);
        assert_eq!(again.to_bytes(), printed);
    }
});

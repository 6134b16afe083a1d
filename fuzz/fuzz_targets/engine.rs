//! Two engines wired back to back (the lab's operators A and B, interconnect as plain UDP), fed
//! an arbitrary sequence of messages from either core or across the interconnect, and clock
//! ticks. The harness and its invariants live in the library, `palisade::b2bua::replay`, so a
//! saved finding (`fuzz/regressions/`) is replayed by a plain `cargo test --lib`
//! (`b2bua::tests::fuzz_regressions`) without nightly.
//!
//! `cargo +nightly fuzz run engine` (from `fuzz/`), seeds from `tests/corpus/` as for
//! `parse_message`; `benches/fuzz.sh` runs every target.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade::b2bua::replay;

fuzz_target!(|data: &[u8]| {
    let v = replay::run(data, std::time::Instant::now());
    assert!(v.is_empty(), "engine invariant broken: {v:#?}");
});

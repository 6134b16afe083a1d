//! The configuration parser on arbitrary node files (peer files read from a fixed in-memory
//! table): no panic, every error names a line within the text, and a valid configuration's
//! `describe()` output parses back to the same configuration.
//!
//! `cargo +nightly fuzz run config_load` (from `fuzz/`).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use palisade::config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let read = |p: &Path| -> std::io::Result<String> {
        if p.ends_with("b.toml") {
            Ok("name = \"b\"\ndomains = [\"b.example\"]\nsources = [\"192.0.2.3\"]\nnext_hop = \"udp:192.0.2.3:5060\"\n".into())
        } else {
            Err(std::io::Error::other("not in the fuzz table"))
        }
    };
    match config::parse(text, Path::new("/fuzz/node.toml"), &read) {
        Ok(cfg) => {
            let described = cfg.describe();
            let again = config::parse(&described, Path::new("/fuzz/node.toml"), &read)
                .expect("describe() output must parse");
            let mut a = cfg.clone();
            let mut b = again.clone();
            for c in [&mut a, &mut b] {
                for p in c.realms.iter_mut().flat_map(|r| r.peers.iter_mut()) {
                    p.origin = Default::default();
                }
            }
            assert_eq!(a, b);
        }
        Err(errors) => {
            let lines = text.lines().count().max(1);
            for e in &errors.0 {
                if e.file == Path::new("/fuzz/node.toml") {
                    assert!(e.line >= 1 && e.line <= lines + 1, "{e}");
                }
            }
        }
    }
});

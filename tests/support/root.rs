//! The root check of the tests that make network namespaces and nftables tables: without root
//! they skip, unless CI requires them (`PALISADE_REQUIRE_ROOT_TESTS=1`), where a skip fails.

pub fn root_or_skip(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    if std::env::var("PALISADE_REQUIRE_ROOT_TESTS").as_deref() == Ok("1") {
        panic!("{test}: needs root and PALISADE_REQUIRE_ROOT_TESTS=1");
    }
    eprintln!("skipping {test}: needs root (network namespaces, nftables)");
    false
}

//! The scenario runner shared by the harness = false lab binaries: name filters from
//! the command line, panics turned into failures, `test <name> ... ok|FAILED|skipped`
//! lines and the final `N passed, N failed[, N skipped]` summary.
//!
//! A scenario skips by returning `skip(reason)`; with PALISADE_REQUIRE_ROOT_TESTS=1 a
//! skip counts as a failure.

use super::ua::R;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

pub fn skip(reason: &str) -> R<()> {
    Err(format!("skip: {reason}"))
}

pub fn ensure(cond: bool, what: impl FnOnce() -> String) -> R<()> {
    if cond {
        Ok(())
    } else {
        Err(what())
    }
}

/// The scenarios whose name contains one of the command-line words (all without words).
pub fn select<T>(all: Vec<(&'static str, T)>) -> Vec<(&'static str, T)> {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    all.into_iter()
        .filter(|(n, _)| filters.is_empty() || filters.iter().any(|f| n.contains(f.as_str())))
        .collect()
}

/// Run `f`, turning a panic into `Err("panicked: ...")`.
pub fn catch(f: impl FnOnce() -> R<()>) -> R<()> {
    std::panic::catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|p| {
        Err(format!(
            "panicked: {}",
            p.downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default()
        ))
    })
}

/// Counts of the scenarios run so far.
pub struct Tally {
    require: bool,
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
}

impl Default for Tally {
    fn default() -> Self {
        Self::new()
    }
}

impl Tally {
    pub fn new() -> Tally {
        Tally {
            require: std::env::var("PALISADE_REQUIRE_ROOT_TESTS").is_ok_and(|v| v == "1"),
            passed: 0,
            failed: 0,
            skipped: 0,
        }
    }

    /// Run one scenario (panics caught), then print and count its result.
    pub fn run(&mut self, name: &str, f: impl FnOnce() -> R<()>) {
        let t0 = Instant::now();
        let res = catch(f);
        self.record(name, t0.elapsed(), res);
    }

    /// Print and count the result `res` of scenario `name`, which took `dt`.
    pub fn record(&mut self, name: &str, dt: Duration, res: R<()>) {
        let dt = dt.as_secs_f64();
        match res {
            Ok(()) => {
                self.passed += 1;
                println!("test {name} ... ok ({dt:.1}s)");
            }
            Err(e) if e.starts_with("skip: ") => {
                if self.require {
                    self.failed += 1;
                    println!(
                        "test {name} ... FAILED\n    skipped but PALISADE_REQUIRE_ROOT_TESTS=1: {}",
                        &e[6..]
                    );
                } else {
                    self.skipped += 1;
                    println!("test {name} ... skipped ({})", &e[6..]);
                }
            }
            Err(e) => {
                self.failed += 1;
                println!("test {name} ... FAILED ({dt:.1}s)\n    {e}");
            }
        }
    }

    /// Print the final summary line; the process exit code.
    pub fn finish(&self) -> i32 {
        let (passed, failed, skipped) = (self.passed, self.failed, self.skipped);
        if skipped > 0 {
            println!("{passed} passed, {failed} failed, {skipped} skipped");
        } else {
            println!("{passed} passed, {failed} failed");
        }
        i32::from(failed > 0)
    }
}

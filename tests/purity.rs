//! The protocol modules are sans-IO by discipline; this test keeps them so. They may not import
//! tokio, open sockets, spawn threads, touch the filesystem or read a clock: time comes in as an
//! argument, configuration text comes in as text (`palisade::files` reads the files).

use std::path::Path;

const PURE: &[&str] = &[
    "sip",
    "transaction",
    "sdp",
    "b2bua",
    "routing",
    "config",
    "ng",
];

const FORBIDDEN: &[&str] = &[
    "tokio",
    "UdpSocket",
    "TcpStream",
    "TcpListener",
    "socket2",
    "Instant::now",
    "SystemTime::now",
    "std::thread",
    "thread_rng",
    "rand::random",
    "std::fs",
    "fs::read",
    "File::open",
    "File::create",
];

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("module directory exists") {
        let path = entry.expect("readable directory").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn pure_modules_do_no_io_and_read_no_clock() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut offences = Vec::new();
    let mut checked = 0;
    for module in PURE {
        let mut files = Vec::new();
        rust_files(&src.join(module), &mut files);
        for file in files {
            // Unit tests drive the engines with a virtual clock that starts at a real instant.
            let in_tests_dir = file
                .parent()
                .and_then(|d| d.file_name())
                .is_some_and(|d| d == "tests");
            if in_tests_dir || file.file_name().is_some_and(|n| n == "tests.rs") {
                continue;
            }
            checked += 1;
            let text = std::fs::read_to_string(&file).expect("readable source");
            let code = text.split("#[cfg(test)]").next().unwrap_or("");
            for (no, line) in code.lines().enumerate() {
                let line = line.trim_start();
                if line.starts_with("//") {
                    continue;
                }
                for f in FORBIDDEN {
                    if line.contains(f) {
                        offences.push(format!("{}:{}: uses {f}", file.display(), no + 1));
                    }
                }
            }
        }
    }
    assert!(checked >= PURE.len(), "found only {checked} files to check");
    assert!(
        offences.is_empty(),
        "sans-IO modules doing IO:\n{}",
        offences.join("\n")
    );
}

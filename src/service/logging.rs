//! Where and how log lines go: stderr, as text for a person at a terminal or as one JSON object
//! per line for the journal and log shippers (`log_format`, `PALISADE_LOG_FORMAT`), filtered by
//! `log` (`PALISADE_LOG`). Lines about a call carry its correlation id, `corr`: a field of the
//! call's events and of the engine's `call` span, made by the border and never sent on the wire,
//! so one `corr` finds every line of one call without knowing either leg's Call-ID.

use crate::config::{Config, LogFormat};

/// The format in force: `PALISADE_LOG_FORMAT` over the node file's `log_format`; `auto` is JSON
/// when stderr is the journal. A bad `PALISADE_LOG_FORMAT` is an error naming the variable.
pub fn format(cfg: &Config) -> Result<LogFormat, String> {
    let chosen = match std::env::var("PALISADE_LOG_FORMAT") {
        Ok(v) => LogFormat::from_keyword(&v).ok_or_else(|| {
            format!("PALISADE_LOG_FORMAT: `{v}`: expected \"auto\", \"text\" or \"json\"")
        })?,
        Err(_) => cfg.log_format,
    };
    Ok(match chosen {
        LogFormat::Auto if stderr_is_journal() => LogFormat::Json,
        LogFormat::Auto => LogFormat::Text,
        other => other,
    })
}

/// Installs the global subscriber. Call once, before the runtime starts.
pub fn init(cfg: &Config) -> Result<(), String> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PALISADE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cfg.log));
    // Colours only for a person at a terminal, never into a file or the journal.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format(cfg)? {
        // The journal stamps each line itself; the span list carries the call's `corr`.
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init(),
        _ => builder.init(),
    }
    Ok(())
}

/// systemd sets `JOURNAL_STREAM=<dev>:<inode>` for a service whose stderr is the journal; a
/// child that inherited the variable but not the stream (stderr redirected) must not match, so
/// the pair is compared with stderr's own (systemd.exec(5)).
fn stderr_is_journal() -> bool {
    let Ok(v) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    // SAFETY: `stat` is plain integers, valid all-zero; fstat writes only into it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::fstat(2, &mut st) } != 0 {
        return false;
    }
    v == format!("{}:{}", st.st_dev, st.st_ino)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_round_trip() {
        for f in [LogFormat::Auto, LogFormat::Text, LogFormat::Json] {
            assert_eq!(LogFormat::from_keyword(f.as_str()), Some(f));
        }
        assert_eq!(LogFormat::from_keyword("JSON"), None);
    }
}

//! systemd's notification protocol (`sd_notify(3)`), written out: one datagram of
//! newline-separated `KEY=VALUE` lines to the unix socket named by `$NOTIFY_SOCKET` (a path, or
//! an abstract socket name when it starts with `@`). Without `$NOTIFY_SOCKET` (not run by
//! systemd with `Type=notify`) every call does nothing.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// Where notifications go, and the watchdog interval systemd asked for.
pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// Reads `$NOTIFY_SOCKET`, `$WATCHDOG_USEC` and `$WATCHDOG_PID` (the watchdog applies only
    /// when that names this process, or is absent).
    pub fn from_env() -> Notifier {
        let target = std::env::var_os("NOTIFY_SOCKET").and_then(|path| {
            let path = path.to_string_lossy().into_owned();
            let addr = match path.strip_prefix('@') {
                Some(name) => SocketAddr::from_abstract_name(name.as_bytes()),
                None => SocketAddr::from_pathname(&path),
            };
            // Non-blocking: a receiver that stops reading (its queue holds ~10 datagrams) must
            // cost a lost notification, never a stalled drive loop.
            let sock = UnixDatagram::unbound().and_then(|s| s.set_nonblocking(true).map(|()| s));
            match (sock, addr) {
                (Ok(sock), Ok(addr)) => Some((sock, addr)),
                (Err(e), _) | (_, Err(e)) => {
                    tracing::warn!("NOTIFY_SOCKET {path:?} unusable: {e}");
                    None
                }
            }
        });
        let pid_ok = std::env::var("WATCHDOG_PID")
            .map(|p| p.trim() == std::process::id().to_string())
            .unwrap_or(true);
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|us| *us > 0 && pid_ok)
            .map(Duration::from_micros);
        Notifier { target, watchdog }
    }

    /// Sends one notification (lines `KEY=VALUE`); failures are logged at debug and ignored.
    pub fn send(&self, state: &str) {
        if let Some((sock, addr)) = &self.target {
            if let Err(e) = sock.send_to_addr(state.as_bytes(), addr) {
                tracing::debug!("sd_notify {state:?}: {e}");
            }
        }
    }

    /// How often to send `WATCHDOG=1`: half the interval systemd asked for.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog.map(|w| (w / 2).max(Duration::from_millis(1)))
    }

    /// `RELOADING=1` with `MONOTONIC_USEC` (systemd 253 wants both; older ones ignore the
    /// second), then `READY=1` is expected once the reload is done.
    pub fn reloading(&self) {
        self.send(&format!(
            "RELOADING=1\nMONOTONIC_USEC={}\nSTATUS=reloading the configuration",
            monotonic_usec()
        ));
    }
}

/// CLOCK_MONOTONIC in microseconds, the clock systemd compares `MONOTONIC_USEC` with.
fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the struct passed by pointer.
    unsafe {
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts);
    }
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000
}

//! The host side of the programmer thread: entering a named network namespace (the tests and the
//! bench program a private one) and checking or enabling IP forwarding there.

use super::KernelError;

/// Moves the calling thread into the named namespace (`/run/netns/NAME`, or a path). Threads and
/// child processes it creates afterwards inherit it.
pub(super) fn enter_netns(name: &str) -> Result<(), KernelError> {
    use std::os::fd::AsRawFd;
    let err = |source| KernelError::Netns {
        name: name.to_owned(),
        source,
    };
    let path = if name.contains('/') {
        name.to_owned()
    } else {
        format!("/run/netns/{name}")
    };
    let f = std::fs::File::open(&path).map_err(err)?;
    // SAFETY: setns on a valid fd; affects only the calling thread.
    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(if e.raw_os_error() == Some(libc::EPERM) {
            KernelError::NotPermitted(format!("setns {name}: {e}"))
        } else {
            err(e)
        });
    }
    Ok(())
}

/// Checks (and, if asked, enables) forwarding in the current thread's network namespace.
pub(super) fn check_forwarding(enable: bool) -> Result<(), KernelError> {
    for (path, v6) in [
        ("/proc/sys/net/ipv4/ip_forward", false),
        ("/proc/sys/net/ipv6/conf/all/forwarding", true),
    ] {
        let Ok(cur) = std::fs::read_to_string(path) else {
            continue;
        };
        if cur.trim() == "1" {
            continue;
        }
        if !enable {
            tracing::warn!("{path} is 0: the kernel path only forwards locally generated traffic");
            continue;
        }
        match std::fs::write(path, "1") {
            Ok(()) => tracing::info!("kernel media path: enabled {path}"),
            Err(e) if v6 => tracing::warn!(
                "cannot enable {path} ({e}): IPv6 flows between interfaces will not be forwarded"
            ),
            Err(e) => {
                return Err(if e.kind() == std::io::ErrorKind::PermissionDenied {
                    KernelError::NotPermitted(format!("writing {path}: {e}"))
                } else {
                    KernelError::IpForward(format!("cannot enable {path}: {e}"))
                })
            }
        }
    }
    Ok(())
}

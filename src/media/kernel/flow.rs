//! The flow as the kernel path sees it: a latched 4-address flow, its address family, and the two
//! "halves" (original tuple → NAT targets) that become map keys and conntrack tuples.

use std::net::{IpAddr, SocketAddr};

use super::KernelError;

/// A latched flow: what arrives at `a_local` from `a_remote` leaves from `b_local` to `b_remote`,
/// and what arrives at `b_local` from `b_remote` leaves from `a_local` to `a_remote`. All four
/// addresses must be of one family (NAT cannot translate IPv4 ↔ IPv6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KernelFlow {
    pub a_local: SocketAddr,
    pub a_remote: SocketAddr,
    pub b_local: SocketAddr,
    pub b_remote: SocketAddr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Family {
    V4,
    V6,
}

impl Family {
    pub(super) fn suffix(self) -> &'static str {
        match self {
            Family::V4 => "4",
            Family::V6 => "6",
        }
    }
}

/// IPv4-mapped IPv6 addresses (dual-stack sockets) are treated as IPv4.
fn normalize(a: SocketAddr) -> SocketAddr {
    match a {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), v6.port()),
            None => a,
        },
        SocketAddr::V4(_) => a,
    }
}

impl KernelFlow {
    fn normalized(self) -> KernelFlow {
        KernelFlow {
            a_local: normalize(self.a_local),
            a_remote: normalize(self.a_remote),
            b_local: normalize(self.b_local),
            b_remote: normalize(self.b_remote),
        }
    }

    pub(super) fn family(&self) -> Result<Family, KernelError> {
        let f = self.normalized();
        let all = [f.a_local, f.a_remote, f.b_local, f.b_remote];
        if all.iter().all(|a| a.is_ipv4()) {
            Ok(Family::V4)
        } else if all.iter().all(|a| a.is_ipv6()) {
            Ok(Family::V6)
        } else {
            Err(KernelError::MixedFamily(Box::new(*self)))
        }
    }

    /// Whether the kernel path can carry this flow (one address family, no port 0).
    pub fn validate(&self) -> Result<(), KernelError> {
        self.family()?;
        let f = self;
        if [f.a_local, f.a_remote, f.b_local, f.b_remote]
            .iter()
            .any(|a| a.port() == 0)
        {
            return Err(KernelError::InvalidFlow(Box::new(*self), "port 0"));
        }
        Ok(())
    }

    /// The two original tuples (far end → local endpoint) and their DNAT/SNAT targets.
    pub(super) fn halves(&self) -> [Half; 2] {
        let f = self.normalized();
        [
            Half {
                from: f.a_remote,
                to: f.a_local,
                dnat: f.b_remote,
                snat: f.b_local,
            },
            Half {
                from: f.b_remote,
                to: f.b_local,
                dnat: f.a_remote,
                snat: f.a_local,
            },
        ]
    }
}

/// One direction of a flow: packets of the original tuple `from → to` are DNAT-ed to `dnat` and
/// leave with source `snat`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Half {
    pub(super) from: SocketAddr,
    pub(super) to: SocketAddr,
    pub(super) dnat: SocketAddr,
    pub(super) snat: SocketAddr,
}

//! Deleting conntrack entries over ctnetlink (`NETLINK_NETFILTER`, `IPCTNL_MSG_CT_DELETE`): the
//! stale, un-NAT-ed entries that would keep a just-installed flow in user space (see the module
//! docs of [`super`]). Hand-written messages, so no `conntrack` binary or netlink crate is needed.

use std::io::Read;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// Minimal ctnetlink client: deletes conntrack entries by tuple (UDP).
pub(super) struct CtNetlink {
    sock: socket2::Socket,
    seq: u32,
}

const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLA_F_NESTED: u16 = 0x8000;
const IPCTNL_MSG_CT_DELETE: u16 = (1 << 8) | 2; // NFNL_SUBSYS_CTNETLINK << 8 | IPCTNL_MSG_CT_DELETE
const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_IP: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_IP_V4_SRC: u16 = 1;
const CTA_IP_V4_DST: u16 = 2;
const CTA_IP_V6_SRC: u16 = 3;
const CTA_IP_V6_DST: u16 = 4;
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_SRC_PORT: u16 = 2;
const CTA_PROTO_DST_PORT: u16 = 3;

fn nla(buf: &mut Vec<u8>, ty: u16, payload: &[u8]) {
    buf.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
    buf.extend_from_slice(&ty.to_ne_bytes());
    buf.extend_from_slice(payload);
    while buf.len() % 4 != 0 {
        buf.push(0);
    }
}

fn nested(buf: &mut Vec<u8>, ty: u16, f: impl FnOnce(&mut Vec<u8>)) {
    let mut inner = Vec::new();
    f(&mut inner);
    nla(buf, ty | NLA_F_NESTED, &inner);
}

impl CtNetlink {
    pub(super) fn open() -> std::io::Result<Self> {
        use socket2::{Domain, Protocol, Socket, Type};
        let sock = Socket::new(
            Domain::from(libc::AF_NETLINK),
            Type::RAW,
            Some(Protocol::from(libc::NETLINK_NETFILTER)),
        )?;
        sock.set_read_timeout(Some(Duration::from_secs(2)))?;
        Ok(CtNetlink { sock, seq: 0 })
    }

    /// Builds one delete request whose original-or-reply tuple (the kernel's lookup matches
    /// either) is `src → dst`, UDP. The tuple attribute is always present, so the request can
    /// never degrade into a table flush.
    fn message(&self, seq: u32, src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
        let mut body = Vec::new();
        let family = if src.is_ipv4() {
            libc::AF_INET
        } else {
            libc::AF_INET6
        } as u8;
        body.extend_from_slice(&[family, 0, 0, 0]); // nfgenmsg: family, version 0, res_id 0
        nested(&mut body, CTA_TUPLE_ORIG, |t| {
            nested(t, CTA_TUPLE_IP, |ip| match (src.ip(), dst.ip()) {
                (IpAddr::V4(s), IpAddr::V4(d)) => {
                    nla(ip, CTA_IP_V4_SRC, &s.octets());
                    nla(ip, CTA_IP_V4_DST, &d.octets());
                }
                (s, d) => {
                    let v6 = |a: IpAddr| match a {
                        IpAddr::V6(a) => a.octets(),
                        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
                    };
                    nla(ip, CTA_IP_V6_SRC, &v6(s));
                    nla(ip, CTA_IP_V6_DST, &v6(d));
                }
            });
            nested(t, CTA_TUPLE_PROTO, |p| {
                nla(p, CTA_PROTO_NUM, &[libc::IPPROTO_UDP as u8]);
                nla(p, CTA_PROTO_SRC_PORT, &src.port().to_be_bytes());
                nla(p, CTA_PROTO_DST_PORT, &dst.port().to_be_bytes());
            });
        });
        let mut msg = Vec::with_capacity(16 + body.len());
        msg.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
        msg.extend_from_slice(&IPCTNL_MSG_CT_DELETE.to_ne_bytes());
        msg.extend_from_slice(&(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
        msg.extend_from_slice(&seq.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes());
        msg.extend_from_slice(&body);
        msg
    }

    /// Deletes the entries of each tuple; returns how many existed. Batched: up to 256
    /// requests per datagram.
    pub(super) fn delete(&mut self, tuples: &[(SocketAddr, SocketAddr)]) -> std::io::Result<usize> {
        let mut deleted = 0;
        let mut rbuf = vec![0u8; 256 * 1024];
        for chunk in tuples.chunks(256) {
            let mut buf = Vec::new();
            for (src, dst) in chunk {
                self.seq = self.seq.wrapping_add(1);
                buf.extend_from_slice(&self.message(self.seq, *src, *dst));
            }
            self.sock.send(&buf)?;
            let mut acks = 0;
            while acks < chunk.len() {
                let n = (&self.sock).read(&mut rbuf)?;
                let mut off = 0;
                while off + 16 <= n {
                    let len = u32::from_ne_bytes(rbuf[off..off + 4].try_into().unwrap_or_default())
                        as usize;
                    let ty =
                        u16::from_ne_bytes(rbuf[off + 4..off + 6].try_into().unwrap_or_default());
                    if len < 16 || off + len > n {
                        break;
                    }
                    if ty == NLMSG_ERROR && len >= 20 {
                        acks += 1;
                        let code = i32::from_ne_bytes(
                            rbuf[off + 16..off + 20].try_into().unwrap_or_default(),
                        );
                        match -code {
                            0 => deleted += 1,
                            libc::ENOENT => {}
                            e => return Err(std::io::Error::from_raw_os_error(e)),
                        }
                    }
                    off += (len + 3) & !3;
                }
                if n == 0 {
                    break;
                }
            }
        }
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ct_message_always_carries_the_tuple() {
        let ct = CtNetlink {
            sock: socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap(),
            seq: 0,
        };
        let m = ct.message(7, sa("10.0.0.2:5000"), sa("10.0.0.1:4000"));
        assert_eq!(
            u32::from_ne_bytes(m[0..4].try_into().unwrap()) as usize,
            m.len()
        );
        assert_eq!(
            u16::from_ne_bytes(m[20..22].try_into().unwrap()) & !NLA_F_NESTED,
            52
        );
        assert_eq!(
            u16::from_ne_bytes(m[22..24].try_into().unwrap()),
            CTA_TUPLE_ORIG | NLA_F_NESTED
        );
    }
}

//! Minimal pcap reader (classic libpcap format) and leak search.

use std::collections::BTreeMap;

#[derive(Clone, Debug)]
pub struct Packet {
    pub src: [u8; 4],
    pub dst: [u8; 4],
    pub sport: u16,
    pub dport: u16,
    pub tcp: bool,
    pub payload: Vec<u8>,
}

/// Parse a pcap file into IPv4 UDP/TCP packets with their payloads.
pub fn read_pcap(data: &[u8]) -> Result<Vec<Packet>, String> {
    if data.len() < 24 {
        return Err("pcap: short global header".into());
    }
    let magic = [data[0], data[1], data[2], data[3]];
    let le = match magic {
        [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => true,
        [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => false,
        _ => return Err(format!("pcap: bad magic {magic:02x?}")),
    };
    let u32at = |b: &[u8], o: usize| -> u32 {
        let a = [b[o], b[o + 1], b[o + 2], b[o + 3]];
        if le {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        }
    };
    let linktype = u32at(data, 20);
    let mut out = Vec::new();
    let mut off = 24;
    let mut guard = 0usize;
    while off + 16 <= data.len() && guard < 10_000_000 {
        guard += 1;
        let incl = u32at(data, off + 8) as usize;
        let start = off + 16;
        let end = start + incl;
        if end > data.len() {
            break; // truncated last record (capture stopped mid-write)
        }
        if let Some(p) = parse_frame(linktype, &data[start..end]) {
            out.push(p);
        }
        off = end;
    }
    Ok(out)
}

fn parse_frame(linktype: u32, f: &[u8]) -> Option<Packet> {
    let ip = match linktype {
        1 => {
            // Ethernet
            if f.len() < 14 || f[12..14] != [0x08, 0x00] {
                return None;
            }
            &f[14..]
        }
        0 | 108 => f.get(4..)?, // BSD loopback / OpenBSD loop
        101 | 12 | 228 => f,    // raw IP
        113 => {
            // Linux cooked
            if f.len() < 16 || f[14..16] != [0x08, 0x00] {
                return None;
            }
            &f[16..]
        }
        276 => {
            // Linux cooked v2
            if f.len() < 20 || f[0..2] != [0x08, 0x00] {
                return None;
            }
            &f[20..]
        }
        _ => return None,
    };
    if ip.len() < 20 || ip[0] >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]])).min(ip.len());
    if total < ihl {
        return None;
    }
    let proto = ip[9];
    let src = [ip[12], ip[13], ip[14], ip[15]];
    let dst = [ip[16], ip[17], ip[18], ip[19]];
    let l4 = &ip[ihl..total];
    let (tcp, hl) = match proto {
        17 => (false, 8),
        6 => {
            if l4.len() < 20 {
                return None;
            }
            (true, usize::from(l4[12] >> 4) * 4)
        }
        _ => return None,
    };
    if l4.len() < hl {
        return None;
    }
    Some(Packet {
        src,
        dst,
        sport: u16::from_be_bytes([l4[0], l4[1]]),
        dport: u16::from_be_bytes([l4[2], l4[3]]),
        tcp,
        payload: l4[hl..].to_vec(),
    })
}

/// Byte streams to search: each UDP datagram alone; TCP payloads concatenated per flow.
pub fn streams(pkts: &[Packet]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut flows: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for p in pkts {
        let name = format!(
            "{}:{} -> {}:{} {}",
            ip(p.src),
            p.sport,
            ip(p.dst),
            p.dport,
            if p.tcp { "tcp" } else { "udp" }
        );
        if p.tcp {
            flows.entry(name).or_default().extend_from_slice(&p.payload);
        } else if !p.payload.is_empty() {
            out.push((name, p.payload.clone()));
        }
    }
    out.extend(flows);
    out
}

fn ip(a: [u8; 4]) -> String {
    format!("{}.{}.{}.{}", a[0], a[1], a[2], a[3])
}

/// Number of packets whose payload looks like SIP.
pub fn sip_packet_count(pkts: &[Packet]) -> usize {
    pkts.iter()
        .filter(|p| {
            let first = p.payload.split(|b| *b == b'\n').next().unwrap_or(&[]);
            p.payload.starts_with(b"SIP/2.0 ") || first.windows(8).any(|w| w == b" SIP/2.0")
        })
        .count()
}

/// Every occurrence of any needle, with context.
pub fn find_leaks(streams: &[(String, Vec<u8>)], needles: &[String]) -> Vec<String> {
    let mut hits = Vec::new();
    for (name, data) in streams {
        for n in needles {
            let nb = n.as_bytes();
            if nb.is_empty() || nb.len() > data.len() {
                continue;
            }
            for (i, w) in data.windows(nb.len()).enumerate() {
                if w == nb {
                    let a = i.saturating_sub(60);
                    let b = (i + nb.len() + 60).min(data.len());
                    hits.push(format!(
                        "{name}: `{n}` in …{}…",
                        String::from_utf8_lossy(&data[a..b]).replace("\r\n", "⏎")
                    ));
                    if hits.len() > 200 {
                        return hits;
                    }
                }
            }
        }
    }
    hits
}

/// Write a tiny pcap (Ethernet link type) — used by the self-test.
/// (src, dst, sport, dport, tcp, payload)
pub type TestPacket<'a> = (&'a [u8; 4], &'a [u8; 4], u16, u16, bool, &'a [u8]);

pub fn write_test_pcap(packets: &[TestPacket]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&0xa1b2c3d4u32.to_le_bytes());
    v.extend_from_slice(&2u16.to_le_bytes());
    v.extend_from_slice(&4u16.to_le_bytes());
    v.extend_from_slice(&0i32.to_le_bytes());
    v.extend_from_slice(&0u32.to_le_bytes());
    v.extend_from_slice(&262144u32.to_le_bytes());
    v.extend_from_slice(&1u32.to_le_bytes());
    for (src, dst, sp, dp, tcp, payload) in packets {
        let l4len = if *tcp { 20 } else { 8 };
        let total = 20 + l4len + payload.len();
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&[0x08, 0x00]);
        f.extend_from_slice(&[0x45, 0]);
        f.extend_from_slice(&(total as u16).to_be_bytes());
        f.extend_from_slice(&[0, 0, 0x40, 0, 64, if *tcp { 6 } else { 17 }, 0, 0]);
        f.extend_from_slice(*src);
        f.extend_from_slice(*dst);
        f.extend_from_slice(&sp.to_be_bytes());
        f.extend_from_slice(&dp.to_be_bytes());
        if *tcp {
            f.extend_from_slice(&[0; 8]);
            f.extend_from_slice(&[0x50, 0x18, 0, 0, 0, 0, 0, 0]);
        } else {
            f.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
            f.extend_from_slice(&[0, 0]);
        }
        f.extend_from_slice(payload);
        v.extend_from_slice(&1u32.to_le_bytes());
        v.extend_from_slice(&0u32.to_le_bytes());
        v.extend_from_slice(&(f.len() as u32).to_le_bytes());
        v.extend_from_slice(&(f.len() as u32).to_le_bytes());
        v.extend_from_slice(&f);
    }
    v
}

/// The plaintext of every TLS connection in a capture, decrypted by tshark with the NSS key log
/// the instances wrote (`SSLKEYLOGFILE`): one stream per connection and direction. TLS is
/// recognised on `tls_port`. An error when tshark is missing or fails.
pub fn tls_streams(
    pcap: &std::path::Path,
    keylog: &std::path::Path,
    tls_port: u16,
) -> Result<Vec<(String, Vec<u8>)>, String> {
    use std::process::Command;
    let keys = format!("tls.keylog_file:{}", keylog.display());
    let decode = format!("tcp.port=={tls_port},tls");
    let ids = Command::new("tshark")
        .args(["-r"])
        .arg(pcap)
        .args(["-T", "fields", "-e", "tcp.stream", "-Y", "tcp"])
        .output()
        .map_err(|e| format!("run tshark: {e}"))?;
    if !ids.status.success() {
        return Err(format!(
            "tshark: {}",
            String::from_utf8_lossy(&ids.stderr).trim()
        ));
    }
    let mut streams: Vec<u32> = String::from_utf8_lossy(&ids.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    streams.sort_unstable();
    streams.dedup();
    let mut out = Vec::new();
    for id in streams.into_iter().take(500) {
        let follow = Command::new("tshark")
            .args(["-r"])
            .arg(pcap)
            .args(["-o", &keys, "-d", &decode, "-q", "-z"])
            .arg(format!("follow,tls,raw,{id}"))
            .output()
            .map_err(|e| format!("run tshark: {e}"))?;
        let text = String::from_utf8_lossy(&follow.stdout);
        let (mut fwd, mut back) = (Vec::new(), Vec::new());
        let mut nodes = Vec::new();
        for line in text.lines() {
            if let Some(n) = line.strip_prefix("Node ") {
                nodes.push(n.split_once(": ").map_or(n, |(_, a)| a).to_string());
                continue;
            }
            let (dir, hex) = match line.strip_prefix('\t') {
                Some(h) => (&mut back, h),
                None => (&mut fwd, line),
            };
            let hex = hex.trim();
            if hex.is_empty() || hex.len() % 2 != 0 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                continue;
            }
            for i in (0..hex.len()).step_by(2) {
                if let Ok(b) = u8::from_str_radix(&hex[i..i + 2], 16) {
                    dir.push(b);
                }
            }
        }
        let name = |a: usize, b: usize| {
            format!(
                "{} -> {} tls (decrypted)",
                nodes.get(a).map_or("?", |s| s.as_str()),
                nodes.get(b).map_or("?", |s| s.as_str())
            )
        };
        if !fwd.is_empty() {
            out.push((name(0, 1), fwd));
        }
        if !back.is_empty() {
            out.push((name(1, 0), back));
        }
    }
    Ok(out)
}

/// SIP messages in decrypted streams: start lines (`SIP/2.0 NNN` or `METHOD uri SIP/2.0`).
pub fn sip_messages_in(streams: &[(String, Vec<u8>)]) -> usize {
    streams
        .iter()
        .map(|(_, d)| {
            String::from_utf8_lossy(d)
                .split("\r\n")
                .filter(|l| l.starts_with("SIP/2.0 ") || l.ends_with(" SIP/2.0"))
                .count()
        })
        .sum()
}

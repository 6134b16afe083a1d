//! RTP on loopback for the lab tests: sockets on a core address, a steady PCMU-sized packet
//! stream both ways, and what each side received (from whom).

use super::ua::R;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

/// One packet every 20 ms (PCMU ptime).
pub const PTIME: Duration = Duration::from_millis(20);
/// 12-byte RTP header + 160 bytes of PCMU.
pub const PACKET_LEN: usize = 172;

/// A UDP socket on `ip` with an even port from a range only this test uses (RTP convention).
pub fn rtp_socket(ip: &str, base: u16) -> R<UdpSocket> {
    let ip: IpAddr = ip.parse().map_err(|e| format!("{ip}: {e}"))?;
    let mut last = String::new();
    for port in (base..base + 200).step_by(2) {
        match UdpSocket::bind(SocketAddr::new(ip, port)) {
            Ok(s) => return Ok(s),
            Err(e) => last = e.to_string(),
        }
    }
    Err(format!("no free even UDP port on {ip} from {base}: {last}"))
}

/// What one side of the media exchange saw.
#[derive(Debug, Default)]
pub struct MediaReport {
    pub sent: u32,
    pub received: u32,
    /// Packets carrying the other side's SSRC.
    pub from_peer: u32,
    /// Every distinct source address packets came from.
    pub sources: Vec<SocketAddr>,
    pub send_errors: u32,
}

impl MediaReport {
    /// One packet received from `src`.
    fn note(&mut self, packet: &[u8], src: SocketAddr, peer_ssrc: u32) {
        self.received += 1;
        if packet.len() == PACKET_LEN && packet[8..12] == peer_ssrc.to_be_bytes() {
            self.from_peer += 1;
        }
        if !self.sources.contains(&src) {
            self.sources.push(src);
        }
    }
}

/// A 172-byte RTP packet (12-byte header, 160 bytes of PCMU) of stream `ssrc`.
pub fn rtp_packet(ssrc: u32, seq: u16) -> Vec<u8> {
    let mut p = vec![0xffu8; PACKET_LEN];
    p[0] = 0x80;
    p[1] = 0; // PCMU
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p[8..12].copy_from_slice(&ssrc.to_be_bytes());
    p
}

/// Send a packet to `to` every PTIME for `dur` and receive whatever comes meanwhile.
pub fn exchange(
    sock: UdpSocket,
    to: SocketAddr,
    my_ssrc: u32,
    peer_ssrc: u32,
    dur: Duration,
) -> MediaReport {
    let mut r = MediaReport::default();
    let _ = sock.set_read_timeout(Some(Duration::from_millis(2)));
    let start = Instant::now();
    let end = start + dur;
    let mut next_send = start;
    let mut seq: u16 = 0;
    let mut buf = [0u8; 2048];
    while Instant::now() < end {
        if Instant::now() >= next_send {
            if sock.send_to(&rtp_packet(my_ssrc, seq), to).is_ok() {
                r.sent += 1;
            } else {
                r.send_errors += 1;
            }
            seq = seq.wrapping_add(1);
            next_send += PTIME;
        }
        if let Ok((n, src)) = sock.recv_from(&mut buf) {
            r.note(&buf[..n], src, peer_ssrc);
        }
    }
    // drain what is still in flight (bounded)
    let drain_end = Instant::now() + Duration::from_millis(200);
    while Instant::now() < drain_end {
        if let Ok((n, src)) = sock.recv_from(&mut buf) {
            r.note(&buf[..n], src, peer_ssrc);
        }
    }
    r
}

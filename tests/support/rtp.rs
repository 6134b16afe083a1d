//! A plain RTP/AVP PCMU endpoint (an IMS terminal's media, or one leg of the focus's mixer):
//! one UDP socket, 20 ms frames with its own sequence numbers, timestamps and SSRC, symmetric
//! (it latches onto where media comes from, RFC 4961).

use crate::client::{loopback_socket, note_source, Report};
use crate::common::ua;
use crate::tone::Audio;
use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub type R<T> = Result<T, String>;

pub const PCMU: u8 = 0;

pub struct RtpPeer {
    pub name: &'static str,
    pub sock: UdpSocket,
    pub addr: SocketAddr,
}

impl RtpPeer {
    /// A socket on `ip`:random port.
    pub fn new(name: &'static str, ip: &str) -> R<RtpPeer> {
        let (sock, addr) = loopback_socket(name, ip)?;
        Ok(RtpPeer { name, sock, addr })
    }

    /// The SDP (offer or answer) for this endpoint.
    pub fn sdp(&self, version: u32) -> String {
        ua::sdp(
            &self.addr.ip().to_string(),
            self.addr.port(),
            version,
            "sendrecv",
        )
    }
}

/// One RTP packet: version 2, no padding/extension/CSRC.
pub fn packet(pt: u8, marker: bool, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(12 + payload.len());
    p.push(0x80);
    p.push(pt | if marker { 0x80 } else { 0 });
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// (payload type, payload) of an RTP packet (CSRCs and header extension skipped).
pub fn payload(p: &[u8]) -> Option<(u8, &[u8])> {
    if p.len() < 12 || p[0] >> 6 != 2 {
        return None;
    }
    let mut off = 12 + 4 * usize::from(p[0] & 0x0f);
    if p[0] & 0x10 != 0 {
        let words = u16::from_be_bytes([*p.get(off + 2)?, *p.get(off + 3)?]);
        off += 4 + 4 * usize::from(words);
    }
    let end = if p[0] & 0x20 != 0 {
        p.len().checked_sub(usize::from(*p.last()?))?
    } else {
        p.len()
    };
    Some((p[1] & 0x7f, p.get(off..end)?))
}

/// Start the run loop of `peer` in its own thread: a frame of `audio` every 20 ms to
/// `remote` (then to wherever media comes from), PCMU received goes to `audio`; until
/// `audio` is done or `deadline`.
pub fn spawn(
    peer: RtpPeer,
    remote: SocketAddr,
    mut audio: Box<dyn Audio>,
    deadline: Instant,
) -> JoinHandle<Report> {
    std::thread::Builder::new()
        .name(format!("rtp-{}", peer.name))
        .spawn(move || {
            let mut rep = Report {
                name: peer.name,
                ..Default::default()
            };
            if let Err(e) = run(&peer, remote, audio.as_mut(), deadline, &mut rep) {
                rep.error = Some(e);
            }
            rep
        })
        .expect("spawn rtp thread")
}

fn run(
    peer: &RtpPeer,
    mut remote: SocketAddr,
    audio: &mut dyn Audio,
    deadline: Instant,
    rep: &mut Report,
) -> R<()> {
    if !remote.ip().is_loopback() {
        return Err(format!("{}: refusing to send to {remote}", peer.name));
    }
    let start = Instant::now();
    let ssrc: u32 = rand::random();
    let (mut seq, mut ts): (u16, u32) = (rand::random(), rand::random());
    let mut next = start;
    let mut buf = vec![0u8; 2000];
    let mut latched = false;
    loop {
        let now = Instant::now();
        if audio.done() || now >= deadline {
            return Ok(());
        }
        if now >= next {
            let frame = audio.next_frame();
            let p = packet(PCMU, rep.frames_sent == 0, seq, ts, ssrc, &frame);
            // ECONNREFUSED (nobody there yet) is not fatal
            let _ = peer.sock.send_to(&p, remote);
            rep.frames_sent += 1;
            seq = seq.wrapping_add(1);
            ts = ts.wrapping_add(frame.len() as u32);
            next += Duration::from_millis(20);
            continue;
        }
        let wait = next
            .min(deadline)
            .saturating_duration_since(now)
            .max(Duration::from_millis(1));
        peer.sock
            .set_read_timeout(Some(wait))
            .map_err(|e| e.to_string())?;
        match peer.sock.recv_from(&mut buf) {
            Ok((n, src)) => {
                note_source(rep, src);
                if let Some((PCMU, data)) = payload(&buf[..n]) {
                    rep.connected_after.get_or_insert(start.elapsed());
                    if !latched && src.ip().is_loopback() {
                        remote = src;
                        latched = true;
                    }
                    let from = rep.samples.len();
                    rep.samples
                        .extend(data.iter().map(|b| crate::tone::mulaw_decode(*b)));
                    audio.heard(rep.samples.len(), &rep.samples[from..]);
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::ConnectionRefused
                ) => {}
            Err(e) => return Err(format!("{}: recv: {e}", peer.name)),
        }
    }
}

/// Unit checks of the packet code.
pub fn self_test() -> R<()> {
    let p = packet(PCMU, true, 7, 160, 0xdead_beef, &[1, 2, 3]);
    if payload(&p) != Some((PCMU, &[1u8, 2, 3][..])) || p[1] != 0x80 {
        return Err(format!("round trip: {p:?}"));
    }
    let mut csrc = p.clone();
    csrc[0] |= 1;
    csrc.splice(12..12, [9, 9, 9, 9]);
    if payload(&csrc) != Some((PCMU, &[1u8, 2, 3][..])) {
        return Err("CSRC not skipped".into());
    }
    if payload(&[0x80, 0]).is_some() || payload(&[0u8; 12]).is_some() {
        return Err("non-RTP accepted".into());
    }
    Ok(())
}

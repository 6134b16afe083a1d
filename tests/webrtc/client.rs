//! A WebRTC endpoint for the tests: one str0m `Rtc` (audio only, PCMU/8000, BUNDLE and
//! rtcp-mux as str0m makes them) and one UDP socket on a loopback address. The
//! offer/answer is done on the test thread; the run loop then moves into its own
//! thread, bounded by a deadline.

use super::tone::{self, Audio, Tone};
use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, Frequency, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};

pub type R<T> = Result<T, String>;

pub struct Peer {
    pub name: &'static str,
    pub rtc: Rtc,
    pub sock: UdpSocket,
    pub addr: SocketAddr,
    pub mid: Option<Mid>,
}

fn new_rtc() -> Rtc {
    Rtc::builder()
        .clear_codecs()
        .enable_pcmu(true, false)
        .build(Instant::now())
}

/// A UDP socket for media on loopback address `ip`, random port.
pub fn loopback_socket(name: &str, ip: &str) -> R<(UdpSocket, SocketAddr)> {
    let ip: IpAddr = ip.parse().map_err(|e| format!("{ip}: {e}"))?;
    if !ip.is_loopback() {
        return Err(format!("{ip} is not a loopback address"));
    }
    let sock =
        UdpSocket::bind(SocketAddr::new(ip, 0)).map_err(|e| format!("{name}: bind {ip}:0: {e}"))?;
    let addr = sock.local_addr().map_err(|e| e.to_string())?;
    Ok((sock, addr))
}

impl Peer {
    /// A peer with a UDP socket on `ip`:random port and one host candidate for it.
    pub fn new(name: &'static str, ip: &str) -> R<Peer> {
        let (sock, addr) = loopback_socket(name, ip)?;
        let mut rtc = new_rtc();
        let cand =
            Candidate::host(addr, "udp").map_err(|e| format!("{name}: host candidate: {e}"))?;
        rtc.add_local_candidate(cand)
            .ok_or_else(|| format!("{name}: candidate {addr} refused"))?;
        Ok(Peer {
            name,
            rtc,
            sock,
            addr,
            mid: None,
        })
    }

    /// Make the SDP offer (one sendrecv audio m-line).
    pub fn offer(&mut self) -> R<(String, SdpPendingOffer)> {
        let mut change = self.rtc.sdp_api();
        let mid = change.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
        let (offer, pending) = change
            .apply()
            .ok_or_else(|| format!("{}: empty offer", self.name))?;
        self.mid = Some(mid);
        Ok((offer.to_sdp_string(), pending))
    }

    /// Accept a remote offer; return the SDP answer.
    pub fn answer(&mut self, offer: &str) -> R<String> {
        let offer = SdpOffer::from_sdp_string(offer)
            .map_err(|e| format!("{}: offer does not parse: {e}", self.name))?;
        let answer = self
            .rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| format!("{}: accept_offer: {e}", self.name))?;
        Ok(answer.to_sdp_string())
    }

    pub fn accept_answer(&mut self, pending: SdpPendingOffer, answer: &str) -> R<()> {
        let answer = SdpAnswer::from_sdp_string(answer)
            .map_err(|e| format!("{}: answer does not parse: {e}", self.name))?;
        self.rtc
            .sdp_api()
            .accept_answer(pending, answer)
            .map_err(|e| format!("{}: accept_answer: {e}", self.name))
    }
}

/// What one side observed.
#[derive(Debug, Default)]
pub struct Report {
    pub name: &'static str,
    pub connected_after: Option<Duration>,
    pub ice_states: Vec<String>,
    pub frames_sent: usize,
    pub samples: Vec<i16>,
    /// Source addresses of datagrams received (with counts).
    pub sources: Vec<(SocketAddr, usize)>,
    pub error: Option<String>,
}

impl Report {
    pub fn sources_str(&self) -> String {
        self.sources
            .iter()
            .map(|(a, n)| format!("{a} ({n})"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Shared between the two run loops: each publishes how much audio it has received,
/// so neither stops sending before the other has heard enough.
#[derive(Default)]
pub struct Progress {
    pub received: [AtomicUsize; 2],
    pub abort: AtomicBool,
}

pub struct RunSpec {
    pub send_freq: f64,
    /// Index of this side in `Progress::received`.
    pub me: usize,
    /// Samples each side must have received before both stop.
    pub enough: usize,
    pub deadline: Instant,
}

/// Start the run loop of `peer` in its own thread: it sends a tone of `spec.send_freq`
/// and stops when both sides of `progress` heard enough (or at the deadline).
pub fn spawn(peer: Peer, spec: RunSpec, progress: Arc<Progress>) -> JoinHandle<Report> {
    let deadline = spec.deadline;
    let audio = ToneAudio {
        tone: Tone::new(spec.send_freq),
        spec,
        progress,
    };
    spawn_audio(peer, Box::new(audio), deadline)
}

/// Start the run loop of `peer` in its own thread, sending what `audio` makes and telling it
/// what was heard, until `audio` is done or `deadline`.
pub fn spawn_audio(
    mut peer: Peer,
    mut audio: Box<dyn Audio>,
    deadline: Instant,
) -> JoinHandle<Report> {
    std::thread::Builder::new()
        .name(format!("rtc-{}", peer.name))
        .spawn(move || {
            let mut rep = Report {
                name: peer.name,
                ..Default::default()
            };
            if let Err(e) = run(&mut peer, audio.as_mut(), deadline, &mut rep) {
                rep.error = Some(e);
            }
            peer.rtc.disconnect();
            rep
        })
        .expect("spawn rtc thread")
}

/// The two-party test audio: a tone out, and done when both sides heard `spec.enough`.
struct ToneAudio {
    tone: Tone,
    spec: RunSpec,
    progress: Arc<Progress>,
}

impl Audio for ToneAudio {
    fn next_frame(&mut self) -> Vec<u8> {
        self.tone.next_frame()
    }

    fn heard(&mut self, total: usize, _samples: &[i16]) {
        self.progress.received[self.spec.me].store(total, Ordering::Relaxed);
    }

    fn done(&self) -> bool {
        let p = &self.progress;
        let other = 1 - self.spec.me;
        p.abort.load(Ordering::Relaxed)
            || (p.received[self.spec.me].load(Ordering::Relaxed) >= self.spec.enough
                && p.received[other].load(Ordering::Relaxed) >= self.spec.enough)
    }
}

pub(crate) fn note_source(rep: &mut Report, src: SocketAddr) {
    match rep.sources.iter_mut().find(|(a, _)| *a == src) {
        Some((_, n)) => *n += 1,
        None => rep.sources.push((src, 1)),
    }
}

fn run(peer: &mut Peer, audio: &mut dyn Audio, deadline: Instant, rep: &mut Report) -> R<()> {
    let start = Instant::now();
    let mut buf = vec![0u8; 2000];
    let mut next_frame: Option<Instant> = None;
    let mut media_time: u64 = 0;
    let mut pt = None;
    loop {
        // drain to Timeout after every mutation
        let timeout = loop {
            let out = peer
                .rtc
                .poll_output()
                .map_err(|e| format!("{}: poll_output: {e}", peer.name))?;
            match out {
                Output::Timeout(t) => break t,
                Output::Transmit(t) => {
                    if !t.destination.ip().is_loopback() {
                        return Err(format!(
                            "{}: refusing to send to non-loopback {}",
                            peer.name, t.destination
                        ));
                    }
                    // a send error (e.g. ICMP unreachable reported late) is not fatal to ICE
                    let _ = peer.sock.send_to(&t.contents, t.destination);
                }
                Output::Event(e) => match e {
                    Event::Connected => {
                        rep.connected_after.get_or_insert(start.elapsed());
                        next_frame.get_or_insert_with(Instant::now);
                    }
                    Event::IceConnectionStateChange(s) => {
                        rep.ice_states
                            .push(format!("{s:?}@{}ms", start.elapsed().as_millis()));
                        if s == IceConnectionState::Disconnected && rep.connected_after.is_some() {
                            return Err(format!("{}: ICE disconnected", peer.name));
                        }
                    }
                    Event::MediaAdded(m) => {
                        peer.mid.get_or_insert(m.mid);
                    }
                    Event::MediaData(d) if d.params.spec().codec == Codec::PCMU => {
                        let from = rep.samples.len();
                        rep.samples
                            .extend(d.data.iter().map(|b| tone::mulaw_decode(*b)));
                        audio.heard(rep.samples.len(), &rep.samples[from..]);
                    }
                    _ => {}
                },
            }
        };
        let now = Instant::now();
        if audio.done() || now >= deadline {
            return Ok(());
        }
        // send a frame when one is due (one mutation, then back to draining)
        if let (Some(due), Some(mid)) = (next_frame, peer.mid) {
            if now >= due {
                let Some(w) = peer.rtc.writer(mid) else {
                    return Err(format!("{}: no writer for {mid}", peer.name));
                };
                if pt.is_none() {
                    pt = w
                        .payload_params()
                        .find(|p| p.spec().codec == Codec::PCMU)
                        .map(|p| p.pt());
                }
                let Some(p) = pt else {
                    return Err(format!("{}: PCMU was not negotiated", peer.name));
                };
                w.write(
                    p,
                    now,
                    MediaTime::new(media_time, Frequency::EIGHT_KHZ),
                    audio.next_frame(),
                )
                .map_err(|e| format!("{}: write: {e}", peer.name))?;
                media_time += tone::FRAME as u64;
                rep.frames_sent += 1;
                next_frame = Some(due + Duration::from_millis(20));
                continue;
            }
        }
        // wait for a datagram, the engine's timeout, the next frame or the deadline
        let mut wake = timeout.min(deadline);
        if let Some(due) = next_frame {
            wake = wake.min(due);
        }
        let wait = wake
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1));
        peer.sock
            .set_read_timeout(Some(wait))
            .map_err(|e| e.to_string())?;
        let input = match peer.sock.recv_from(&mut buf) {
            Ok((n, source)) => {
                note_source(rep, source);
                match Receive::new(Protocol::Udp, source, peer.addr, &buf[..n]) {
                    Ok(r) => Input::Receive(Instant::now(), r),
                    Err(_) => continue, // not STUN/DTLS/RTP: ignore
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                Input::Timeout(Instant::now())
            }
            // ECONNREFUSED from an earlier send: keep going
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => Input::Timeout(Instant::now()),
            Err(e) => return Err(format!("{}: recv: {e}", peer.name)),
        };
        peer.rtc
            .handle_input(input)
            .map_err(|e| format!("{}: handle_input: {e}", peer.name))?;
    }
}

//! G.711 µ-law codec, a phase-continuous tone generator and a Goertzel detector.
//! Written here (no codec crate) so the harness depends on nothing it cannot show.

use std::f64::consts::PI;

pub const RATE: f64 = 8000.0;
/// 20 ms of 8 kHz audio.
pub const FRAME: usize = 160;

const BIAS: i32 = 0x84;
const CLIP: i32 = 32635;

/// ITU-T G.711 µ-law encoding of one 16-bit linear sample.
pub fn mulaw_encode(sample: i16) -> u8 {
    let mut s = i32::from(sample);
    let sign = if s < 0 {
        s = -s;
        0x80
    } else {
        0
    };
    s = s.min(CLIP) + BIAS;
    let mut exponent = 7;
    let mut mask = 0x4000;
    while exponent > 0 && s & mask == 0 {
        exponent -= 1;
        mask >>= 1;
    }
    let mantissa = (s >> (exponent + 3)) & 0x0f;
    !(sign | (exponent << 4) as u8 | mantissa as u8)
}

/// ITU-T G.711 µ-law decoding of one byte to a 16-bit linear sample.
pub fn mulaw_decode(byte: u8) -> i16 {
    let u = !byte;
    let sign = u & 0x80;
    let exponent = i32::from((u >> 4) & 0x07);
    let mantissa = i32::from(u & 0x0f);
    let magnitude = (((mantissa << 3) + BIAS) << exponent) - BIAS;
    if sign != 0 {
        -magnitude as i16
    } else {
        magnitude as i16
    }
}

/// What a media run loop sends, and where what it hears goes (one 20 ms frame at a time).
pub trait Audio: Send {
    /// The next 20 ms frame to send, µ-law encoded.
    fn next_frame(&mut self) -> Vec<u8>;
    /// `samples` were just received; `total` have been received so far.
    fn heard(&mut self, total: usize, samples: &[i16]);
    /// True when the loop should stop.
    fn done(&self) -> bool;
}

/// Sine generator that keeps its phase across frames.
pub struct Tone {
    freq: f64,
    n: u64,
}

impl Tone {
    pub fn new(freq: f64) -> Tone {
        Tone { freq, n: 0 }
    }

    /// Next 20 ms frame, µ-law encoded, amplitude about -6 dBFS.
    pub fn next_frame(&mut self) -> Vec<u8> {
        (0..FRAME)
            .map(|_| {
                let t = self.n as f64 / RATE;
                self.n += 1;
                let v = (2.0 * PI * self.freq * t).sin() * 16000.0;
                mulaw_encode(v as i16)
            })
            .collect()
    }
}

/// Goertzel power of `freq` in `samples` (linear PCM at `RATE`).
pub fn goertzel(samples: &[i16], freq: f64) -> f64 {
    let w = 2.0 * PI * freq / RATE;
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &x in samples {
        let s0 = f64::from(x) + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    s1 * s1 + s2 * s2 - coeff * s1 * s2
}

/// Verdict on received audio: `want` must dominate `other` by `ratio` in power,
/// over at least `min_samples` samples. Returns a human-readable summary either way.
pub fn check_dominant(
    samples: &[i16],
    want: f64,
    other: f64,
    ratio: f64,
    min_samples: usize,
) -> Result<String, String> {
    if samples.len() < min_samples {
        return Err(format!(
            "only {} ms of audio received (need {} ms)",
            samples.len() / 8,
            min_samples / 8
        ));
    }
    let pw = goertzel(samples, want);
    let po = goertzel(samples, other);
    let r = pw / po.max(1e-9);
    let summary = format!(
        "{} ms of audio, P({want} Hz)/P({other} Hz) = {r:.1e}",
        samples.len() / 8
    );
    // Also guard against near-silence: a full-scale-ish sine over N samples has
    // power ~ (A*N/2)^2; require at least 1% of the amplitude we send.
    let floor = (160.0 * samples.len() as f64 / 2.0).powi(2);
    if r >= ratio && pw >= floor {
        Ok(summary)
    } else {
        Err(format!("{want} Hz does not dominate: {summary}"))
    }
}

/// Unit checks of this module (the binary has harness = false, so they run as a scenario).
pub fn self_test() -> Result<(), String> {
    // µ-law: known code points and round-trip error bounds
    if mulaw_encode(0) != 0xff || mulaw_decode(0xff) != 0 {
        return Err(format!(
            "µ-law zero: enc {:#x} dec {}",
            mulaw_encode(0),
            mulaw_decode(0xff)
        ));
    }
    if mulaw_decode(0x80) != 32124 || mulaw_decode(0x00) != -32124 {
        return Err("µ-law extremes wrong".into());
    }
    for b in 0..=255u8 {
        // decode/encode is the identity except for the two zeros
        let back = mulaw_encode(mulaw_decode(b));
        if back != b && !(b == 0x7f && back == 0xff) {
            return Err(format!("µ-law byte {b:#x} re-encoded as {back:#x}"));
        }
    }
    for x in (-32000i32..32000).step_by(37) {
        let y = i32::from(mulaw_decode(mulaw_encode(x as i16)));
        if (x - y).abs() > (x.abs() / 16).max(8) {
            return Err(format!("µ-law round trip {x} -> {y}"));
        }
    }
    // Goertzel: the tone generator's output is detected, the other tone is not
    let decode = |f: f64| -> Vec<i16> {
        let mut t = Tone::new(f);
        (0..50)
            .flat_map(|_| t.next_frame())
            .map(mulaw_decode)
            .collect()
    };
    let a = decode(440.0);
    let b = decode(880.0);
    check_dominant(&a, 440.0, 880.0, 10.0, 8000)?;
    check_dominant(&b, 880.0, 440.0, 10.0, 8000)?;
    if check_dominant(&a, 880.0, 440.0, 10.0, 8000).is_ok() {
        return Err("880 Hz detected in a 440 Hz tone".into());
    }
    if check_dominant(&vec![0; 8000], 440.0, 880.0, 10.0, 8000).is_ok() {
        return Err("440 Hz detected in silence".into());
    }
    if check_dominant(&a[..4000], 440.0, 880.0, 10.0, 8000).is_ok() {
        return Err("0.5 s accepted as 1 s".into());
    }
    // a mix with 440 Hz 20 dB above 880 Hz still passes; equal mix fails
    let mix = |ka: f64, kb: f64| -> Vec<i16> {
        (0..8000)
            .map(|n| {
                let t = n as f64 / RATE;
                ((2.0 * PI * 440.0 * t).sin() * ka + (2.0 * PI * 880.0 * t).sin() * kb) as i16
            })
            .collect()
    };
    check_dominant(&mix(10000.0, 1000.0), 440.0, 880.0, 10.0, 8000)?;
    if check_dominant(&mix(5000.0, 5000.0), 440.0, 880.0, 10.0, 8000).is_ok() {
        return Err("equal mix accepted".into());
    }
    Ok(())
}

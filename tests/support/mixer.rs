//! The focus's audio mixer: every member hears the sum of the others (mix-minus), PCMU in and
//! out, 20 ms frames. Each leg's run loop pulls its own frames at its own pace (so each
//! outgoing stream has its own clock, timestamps and SSRC) and pushes what it hears.

use crate::tone::{self, Audio, FRAME};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

/// At most this much audio waits for a listener (1 s): older samples are dropped.
const MAX_QUEUED: usize = 8000;

#[derive(Default)]
struct State {
    members: Vec<usize>,
    /// (listener, speaker) → samples the listener has not heard yet.
    queues: HashMap<(usize, usize), VecDeque<i16>>,
    stopped: bool,
}

#[derive(Default)]
pub struct Mixer {
    state: Mutex<State>,
}

impl Mixer {
    pub fn new() -> Arc<Mixer> {
        Arc::new(Mixer::default())
    }

    /// Add member `id`; its leg's audio.
    pub fn join(self: &Arc<Self>, id: usize) -> MixAudio {
        let mut st = self.state.lock().unwrap();
        if !st.members.contains(&id) {
            st.members.push(id);
        }
        MixAudio {
            mixer: self.clone(),
            id,
        }
    }

    /// Member `id` leaves: its leg's run loop ends, the others stop hearing it.
    pub fn leave(&self, id: usize) {
        let mut st = self.state.lock().unwrap();
        st.members.retain(|m| *m != id);
        st.queues.retain(|(l, s), _| *l != id && *s != id);
    }

    /// Every leg's run loop ends.
    pub fn stop(&self) {
        self.state.lock().unwrap().stopped = true;
    }

    fn push(&self, speaker: usize, samples: &[i16]) {
        let mut st = self.state.lock().unwrap();
        let listeners: Vec<usize> = st
            .members
            .iter()
            .copied()
            .filter(|m| *m != speaker)
            .collect();
        for l in listeners {
            let q = st.queues.entry((l, speaker)).or_default();
            q.extend(samples);
            let excess = q.len().saturating_sub(MAX_QUEUED);
            q.drain(..excess);
        }
    }

    /// The next frame for `listener`: one frame of every other member's audio, summed.
    fn frame_for(&self, listener: usize) -> Vec<u8> {
        let mut st = self.state.lock().unwrap();
        let mut frames = Vec::new();
        for ((l, _), q) in st.queues.iter_mut() {
            if *l == listener {
                let n = q.len().min(FRAME);
                frames.push(q.drain(..n).collect::<Vec<i16>>());
            }
        }
        mix(&frames)
    }

    fn active(&self, id: usize) -> bool {
        let st = self.state.lock().unwrap();
        !st.stopped && st.members.contains(&id)
    }
}

/// Sum of `frames` (each up to FRAME samples; missing samples are silence), clipped to 16
/// bits, µ-law encoded: one 20 ms frame.
pub fn mix(frames: &[Vec<i16>]) -> Vec<u8> {
    (0..FRAME)
        .map(|i| {
            let sum: i32 = frames
                .iter()
                .map(|f| i32::from(f.get(i).copied().unwrap_or(0)))
                .sum();
            tone::mulaw_encode(sum.clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16)
        })
        .collect()
}

/// One member's view of the mixer, for its leg's run loop.
pub struct MixAudio {
    mixer: Arc<Mixer>,
    id: usize,
}

impl Audio for MixAudio {
    fn next_frame(&mut self) -> Vec<u8> {
        self.mixer.frame_for(self.id)
    }

    fn heard(&mut self, _total: usize, samples: &[i16]) {
        self.mixer.push(self.id, samples);
    }

    fn done(&self) -> bool {
        !self.mixer.active(self.id)
    }
}

/// Unit checks: mix-minus, clipping, silence.
pub fn self_test() -> Result<(), String> {
    let m = Mixer::new();
    let mut a = m.join(0);
    let mut b = m.join(1);
    let mut c = m.join(2);
    let mut t440 = tone::Tone::new(440.0);
    let mut t880 = tone::Tone::new(880.0);
    let (mut heard_a, mut heard_c) = (Vec::new(), Vec::new());
    for _ in 0..60 {
        let fa: Vec<i16> = t440
            .next_frame()
            .into_iter()
            .map(tone::mulaw_decode)
            .collect();
        let fb: Vec<i16> = t880
            .next_frame()
            .into_iter()
            .map(tone::mulaw_decode)
            .collect();
        a.heard(0, &fa);
        b.heard(0, &fb);
        heard_a.extend(a.next_frame().into_iter().map(tone::mulaw_decode));
        heard_c.extend(c.next_frame().into_iter().map(tone::mulaw_decode));
    }
    tone::check_dominant(&heard_a, 880.0, 440.0, 10.0, 8000).map_err(|e| format!("A: {e}"))?;
    tone::check_dominant(&heard_c, 440.0, 660.0, 10.0, 8000).map_err(|e| format!("C: {e}"))?;
    tone::check_dominant(&heard_c, 880.0, 660.0, 10.0, 8000).map_err(|e| format!("C: {e}"))?;
    let loud = mix(&[vec![30000; FRAME], vec![30000; FRAME]]);
    if tone::mulaw_decode(loud[0]) < 30000 {
        return Err(format!("no clipping: {}", tone::mulaw_decode(loud[0])));
    }
    if mix(&[]).iter().any(|b| tone::mulaw_decode(*b) != 0) {
        return Err("silence is not silent".into());
    }
    m.leave(1);
    if !b.done() || a.done() {
        return Err("leave did not end exactly the leaving member".into());
    }
    m.stop();
    if !a.done() {
        return Err("stop did not end the legs".into());
    }
    Ok(())
}

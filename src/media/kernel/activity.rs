//! The idle clock of flows forwarded by the kernel. Their packets bypass the relay, so the only
//! sign of life is their nftables packet counter: a flow is idle once that counter has not
//! changed for the inactivity timeout. Counters arrive asynchronously (a request now, a
//! [`CountersReport`] later, see [`KernelPath::request_counters`](super::KernelPath::request_counters)),
//! so this clock only ever judges by the most recent report received. Pure: time comes in as an
//! argument, nothing here does I/O.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::KernelCounters;
use crate::media::control::CountersReport;
use crate::media::FlowId;

/// What is known of the flows in the kernel, and the counters request in flight (at most one:
/// a listing can take longer than the interval between idle checks).
#[derive(Debug, Default)]
pub struct KernelActivity {
    flows: HashMap<FlowId, Seen>,
    next_seq: u64,
    in_flight: Option<u64>,
}

#[derive(Debug)]
struct Seen {
    /// The first request whose report describes this installation: an earlier one may have been
    /// read before it (and carry the counters of a previous installation under the same id).
    from_seq: u64,
    /// Packet count as last reported, and when it was last seen to change (or the install).
    packets: u64,
    since: Instant,
    /// As last reported, for metrics.
    counters: KernelCounters,
}

impl KernelActivity {
    pub fn new() -> KernelActivity {
        KernelActivity::default()
    }

    /// The flow has just been handed to the kernel: its clock starts now, at zero packets.
    pub fn installed(&mut self, id: FlowId, now: Instant) {
        self.flows.insert(
            id,
            Seen {
                from_seq: self.next_seq,
                packets: 0,
                since: now,
                counters: KernelCounters::default(),
            },
        );
    }

    /// The flow left the kernel (or closed); whether it was there.
    pub fn removed(&mut self, id: FlowId) -> bool {
        self.flows.remove(&id).is_some()
    }

    pub fn contains(&self, id: FlowId) -> bool {
        self.flows.contains_key(&id)
    }

    /// Flows in the kernel.
    pub fn len(&self) -> usize {
        self.flows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    /// The sequence number of a counters request to send now, if one is due: something is in
    /// the kernel and no request is in flight. The request counts as in flight from here on.
    pub fn request(&mut self) -> Option<u64> {
        if self.flows.is_empty() || self.in_flight.is_some() {
            return None;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.in_flight = Some(seq);
        Some(seq)
    }

    /// Whether a requested report has not arrived yet.
    pub fn in_flight(&self) -> bool {
        self.in_flight.is_some()
    }

    /// A report arrived at `now`. A failed read only ends the request (the clocks keep the last
    /// good figures). A flow the report lists no counter for counts as zero packets, as the
    /// synchronous read did.
    pub fn report(&mut self, report: &CountersReport, now: Instant) {
        if self.in_flight == Some(report.seq) {
            self.in_flight = None;
        }
        let Ok(counters) = &report.counters else {
            return;
        };
        for (id, seen) in &mut self.flows {
            if report.seq < seen.from_seq {
                continue;
            }
            let c = counters.get(id).copied().unwrap_or_default();
            seen.counters = c;
            if c.packets != seen.packets {
                seen.packets = c.packets;
                seen.since = now;
            }
        }
    }

    /// How long the flow's counter has not changed; `None` if it is not in the kernel.
    pub fn idle_for(&self, id: FlowId, now: Instant) -> Option<Duration> {
        self.flows
            .get(&id)
            .map(|s| now.saturating_duration_since(s.since))
    }

    /// The flow's counters as last reported (zero before the first report, or if unknown).
    pub fn counters(&self, id: FlowId) -> KernelCounters {
        self.flows
            .get(&id)
            .map_or_else(Default::default, |s| s.counters)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::kernel::KernelError;

    fn report(seq: u64, flows: &[(u64, u64)]) -> CountersReport {
        CountersReport {
            seq,
            counters: Ok(flows
                .iter()
                .map(|&(id, packets)| {
                    (
                        FlowId(id),
                        KernelCounters {
                            packets,
                            bytes: packets * 100,
                        },
                    )
                })
                .collect()),
        }
    }

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn idle_once_the_counter_stops_changing() {
        let t0 = Instant::now();
        let mut a = KernelActivity::new();
        assert_eq!(a.request(), None, "nothing in the kernel: nothing to read");
        a.installed(FlowId(1), t0);
        assert_eq!(a.idle_for(FlowId(1), t0 + 2 * S), Some(2 * S));
        let seq = a.request().expect("due");
        assert_eq!(a.request(), None, "one request in flight at a time");
        assert!(a.in_flight());
        a.report(&report(seq, &[(1, 50)]), t0 + 3 * S);
        assert!(!a.in_flight());
        assert_eq!(a.idle_for(FlowId(1), t0 + 3 * S), Some(Duration::ZERO));
        assert_eq!(a.counters(FlowId(1)).bytes, 5000);
        // Same count again: the clock keeps running from the last change.
        let seq = a.request().expect("due");
        a.report(&report(seq, &[(1, 50)]), t0 + 5 * S);
        assert_eq!(a.idle_for(FlowId(1), t0 + 6 * S), Some(3 * S));
        // A failed read changes nothing but ends the request.
        let seq = a.request().expect("due");
        a.report(
            &CountersReport {
                seq,
                counters: Err(KernelError::Stopped),
            },
            t0 + 7 * S,
        );
        assert!(!a.in_flight());
        assert_eq!(a.idle_for(FlowId(1), t0 + 7 * S), Some(4 * S));
        assert_eq!(a.counters(FlowId(1)).packets, 50);
        assert!(a.removed(FlowId(1)));
        assert_eq!(a.idle_for(FlowId(1), t0 + 7 * S), None);
        assert!(a.is_empty());
    }

    #[test]
    fn a_report_read_before_a_reinstall_is_ignored_for_that_flow() {
        let t0 = Instant::now();
        let mut a = KernelActivity::new();
        a.installed(FlowId(1), t0);
        a.installed(FlowId(2), t0);
        let old = a.request().expect("due");
        // Flow 1 leaves the kernel and comes back before the old report lands.
        a.removed(FlowId(1));
        a.installed(FlowId(1), t0 + S);
        a.report(&report(old, &[(1, 900), (2, 10)]), t0 + 2 * S);
        assert_eq!(a.counters(FlowId(1)), KernelCounters::default());
        assert_eq!(a.idle_for(FlowId(1), t0 + 2 * S), Some(S));
        assert_eq!(a.idle_for(FlowId(2), t0 + 2 * S), Some(Duration::ZERO));
        let new = a.request().expect("due");
        a.report(&report(new, &[(1, 3), (2, 10)]), t0 + 3 * S);
        assert_eq!(a.counters(FlowId(1)).packets, 3);
        assert_eq!(a.idle_for(FlowId(1), t0 + 3 * S), Some(Duration::ZERO));
        assert_eq!(a.idle_for(FlowId(2), t0 + 3 * S), Some(S));
    }

    #[test]
    fn a_flow_missing_from_a_report_counts_zero() {
        let t0 = Instant::now();
        let mut a = KernelActivity::new();
        a.installed(FlowId(1), t0);
        let seq = a.request().expect("due");
        a.report(&report(seq, &[(1, 7)]), t0 + S);
        let seq = a.request().expect("due");
        a.report(&report(seq, &[]), t0 + 2 * S);
        assert_eq!(a.counters(FlowId(1)).packets, 0);
        assert_eq!(a.idle_for(FlowId(1), t0 + 2 * S), Some(Duration::ZERO));
    }
}

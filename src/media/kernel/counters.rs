//! Reading the per-flow counters back: the `cnt4` / `cnt6` sets carry one counter per original
//! tuple, listed with `nft -j list set`, and a flow's figures are the sum of its two tuples.
//!
//! A listing takes ~0.6 s at 11 k flows, so the service never waits for one: the programmer
//! hands a [`Query`] (a snapshot of what is installed) to the [`Reader`] thread, which runs the
//! listing and sends the [`CountersReport`] to the channel the requester named. The reader is
//! its own thread, not the programmer's, so installs and removals are not held up by a listing
//! either.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

use super::{nft, FlowId, KernelError};
use crate::media::control::CountersReport;

/// Per-flow counters, both directions summed (packets that took the kernel path only).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KernelCounters {
    pub packets: u64,
    pub bytes: u64,
}

/// Original tuple (far end, local endpoint) → flow: how counter elements are attributed.
pub(super) type Keys = HashMap<(SocketAddr, SocketAddr), FlowId>;

/// Counters of the flows `installed` (zero when the kernel lists nothing for one), one
/// `nft -j list set` per family.
pub(super) fn read(
    table: &str,
    keys: &Keys,
    installed: impl Iterator<Item = FlowId>,
) -> Result<HashMap<FlowId, KernelCounters>, KernelError> {
    let mut out: HashMap<FlowId, KernelCounters> = installed
        .map(|id| (id, KernelCounters::default()))
        .collect();
    for fam in ["4", "6"] {
        let v = nft::list_json(table, "set", Some(&format!("cnt{fam}")))?;
        add_listing(&v, keys, &mut out);
    }
    Ok(out)
}

/// One counters request, as the programmer hands it to the reader: the flows installed at that
/// point and their tuples (shared copy-on-write with the programmer, so a snapshot costs an
/// `Arc` clone).
pub(super) struct Query {
    pub(super) seq: u64,
    pub(super) keys: Arc<Keys>,
    pub(super) installed: Vec<FlowId>,
    pub(super) reply: mpsc::Sender<CountersReport>,
}

/// The counter-reading thread. Started by the programmer thread, so it (and the `nft` children
/// it spawns) lives in the programmer's network namespace.
pub(super) struct Reader {
    tx: Option<mpsc::Sender<Query>>,
    thread: Option<JoinHandle<()>>,
}

impl Reader {
    pub(super) fn start(table: String) -> std::io::Result<Reader> {
        let (tx, rx) = mpsc::channel::<Query>();
        let thread = std::thread::Builder::new()
            .name("kernel-counters".into())
            .spawn(move || {
                for q in rx {
                    let counters = read(&table, &q.keys, q.installed.into_iter());
                    // The requester may be gone (shutting down): nothing to do then.
                    let _ = q.reply.send(CountersReport {
                        seq: q.seq,
                        counters,
                    });
                }
            })?;
        Ok(Reader {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// Queues a query; if the thread is gone, answers it at once with [`KernelError::Stopped`].
    pub(super) fn send(&self, q: Query) {
        let Some(tx) = &self.tx else {
            let _ = q.reply.send(CountersReport {
                seq: q.seq,
                counters: Err(KernelError::Stopped),
            });
            return;
        };
        if let Err(mpsc::SendError(q)) = tx.send(q) {
            let _ = q.reply.send(CountersReport {
                seq: q.seq,
                counters: Err(KernelError::Stopped),
            });
        }
    }

    /// Stops the thread after the listing in progress, if any (called before the table is
    /// deleted, so no listing fails against a missing table).
    pub(super) fn stop(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Adds the counters of one `nft -j list set` listing; elements of unknown tuples are skipped.
fn add_listing(v: &serde_json::Value, keys: &Keys, out: &mut HashMap<FlowId, KernelCounters>) {
    for obj in v["nftables"].as_array().into_iter().flatten() {
        for e in obj["set"]["elem"].as_array().into_iter().flatten() {
            let e = &e["elem"];
            let Some(parts) = e["val"]["concat"].as_array() else {
                continue;
            };
            let (Some(from), Some(to)) = (sockaddr(parts, 0), sockaddr(parts, 2)) else {
                continue;
            };
            let Some(id) = keys.get(&(from, to)) else {
                continue;
            };
            let c = out.entry(*id).or_default();
            c.packets += e["counter"]["packets"].as_u64().unwrap_or(0);
            c.bytes += e["counter"]["bytes"].as_u64().unwrap_or(0);
        }
    }
}

fn sockaddr(parts: &[serde_json::Value], i: usize) -> Option<SocketAddr> {
    let ip: IpAddr = parts.get(i)?.as_str()?.parse().ok()?;
    let port = u16::try_from(parts.get(i + 1)?.as_u64()?).ok()?;
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_sums_both_tuples_of_a_flow_and_skips_strangers() {
        // The shape `nft -j list set inet T cnt4` prints (nft 1.0.6).
        let v: serde_json::Value = serde_json::from_str(
            r#"{"nftables": [{"metainfo": {}}, {"set": {"name": "cnt4", "elem": [
              {"elem": {"val": {"concat": ["10.0.0.2", 5000, "10.0.0.1", 4000]},
                        "counter": {"packets": 3, "bytes": 300}}},
              {"elem": {"val": {"concat": ["10.1.0.2", 6000, "10.1.0.1", 4002]},
                        "counter": {"packets": 4, "bytes": 400}}},
              {"elem": {"val": {"concat": ["10.9.0.2", 1, "10.9.0.1", 2]},
                        "counter": {"packets": 99, "bytes": 99}}}
            ]}}]}"#,
        )
        .unwrap();
        let sa = |s: &str| s.parse::<SocketAddr>().unwrap();
        let keys: Keys = [
            ((sa("10.0.0.2:5000"), sa("10.0.0.1:4000")), FlowId(1)),
            ((sa("10.1.0.2:6000"), sa("10.1.0.1:4002")), FlowId(1)),
        ]
        .into();
        let mut out = HashMap::from([(FlowId(2), KernelCounters::default())]);
        add_listing(&v, &keys, &mut out);
        assert_eq!(
            out[&FlowId(1)],
            KernelCounters {
                packets: 7,
                bytes: 700
            }
        );
        assert_eq!(out[&FlowId(2)], KernelCounters::default());
        assert_eq!(out.len(), 2);
    }
}

//! Reading the per-flow counters back: the `cnt4` / `cnt6` sets carry one counter per original
//! tuple, listed with `nft -j list set`, and a flow's figures are the sum of its two tuples.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use super::{nft, FlowId, KernelError};

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

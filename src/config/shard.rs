//! One shard's share of a configuration, when the service runs several B2BUA engines (one per
//! core, `[service] shards`). Each engine owns its calls alone, so what the configuration
//! counts for the whole border is split among them before an engine sees it: the relay ports
//! of each realm (disjoint slices, so two engines never hand out one port) and the limits on
//! calls and rates (each engine enforces its part, so the border as a whole keeps the figure the
//! engineer wrote, within one per engine of rounding).
//!
//! Calls spread over the shards by the hash of their Call-ID, evenly on average: a partner
//! whose calls happen to fall mostly on one shard meets that shard's part of its limit first.

use super::Config;

/// `limit` divided among `count` shards, rounded up; 0 (no limit) stays 0.
fn part(limit: u64, count: u64) -> u64 {
    if limit == 0 {
        0
    } else {
        limit.div_ceil(count)
    }
}

/// Port pairs `lo..hi` (even RTP port, odd RTCP) split into `count` contiguous slices.
fn port_slice((lo, hi): (u16, u16), index: usize, count: usize) -> (u16, u16) {
    let pairs = usize::from(hi.saturating_sub(lo)) / 2;
    let start = pairs * index / count;
    let end = pairs * (index + 1) / count;
    let at = |p: usize| lo.saturating_add(u16::try_from(2 * p).unwrap_or(u16::MAX));
    let slice_hi = if index + 1 == count { hi } else { at(end) };
    (at(start), slice_hi)
}

impl Config {
    /// The share of shard `index` (of `count`): its slice of every realm's relay ports, and its
    /// part of `max_calls` and of each partner's `max_calls`, `max_cps` and `max_rps`.
    /// With one shard the configuration is returned as it is.
    pub fn shard(&self, index: usize, count: usize) -> Config {
        self.shard_in(index, count, count)
    }

    /// As [`Config::shard`], with the relay ports cut into `slices` (≥ `count`) slices of which
    /// the shard takes slice `index`: the slices past the shards' are left for another user of
    /// the relay (the ng control path, see [`Config::port_slice`]).
    pub fn shard_in(&self, index: usize, count: usize, slices: usize) -> Config {
        let mut c = self.port_slice(index, slices);
        if count <= 1 {
            return c;
        }
        let n = count as u64;
        c.sip.max_calls = part(c.sip.max_calls as u64, n) as usize;
        for r in &mut c.realms {
            for p in &mut r.peers {
                p.max_calls = part(p.max_calls as u64, n) as usize;
                p.max_cps = part(u64::from(p.max_cps), n) as u32;
                p.max_rps = part(u64::from(p.max_rps), n) as u32;
            }
        }
        c
    }

    /// This configuration with every realm's relay ports cut to slice `index` of `slices`.
    pub fn port_slice(&self, index: usize, slices: usize) -> Config {
        let mut c = self.clone();
        if slices > 1 {
            for r in &mut c.realms {
                r.media_ports = port_slice(r.media_ports, index, slices);
            }
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_slices_are_disjoint_and_cover_the_range() {
        let range = (20_000, 30_000);
        for count in 1..7 {
            let mut next = range.0;
            for i in 0..count {
                let (lo, hi) = port_slice(range, i, count);
                assert_eq!(lo, next, "slice {i} of {count} starts where the last ended");
                assert_eq!(lo % 2, 0);
                assert!(hi >= lo);
                next = hi;
            }
            assert_eq!(next, range.1);
        }
    }

    #[test]
    fn limits_are_split_and_no_limit_stays_none() {
        assert_eq!(part(200, 2), 100);
        assert_eq!(part(5, 2), 3);
        assert_eq!(part(1, 4), 1);
        assert_eq!(part(0, 4), 0);
    }

    #[test]
    fn the_share_of_a_config() {
        let node = "name = \"a\"\nhome_domains = [\"operator-a.example\"]\n\
            [sip]\nmax_calls = 1001\n\
            [[realm]]\nname = \"home\"\nkind = \"home\"\nlisten = [\"udp:127.0.10.2:5060\"]\n\
            media_ports = \"20000-29999\"\ncore = \"udp:127.0.10.1:5060\"\n\
            [[realm]]\nname = \"interconnect\"\nkind = \"peer\"\nlisten = [\"udp:127.0.20.2:5060\"]\n\
            media_ports = \"30000-39999\"\npeers = [\"b.toml\"]\n";
        let peer = "name = \"operator-b\"\ndomains = [\"operator-b.example\"]\n\
            sources = [\"127.0.30.2\"]\nnext_hop = \"udp:127.0.30.2:5060\"\n\
            max_calls = 7\nmax_cps = 9\nmax_rps = 0\n";
        let read = |_: &std::path::Path| Ok(peer.to_string());
        let cfg = crate::config::parse(node, std::path::Path::new("/etc/palisade/a.toml"), &read)
            .expect("config parses");
        assert_eq!(cfg.shard(0, 1), cfg);
        let halves = [cfg.shard(0, 2), cfg.shard(1, 2)];
        for (ri, r) in cfg.realms.iter().enumerate() {
            let (a, b) = (
                halves[0].realms[ri].media_ports,
                halves[1].realms[ri].media_ports,
            );
            assert_eq!((a.0, b.1), r.media_ports);
            assert_eq!(a.1, b.0);
        }
        let p = &halves[1].realms[1].peers[0];
        assert_eq!((p.max_calls, p.max_cps, p.max_rps), (4, 5, 0));
        assert_eq!(halves[0].sip.max_calls, 501);
    }
}

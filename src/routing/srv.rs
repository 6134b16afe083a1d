//! SRV target ordering (RFC 2782): lowest priority first; within one priority, weighted random
//! selection, where a target of weight 0 is rarely chosen first but still tried. The random
//! source is passed in, so the order is reproducible in tests.

use rand::Rng;

/// One SRV record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Srv {
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    /// Target host, absolute with the trailing dot.
    pub target: String,
}

impl std::fmt::Display for Srv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SRV {} {} {} {}",
            self.priority, self.weight, self.port, self.target
        )
    }
}

/// The records in the order to try them. A single `.` target means the service is decidedly
/// not available (RFC 2782) and yields nothing.
pub fn order(records: &[Srv], rng: &mut impl Rng) -> Vec<Srv> {
    if records.len() == 1 && records[0].target == "." {
        return Vec::new();
    }
    let mut rest: Vec<Srv> = records
        .iter()
        .filter(|r| r.target != ".")
        .cloned()
        .collect();
    rest.sort_by_key(|r| r.priority);
    let mut out = Vec::with_capacity(rest.len());
    while !rest.is_empty() {
        let prio = rest[0].priority;
        let n = rest.iter().take_while(|r| r.priority == prio).count();
        let mut group: Vec<Srv> = rest.drain(..n).collect();
        // RFC 2782: zero-weight entries first in the list, then pick by a running sum.
        group.sort_by_key(|r| r.weight != 0);
        while !group.is_empty() {
            let total: u32 = group.iter().map(|r| u32::from(r.weight)).sum();
            let pick = rng.random_range(0..=total);
            let mut sum = 0u32;
            let idx = group
                .iter()
                .position(|r| {
                    sum += u32::from(r.weight);
                    sum >= pick
                })
                .unwrap_or(0);
            out.push(group.remove(idx));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn s(priority: u16, weight: u16, target: &str) -> Srv {
        Srv {
            priority,
            weight,
            port: 5060,
            target: target.into(),
        }
    }

    #[test]
    fn priority_first() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let got = order(&[s(20, 0, "b."), s(10, 0, "a."), s(30, 5, "c.")], &mut rng);
        let names: Vec<_> = got.iter().map(|r| r.target.as_str()).collect();
        assert_eq!(names, ["a.", "b.", "c."]);
    }

    #[test]
    fn weights_share_first_place_in_proportion() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let set = [
            s(10, 90, "heavy."),
            s(10, 10, "light."),
            s(10, 0, "zero."),
            s(20, 1, "last."),
        ];
        let mut heavy_first = 0;
        for _ in 0..2000 {
            let got = order(&set, &mut rng);
            assert_eq!(got.len(), 4, "every target is tried");
            assert_eq!(
                got[3].target, "last.",
                "a higher priority never comes first"
            );
            if got[0].target == "heavy." {
                heavy_first += 1;
            }
        }
        // Expected 90/100 of the time (the zero weight wins only on a pick of 0).
        assert!(
            (1700..=1900).contains(&heavy_first),
            "heavy first {heavy_first} of 2000"
        );
    }

    #[test]
    fn dot_target_means_no_service() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        assert!(order(&[s(0, 0, ".")], &mut rng).is_empty());
    }
}

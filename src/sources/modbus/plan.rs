//! Request planning: the fewest read requests that cover every tag of a device.
//!
//! Tags are grouped by unit id and register kind, sorted by address, and packed greedily: a request
//! grows while the next tag starts at most `max_gap` registers (or bits) after what it covers and the
//! whole span stays within the protocol limit (125 registers, 2,000 coils or inputs per request).
//! Greedy packing of intervals sorted by start is optimal here; `tests::greedy_plan_is_minimal`
//! checks it against an exhaustive search.

use serde::{Deserialize, Serialize};

/// Register kinds, each read with its own function code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RegisterKind {
    /// Coils (0x01), read/write bits.
    Coil,
    /// Discrete inputs (0x02), read-only bits.
    Discrete,
    /// Input registers (0x04), read-only words.
    Input,
    /// Holding registers (0x03), read/write words.
    Holding,
}

impl RegisterKind {
    /// Most items one request may read.
    pub fn limit(self) -> u16 {
        match self {
            RegisterKind::Coil | RegisterKind::Discrete => 2000,
            RegisterKind::Input | RegisterKind::Holding => 125,
        }
    }

    /// Whether items are bits.
    pub fn is_bits(self) -> bool {
        matches!(self, RegisterKind::Coil | RegisterKind::Discrete)
    }

    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            RegisterKind::Coil => "coil",
            RegisterKind::Discrete => "discrete",
            RegisterKind::Input => "input",
            RegisterKind::Holding => "holding",
        }
    }
}

/// What a tag occupies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// Unit (slave) id.
    pub unit: u8,
    /// Register kind.
    pub kind: RegisterKind,
    /// First address (0-based PDU address).
    pub start: u16,
    /// Number of registers or bits.
    pub count: u16,
}

impl Span {
    fn end(&self) -> u32 {
        u32::from(self.start) + u32::from(self.count)
    }
}

/// One read request and the tags it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    /// Unit id.
    pub unit: u8,
    /// Register kind.
    pub kind: RegisterKind,
    /// First address.
    pub start: u16,
    /// Items to read.
    pub count: u16,
    /// Indexes of the tags (into the slice given to [`plan`]) this request covers.
    pub tags: Vec<usize>,
}

/// Plans the reads for `spans` (one per tag).
pub fn plan(spans: &[Span], max_gap: u16) -> Vec<Read> {
    let mut order: Vec<usize> = (0..spans.len()).collect();
    order.sort_by_key(|&i| (spans[i].unit, spans[i].kind, spans[i].start, spans[i].count));
    let mut reads: Vec<Read> = Vec::new();
    let mut end: u32 = 0;
    for i in order {
        let s = spans[i];
        if let Some(r) = reads.last_mut() {
            let same_group = r.unit == s.unit && r.kind == s.kind;
            let new_end = end.max(s.end());
            let fits = new_end - u32::from(r.start) <= u32::from(s.kind.limit());
            let close = u32::from(s.start) <= end + u32::from(max_gap);
            if same_group && fits && close {
                end = new_end;
                r.count = (end - u32::from(r.start)) as u16;
                r.tags.push(i);
                continue;
            }
        }
        end = s.end();
        reads.push(Read {
            unit: s.unit,
            kind: s.kind,
            start: s.start,
            count: s.count,
            tags: vec![i],
        });
    }
    reads
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(kind: RegisterKind, start: u16, count: u16) -> Span {
        Span {
            unit: 1,
            kind,
            start,
            count,
        }
    }

    #[test]
    fn merges_within_gap_and_limit_and_splits_groups() {
        use RegisterKind::*;
        let spans = [
            span(Holding, 0, 2),
            span(Holding, 2, 2),
            span(Holding, 10, 1), // gap of 6 from 4
            span(Holding, 30, 2), // gap of 19: new request
            span(Input, 0, 2),    // another function code
            Span {
                unit: 2,
                kind: Holding,
                start: 0,
                count: 1,
            }, // another unit
            span(Holding, 120, 10), // 30..130 would be 100 registers: fits
            span(Holding, 160, 2), // 30..162 is 132 > 125: new request
            span(Coil, 0, 1),
            span(Coil, 1999, 1), // 2,000 bits: one request, but gap too large
        ];
        let reads = plan(&spans, 8);
        let shape: Vec<(u8, RegisterKind, u16, u16)> = reads
            .iter()
            .map(|r| (r.unit, r.kind, r.start, r.count))
            .collect();
        assert_eq!(
            shape,
            vec![
                (1, Coil, 0, 1),
                (1, Coil, 1999, 1),
                (1, Input, 0, 2),
                (1, Holding, 0, 11),
                (1, Holding, 30, 2),
                (1, Holding, 120, 10),
                (1, Holding, 160, 2),
                (2, Holding, 0, 1),
            ]
        );
        let big = plan(&[span(Coil, 0, 1), span(Coil, 1999, 1)], 2000);
        assert_eq!(big.len(), 1, "2,000 coils fit one request");
        let every: Vec<usize> = {
            let mut t: Vec<usize> = reads.iter().flat_map(|r| r.tags.clone()).collect();
            t.sort();
            t
        };
        assert_eq!(
            every,
            (0..spans.len()).collect::<Vec<_>>(),
            "every tag is covered once"
        );
    }

    /// Whether one request can cover all these spans (same group, within limit, gaps ≤ max_gap).
    fn feasible(group: &[Span], max_gap: u16) -> bool {
        let first = group[0];
        if group
            .iter()
            .any(|s| s.unit != first.unit || s.kind != first.kind)
        {
            return false;
        }
        let mut sorted = group.to_vec();
        sorted.sort_by_key(|s| s.start);
        let start = u32::from(sorted[0].start);
        let mut end = sorted[0].end();
        for s in &sorted[1..] {
            if u32::from(s.start) > end + u32::from(max_gap) {
                return false;
            }
            end = end.max(s.end());
        }
        end - start <= u32::from(first.kind.limit())
    }

    /// The fewest requests, by trying every partition of the spans into groups.
    fn optimum(spans: &[Span], max_gap: u16) -> usize {
        fn go(
            i: usize,
            spans: &[Span],
            groups: &mut Vec<Vec<Span>>,
            best: &mut usize,
            max_gap: u16,
        ) {
            if groups.len() >= *best {
                return;
            }
            if i == spans.len() {
                if groups.iter().all(|g| feasible(g, max_gap)) {
                    *best = groups.len();
                }
                return;
            }
            for g in 0..groups.len() {
                groups[g].push(spans[i]);
                go(i + 1, spans, groups, best, max_gap);
                groups[g].pop();
            }
            groups.push(vec![spans[i]]);
            go(i + 1, spans, groups, best, max_gap);
            groups.pop();
        }
        let mut best = usize::MAX;
        go(0, spans, &mut Vec::new(), &mut best, max_gap);
        best
    }

    #[test]
    fn greedy_plan_is_minimal() {
        let mut rng = fastrand::Rng::with_seed(42);
        for _ in 0..400 {
            let n = rng.usize(1..=7);
            let spans: Vec<Span> = (0..n)
                .map(|_| Span {
                    unit: rng.u8(1..=2),
                    kind: if rng.bool() {
                        RegisterKind::Holding
                    } else {
                        RegisterKind::Coil
                    },
                    start: rng.u16(0..300),
                    count: rng.u16(1..=4),
                })
                .collect();
            let max_gap = rng.u16(0..20);
            let reads = plan(&spans, max_gap);
            for r in &reads {
                let group: Vec<Span> = r.tags.iter().map(|&i| spans[i]).collect();
                assert!(
                    feasible(&group, max_gap),
                    "plan made an infeasible request {r:?} for {spans:?}"
                );
            }
            assert_eq!(
                reads.len(),
                optimum(&spans, max_gap),
                "not minimal for {spans:?}, max_gap {max_gap}"
            );
        }
    }
}

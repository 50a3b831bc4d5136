//! Time as sets of intervals: the union of what ran, how much two sets overlap, and which mix ran when. Every
//! breakdown of GPU time is one of these over the ops' [start, end) intervals.

/// The union of intervals, sorted and disjoint. Touching intervals merge, as HTA merges them (a new group starts
/// only when an op starts after every earlier one ended).
pub fn union(intervals: impl Iterator<Item = (f64, f64)>) -> Vec<(f64, f64)> {
    let mut sorted: Vec<(f64, f64)> = intervals
        .filter(|(s, e)| s.is_finite() && e.is_finite())
        .collect();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut merged: Vec<(f64, f64)> = Vec::with_capacity(sorted.len() / 2 + 1);
    for (start, end) in sorted {
        match merged.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => merged.push((start, end.max(start))),
        }
    }
    merged
}

/// The time a union covers.
pub fn covered(intervals: &[(f64, f64)]) -> f64 {
    // A fold from +0: an empty `sum` of floats is -0, which prints as "-0".
    intervals.iter().fold(0.0, |total, (s, e)| total + (e - s))
}

/// The time two unions share.
pub fn overlap(a: &[(f64, f64)], b: &[(f64, f64)]) -> f64 {
    let (mut i, mut j, mut shared) = (0, 0, 0.0);
    while i < a.len() && j < b.len() {
        let start = a[i].0.max(b[j].0);
        let end = a[i].1.min(b[j].1);
        if end > start {
            shared += end - start;
        }
        if a[i].1 < b[j].1 {
            i += 1;
        } else {
            j += 1;
        }
    }
    shared
}

/// For unions tagged with bits, the time each non-empty combination of bits ran and nothing else did:
/// `(mask, time)` pieces, summed by the caller.
pub fn exclusive_segments(tagged: &[(u8, Vec<(f64, f64)>)]) -> Vec<(u8, f64)> {
    let mut edges: Vec<(f64, u8, bool)> = tagged
        .iter()
        .flat_map(|(bit, intervals)| {
            intervals
                .iter()
                .flat_map(move |(s, e)| [(*s, *bit, true), (*e, *bit, false)])
        })
        .collect();
    edges.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut mask = 0u8;
    let mut pieces = Vec::new();
    for (i, (at, bit, starts)) in edges.iter().enumerate() {
        if *starts {
            mask |= bit;
        } else {
            mask &= !bit;
        }
        if let Some((next, _, _)) = edges.get(i + 1)
            && mask != 0
            && *next > *at
        {
            pieces.push((mask, next - at));
        }
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn touching_and_nested_intervals_merge() {
        let merged =
            union([(0.0, 2.0), (2.0, 3.0), (5.0, 9.0), (6.0, 7.0), (10.0, 11.0)].into_iter());
        assert_eq!(merged, [(0.0, 3.0), (5.0, 9.0), (10.0, 11.0)]);
        assert_eq!(covered(&merged), 8.0);
    }

    #[test]
    fn overlap_counts_only_shared_time() {
        let a = [(0.0, 4.0), (6.0, 10.0)];
        let b = [(3.0, 7.0), (9.0, 12.0)];
        assert_eq!(overlap(&a, &b), 1.0 + 1.0 + 1.0);
        assert_eq!(overlap(&a, &[]), 0.0);
    }

    #[test]
    fn each_mix_gets_the_time_it_ran_alone() {
        let tagged = [
            (1, vec![(0.0, 10.0)]),
            (2, vec![(5.0, 15.0)]),
            (4, vec![(20.0, 21.0)]),
        ];
        let mut by_mask = std::collections::BTreeMap::new();
        for (mask, t) in exclusive_segments(&tagged) {
            *by_mask.entry(mask).or_insert(0.0) += t;
        }
        assert_eq!(
            by_mask.into_iter().collect::<Vec<_>>(),
            [(1, 5.0), (2, 5.0), (3, 5.0), (4, 1.0)]
        );
    }
}

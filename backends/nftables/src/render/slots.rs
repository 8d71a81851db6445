//! Which slot each endpoint occupies in the DNAT slot maps.
//!
//! A full sync numbers endpoints in plan order. After that an endpoint keeps its slot: a new
//! endpoint takes a freed slot, and when the set shrinks, endpoints from the end move into the
//! holes. So replacing one endpoint of n rewrites one element per key instead of up to n, and
//! a rolling update of a large Deployment costs O(1) elements per pod.

use std::collections::BTreeSet;
use std::net::SocketAddr;

/// The slot order for `now` (any order) that moves as few endpoints of `before` as possible.
/// The result holds exactly the elements of `now`.
pub fn stable_order(before: &[SocketAddr], now: &[SocketAddr]) -> Vec<SocketAddr> {
    let wanted: BTreeSet<&SocketAddr> = now.iter().collect();
    let kept: BTreeSet<&SocketAddr> = before.iter().filter(|e| wanted.contains(e)).collect();
    let mut fresh = now.iter().filter(|e| !kept.contains(e));
    let mut slots: Vec<Option<SocketAddr>> = before
        .iter()
        .map(|e| kept.contains(e).then_some(*e))
        .collect();
    for slot in slots.iter_mut().filter(|s| s.is_none()) {
        match fresh.next() {
            Some(e) => *slot = Some(*e),
            None => break,
        }
    }
    slots.extend(fresh.map(|e| Some(*e)));
    // Shrunk: fill the remaining holes from the end.
    while let Some(hole) = slots.iter().position(Option::is_none) {
        match slots.pop() {
            Some(Some(last)) if hole < slots.len() => slots[hole] = Some(last),
            _ => {}
        }
    }
    slots.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eps(ports: &[u16]) -> Vec<SocketAddr> {
        ports
            .iter()
            .map(|p| SocketAddr::from(([10, 0, 0, 1], *p)))
            .collect()
    }

    fn moved(before: &[SocketAddr], after: &[SocketAddr]) -> usize {
        before.iter().zip(after).filter(|(b, a)| b != a).count()
    }

    #[test]
    fn a_replaced_endpoint_takes_the_freed_slot() {
        let before = eps(&[1, 2, 3, 4]);
        let after = stable_order(&before, &eps(&[2, 3, 4, 9]));
        assert_eq!(after, eps(&[9, 2, 3, 4]));
    }

    #[test]
    fn growth_appends_and_shrinking_moves_the_tail_into_holes() {
        let before = eps(&[1, 2, 3, 4, 5]);
        assert_eq!(
            stable_order(&before, &eps(&[1, 2, 3, 4, 5, 6])),
            eps(&[1, 2, 3, 4, 5, 6])
        );
        assert_eq!(
            stable_order(&before, &eps(&[1, 3, 4, 5])),
            eps(&[1, 5, 3, 4])
        );
        assert_eq!(stable_order(&before, &eps(&[4])), eps(&[4]));
        assert_eq!(stable_order(&before, &eps(&[1, 2])), eps(&[1, 2]));
        assert_eq!(stable_order(&before, &[]), eps(&[]));
        assert_eq!(stable_order(&[], &eps(&[7, 8])), eps(&[7, 8]));
    }

    #[test]
    fn the_result_is_always_the_new_set_with_few_moves() {
        // Every subset transition of a 6-element universe.
        let all = eps(&[1, 2, 3, 4, 5, 6]);
        let subset = |mask: u32| -> Vec<SocketAddr> {
            all.iter()
                .enumerate()
                .filter(|(i, _)| mask & (1 << i) != 0)
                .map(|(_, e)| *e)
                .collect()
        };
        for a in 0..64u32 {
            for b in 0..64u32 {
                let (before, now) = (subset(a), subset(b));
                let after = stable_order(&before, &now);
                let mut sorted = after.clone();
                sorted.sort();
                assert_eq!(sorted, now, "{before:?} -> {now:?}: {after:?}");
                // Each slot that changes is one removed endpoint's, or one the shrink moved.
                let removed = before.iter().filter(|e| !now.contains(e)).count();
                assert!(
                    moved(&before, &after) <= 2 * removed,
                    "{before:?} -> {now:?}: {after:?}"
                );
            }
        }
    }
}

//! Load balancing across the IP tokens that serve one model: weighted "power of two
//! choices" on outstanding requests, skipping targets whose breaker is open.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use rand::Rng;

/// One target (IP token) that can serve the model, as the balancer sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    /// Configured share of traffic. 0 drains the target: it is chosen only when every
    /// available target has weight 0 (then all count as equal).
    pub weight: u32,
    /// Requests in flight to it from this gateway ([`Outstanding::get`]).
    pub outstanding: u32,
    /// Its breaker lets calls through ([`CircuitBreaker::is_available`](super::breaker::CircuitBreaker::is_available)).
    pub available: bool,
}

/// Chooses a target: two distinct available candidates drawn at random in proportion to
/// their weights, and of those the one with fewer outstanding requests per unit of weight
/// (ties go to the first drawn, so an idle pool is split by weight). `None` when no
/// candidate is available. Allocation-free, O(n).
pub fn pick(candidates: &[Candidate], rng: &mut impl Rng) -> Option<usize> {
    let available = candidates.iter().filter(|c| c.available).count();
    if available == 0 {
        return None;
    }
    let all_drained = candidates.iter().all(|c| !c.available || c.weight == 0);
    let weight = |c: &Candidate| -> u64 {
        match (c.available, all_drained) {
            (false, _) => 0,
            (true, true) => 1,
            (true, false) => u64::from(c.weight),
        }
    };
    let first = draw(candidates, &weight, None, rng)?;
    let Some(second) = draw(candidates, &weight, Some(first), rng) else {
        return Some(first);
    };
    let load = |i: usize| candidates.get(i).map_or(0, |c| u64::from(c.outstanding));
    // Compare outstanding/weight without division: a.out · b.w vs b.out · a.w.
    let (w1, w2) = (candidates.get(first).map_or(1, &weight), candidates.get(second).map_or(1, &weight));
    if u128::from(load(second)) * u128::from(w1) < u128::from(load(first)) * u128::from(w2) {
        Some(second)
    } else {
        Some(first)
    }
}

/// A weighted draw among candidates of positive weight, leaving out `except`.
fn draw(
    candidates: &[Candidate],
    weight: &impl Fn(&Candidate) -> u64,
    except: Option<usize>,
    rng: &mut impl Rng,
) -> Option<usize> {
    let eligible = |(i, c): &(usize, &Candidate)| Some(*i) != except && weight(c) > 0;
    let total: u64 = candidates.iter().enumerate().filter(eligible).map(|(_, c)| weight(c)).sum();
    if total == 0 {
        return None;
    }
    let mut point = rng.random_range(0..total);
    for (i, c) in candidates.iter().enumerate().filter(eligible) {
        let w = weight(c);
        if point < w {
            return Some(i);
        }
        point -= w;
    }
    None
}

/// The number of requests in flight to one target, shared by every request to it.
#[derive(Debug, Clone, Default)]
pub struct Outstanding(Arc<AtomicU32>);

impl Outstanding {
    /// A counter at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one request in until the guard is dropped. Keep the guard for the whole call,
    /// streaming included.
    pub fn start(&self) -> OutstandingGuard {
        self.0.fetch_add(1, Ordering::Relaxed);
        OutstandingGuard(Arc::clone(&self.0))
    }

    /// Requests in flight now.
    pub fn get(&self) -> u32 {
        self.0.load(Ordering::Relaxed)
    }
}

/// One request counted in an [`Outstanding`]; dropping it counts the request out.
#[derive(Debug)]
#[must_use = "the request is counted out as soon as the guard is dropped"]
pub struct OutstandingGuard(Arc<AtomicU32>);

impl Drop for OutstandingGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    fn c(weight: u32, outstanding: u32, available: bool) -> Candidate {
        Candidate { weight, outstanding, available }
    }

    fn counts(candidates: &[Candidate], n: usize, seed: u64) -> Vec<usize> {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut counts = vec![0; candidates.len()];
        for _ in 0..n {
            counts[pick(candidates, &mut rng).unwrap()] += 1;
        }
        counts
    }

    #[test]
    fn none_without_an_available_candidate() {
        let mut rng = StdRng::seed_from_u64(1);
        assert_eq!(pick(&[], &mut rng), None);
        assert_eq!(pick(&[c(1, 0, false), c(5, 0, false)], &mut rng), None);
    }

    #[test]
    fn never_picks_an_unavailable_candidate() {
        let candidates = [c(100, 0, false), c(1, 50, true), c(100, 0, false), c(1, 70, true)];
        let got = counts(&candidates, 5000, 2);
        assert_eq!((got[0], got[2]), (0, 0));
        // The less loaded of the two available ones wins every time.
        assert_eq!(got[1], 5000);
        assert_eq!(counts(&[c(0, 0, false), c(1, 9, true)], 100, 3), vec![0, 100]);
    }

    #[test]
    fn respects_weights_when_idle() {
        let candidates = [c(1, 0, true), c(3, 0, true)];
        let got = counts(&candidates, 20_000, 4);
        let share = got[1] as f64 / 20_000.0;
        assert!((0.72..0.78).contains(&share), "{got:?}");
        let three = counts(&[c(1, 0, true), c(2, 0, true), c(7, 0, true)], 30_000, 5);
        assert!(three[0] < three[1] && three[1] < three[2], "{three:?}");
    }

    #[test]
    fn prefers_the_less_loaded_relative_to_weight() {
        // Equal weights: the idle one wins whenever it is drawn (always, with two).
        assert_eq!(counts(&[c(1, 10, true), c(1, 0, true)], 1000, 6), vec![0, 1000]);
        // 4 outstanding at weight 4 is less loaded than 2 at weight 1.
        assert_eq!(counts(&[c(1, 2, true), c(4, 4, true)], 1000, 7), vec![0, 1000]);
        // Among many, the most loaded is picked only if drawn twice, which cannot happen.
        let got = counts(&[c(1, 1, true), c(1, 2, true), c(1, 3, true), c(1, 100, true)], 10_000, 8);
        assert_eq!(got[3], 0);
        assert!(got[0] > got[1] && got[1] > got[2], "{got:?}");
    }

    #[test]
    fn zero_weight_drains_unless_everything_is_drained() {
        assert_eq!(counts(&[c(0, 0, true), c(1, 50, true)], 1000, 9), vec![0, 1000]);
        let got = counts(&[c(0, 0, true), c(0, 0, true)], 1000, 10);
        assert_eq!(got.iter().sum::<usize>(), 1000);
        assert!(got[0] > 300 && got[1] > 300, "{got:?}");
        assert_eq!(counts(&[c(0, 3, true)], 10, 11), vec![10]);
    }

    #[test]
    fn huge_weights_and_loads_do_not_overflow() {
        let got =
            counts(&[c(u32::MAX, u32::MAX, true), c(u32::MAX, 0, true), c(u32::MAX, 1, true)], 1000, 12);
        assert_eq!(got[0], 0);
    }

    #[test]
    fn outstanding_counts_guards() {
        let o = Outstanding::new();
        let a = o.start();
        let b = o.clone().start();
        assert_eq!(o.get(), 2);
        drop(a);
        assert_eq!(o.get(), 1);
        drop(b);
        assert_eq!(o.get(), 0);
    }
}

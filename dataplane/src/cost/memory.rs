//! Budget counters in this process.
//!
//! One mutex over compact tables; every operation is a few hash lookups under it, with no
//! allocation on the hot path once a budget-window exists:
//!
//! - `budgets`: budget id → its windows (usually one or two), each pointing at a slot;
//! - `slots`: the counters themselves, addressed by index so a reservation can remember its
//!   chain as a handful of `u32`s;
//! - `reservations`: keyed by a 128-bit hash of the reservation id (two SipHash-1-3 with
//!   random per-process keys, so ids need no copy and collisions are out of reach);
//! - `deadlines`: reservations ordered by deadline, so sweeping expired ones costs nothing
//!   when there are none.
//!
//! Ended windows are dropped once they are a day old and nothing references them.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::sync::{Arc, Mutex, MutexGuard};

use super::counters::{Admission, BudgetKey, CounterState};

/// How long an ended window's counters stay readable when unreferenced.
const RETAIN_ENDED_MS: i64 = 24 * 3_600_000;

/// Budget counters held in this process. Cloning shares them.
#[derive(Clone, Default)]
pub struct MemoryCounters {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Default)]
struct Inner {
    ids: IdHash,
    budgets: HashMap<String, Vec<WindowSlot>>,
    slots: Vec<Slot>,
    free_slots: Vec<u32>,
    reservations: HashMap<u128, Reservation, BuildHasherDefault<PrehashedU128>>,
    deadlines: BTreeSet<(i64, u128)>,
    /// Claimed alerts: (slot, which). Few; cleared with their slot.
    alerts: HashSet<(u32, AlertClaim)>,
}

/// An alert claimed once per budget-window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum AlertClaim {
    /// Spending crossed this percentage of the limit.
    Threshold(u32),
    /// A settle charged more than was reserved.
    Overrun,
}

#[derive(Debug, Clone, Copy)]
struct WindowSlot {
    start_ms: i64,
    end_ms: i64,
    slot: u32,
}

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    spent: u64,
    reserved: u64,
    /// Live reservations pointing here: the slot cannot be dropped while any remain.
    refs: u32,
}

struct Reservation {
    slots: SlotList,
    amount: u64,
    deadline_ms: i64,
}

impl MemoryCounters {
    /// Empty counters.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // NB: nothing panics while holding the lock, so poisoning cannot leave the tables
        // half-updated; recover the guard rather than propagate a panic.
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// See [`CounterStore::reserve`](super::CounterStore::reserve).
    pub fn reserve(
        &self,
        id: &str,
        chain: &[BudgetKey],
        amount: u64,
        deadline_ms: i64,
        now_ms: i64,
    ) -> Admission {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let hash = inner.ids.hash(id);
        inner.sweep(now_ms);
        if inner.reservations.contains_key(&hash) {
            return Admission::Admitted;
        }
        let mut slots = SlotList::default();
        for key in chain {
            let slot = inner.slot_for(key, Some(now_ms));
            if key.hard {
                let s = inner.slots[slot as usize];
                let used = s.spent.saturating_add(s.reserved);
                // A budget listed twice is charged once, so check against the first sighting.
                let already = if slots.contains(slot) { 0 } else { amount };
                if used.saturating_add(already) > key.limit_micros {
                    return Admission::Refused {
                        budget_id: key.id.clone(),
                        remaining_micros: key.limit_micros.saturating_sub(used),
                        window_end_ms: key.window.end_ms,
                    };
                }
            }
            if !slots.contains(slot) {
                slots.push(slot);
            }
        }
        for &slot in slots.as_slice() {
            let s = &mut inner.slots[slot as usize];
            s.reserved = s.reserved.saturating_add(amount);
            s.refs += 1;
        }
        inner.reservations.insert(hash, Reservation { slots, amount, deadline_ms });
        inner.deadlines.insert((deadline_ms, hash));
        Admission::Admitted
    }

    /// See [`CounterStore::settle`](super::CounterStore::settle).
    pub fn settle(&self, id: &str, actual: u64) -> bool {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let hash = inner.ids.hash(id);
        let Some(r) = inner.reservations.remove(&hash) else {
            return false;
        };
        inner.deadlines.remove(&(r.deadline_ms, hash));
        for &slot in r.slots.as_slice() {
            let s = &mut inner.slots[slot as usize];
            s.reserved = s.reserved.saturating_sub(r.amount);
            s.spent = s.spent.saturating_add(actual);
            s.refs -= 1;
        }
        true
    }

    /// See [`CounterStore::expire`](super::CounterStore::expire).
    pub fn expire(&self, now_ms: i64) -> u64 {
        self.lock().sweep(now_ms)
    }

    /// See [`CounterStore::state`](super::CounterStore::state).
    pub fn state(&self, key: &BudgetKey) -> CounterState {
        let inner = self.lock();
        match inner.find(key) {
            Some(slot) => {
                let s = inner.slots[slot as usize];
                CounterState { spent_micros: s.spent, reserved_micros: s.reserved }
            }
            None => CounterState::default(),
        }
    }

    /// See [`CounterStore::state_at`](super::CounterStore::state_at).
    pub fn state_at(&self, key: &BudgetKey, now_ms: i64) -> CounterState {
        self.expire(now_ms);
        self.state(key)
    }

    /// See [`CounterStore::set_spent`](super::CounterStore::set_spent).
    pub fn set_spent(&self, key: &BudgetKey, spent: u64) {
        let mut inner = self.lock();
        let slot = inner.slot_for(key, None);
        inner.slots[slot as usize].spent = spent;
    }

    /// See [`CounterStore::claim_alert`](super::CounterStore::claim_alert).
    pub fn claim_alert(&self, key: &BudgetKey, threshold_percent: u32) -> bool {
        let mut inner = self.lock();
        let slot = inner.slot_for(key, None);
        inner.alerts.insert((slot, AlertClaim::Threshold(threshold_percent)))
    }

    /// See [`CounterStore::claim_overrun_alert`](super::CounterStore::claim_overrun_alert).
    pub fn claim_overrun_alert(&self, key: &BudgetKey) -> bool {
        let mut inner = self.lock();
        let slot = inner.slot_for(key, None);
        inner.alerts.insert((slot, AlertClaim::Overrun))
    }
}

impl Inner {
    /// Releases reservations whose deadline is before `now_ms`; returns how many.
    fn sweep(&mut self, now_ms: i64) -> u64 {
        let mut released = 0;
        while let Some(&(deadline, hash)) = self.deadlines.first() {
            if deadline >= now_ms {
                break;
            }
            self.deadlines.pop_first();
            if let Some(r) = self.reservations.remove(&hash) {
                for &slot in r.slots.as_slice() {
                    let s = &mut self.slots[slot as usize];
                    s.reserved = s.reserved.saturating_sub(r.amount);
                    s.refs -= 1;
                }
                released += 1;
            }
        }
        released
    }

    fn find(&self, key: &BudgetKey) -> Option<u32> {
        let windows = self.budgets.get(key.id.as_str())?;
        windows.iter().rev().find(|w| w.start_ms == key.window.start_ms).map(|w| w.slot)
    }

    /// The slot of `key`'s budget-window, created if new. Creating one also drops the
    /// budget's long-ended, unreferenced windows when `now_ms` is given.
    fn slot_for(&mut self, key: &BudgetKey, now_ms: Option<i64>) -> u32 {
        if let Some(slot) = self.find(key) {
            return slot;
        }
        let slot = match self.free_slots.pop() {
            Some(free) => free,
            None => {
                self.slots.push(Slot::default());
                u32::try_from(self.slots.len() - 1).unwrap_or(u32::MAX)
            }
        };
        let windows = self.budgets.entry(key.id.clone()).or_default();
        if let Some(now) = now_ms {
            let (slots, free, alerts) = (&mut self.slots, &mut self.free_slots, &mut self.alerts);
            windows.retain(|w| {
                let stale =
                    w.end_ms < now.saturating_sub(RETAIN_ENDED_MS) && slots[w.slot as usize].refs == 0;
                if stale {
                    slots[w.slot as usize] = Slot::default();
                    alerts.retain(|&(s, _)| s != w.slot);
                    free.push(w.slot);
                }
                !stale
            });
        }
        windows.push(WindowSlot { start_ms: key.window.start_ms, end_ms: key.window.end_ms, slot });
        slot
    }
}

impl fmt::Debug for MemoryCounters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.lock();
        f.debug_struct("MemoryCounters")
            .field("budgets", &inner.budgets.len())
            .field("windows", &(inner.slots.len() - inner.free_slots.len()))
            .field("reservations", &inner.reservations.len())
            .finish()
    }
}

/// 128-bit hashes of reservation ids: two independently keyed SipHash-1-3.
#[derive(Default)]
struct IdHash {
    a: RandomState,
    b: RandomState,
}

impl IdHash {
    fn hash(&self, id: &str) -> u128 {
        (u128::from(self.a.hash_one(id)) << 64) | u128::from(self.b.hash_one(id))
    }
}

/// The reservation map's keys are already uniform hashes: use their low bits as is.
#[derive(Default)]
struct PrehashedU128(u64);

impl Hasher for PrehashedU128 {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only reached if a key type other than u128 were used; fold the bytes in.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u128(&mut self, n: u128) {
        self.0 = n as u64;
    }
}

/// A reservation's slots: inline for the usual short chains, on the heap beyond.
enum SlotList {
    Inline { len: u8, items: [u32; Self::INLINE] },
    Heap(Vec<u32>),
}

impl Default for SlotList {
    fn default() -> Self {
        SlotList::Inline { len: 0, items: [0; Self::INLINE] }
    }
}

impl SlotList {
    const INLINE: usize = 6;

    fn as_slice(&self) -> &[u32] {
        match self {
            SlotList::Inline { len, items } => &items[..usize::from(*len)],
            SlotList::Heap(v) => v,
        }
    }

    fn contains(&self, slot: u32) -> bool {
        self.as_slice().contains(&slot)
    }

    fn push(&mut self, slot: u32) {
        match self {
            SlotList::Inline { len, items } if usize::from(*len) < Self::INLINE => {
                items[usize::from(*len)] = slot;
                *len += 1;
            }
            SlotList::Inline { .. } => {
                let mut v = self.as_slice().to_vec();
                v.push(slot);
                *self = SlotList::Heap(v);
            }
            SlotList::Heap(v) => v.push(slot),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cost::Window;

    fn key(id: &str, start: i64, limit: u64, hard: bool) -> BudgetKey {
        BudgetKey {
            id: id.into(),
            window: Window { start_ms: start, end_ms: start + 1000 },
            limit_micros: limit,
            hard,
        }
    }

    fn state(m: &MemoryCounters, k: &BudgetKey) -> (u64, u64) {
        let s = m.state(k);
        (s.spent_micros, s.reserved_micros)
    }

    #[test]
    fn reserve_settle_across_a_chain() {
        let m = MemoryCounters::new();
        let team = key("team", 0, 100, true);
        let dev = key("dev", 0, 50, true);
        let chain = [dev.clone(), team.clone()];
        assert_eq!(m.reserve("r1", &chain, 30, 10_000, 0), Admission::Admitted);
        assert_eq!(state(&m, &dev), (0, 30));
        assert_eq!(state(&m, &team), (0, 30));
        // 30 + 30 > 50 on dev: refused, nothing reserved on team either.
        assert_eq!(
            m.reserve("r2", &chain, 30, 10_000, 0),
            Admission::Refused { budget_id: "dev".into(), remaining_micros: 20, window_end_ms: 1000 }
        );
        assert_eq!(state(&m, &team), (0, 30));
        assert!(m.settle("r1", 12));
        assert_eq!(state(&m, &dev), (12, 0));
        assert_eq!(state(&m, &team), (12, 0));
        assert!(!m.settle("r1", 12), "settles once");
        assert!(!m.settle("nope", 1));
    }

    #[test]
    fn the_first_hard_budget_without_room_is_named() {
        let m = MemoryCounters::new();
        let chain = [key("dev", 0, 1_000, false), key("team", 0, 10, true), key("org", 0, 5, true)];
        match m.reserve("r", &chain, 20, 100, 0) {
            Admission::Refused { budget_id, remaining_micros, .. } => {
                assert_eq!((budget_id.as_str(), remaining_micros), ("team", 10));
            }
            Admission::Admitted => panic!("must refuse"),
        }
        // Soft budgets never refuse.
        assert_eq!(m.reserve("s", &[key("dev", 0, 1, false)], 20, 100, 0), Admission::Admitted);
        assert_eq!(state(&m, &key("dev", 0, 1, false)), (0, 20));
    }

    #[test]
    fn exact_fit_is_admitted() {
        let m = MemoryCounters::new();
        let b = [key("b", 0, 100, true)];
        assert_eq!(m.reserve("a", &b, 60, 100, 0), Admission::Admitted);
        assert_eq!(m.reserve("b", &b, 40, 100, 0), Admission::Admitted);
        assert!(matches!(m.reserve("c", &b, 1, 100, 0), Admission::Refused { remaining_micros: 0, .. }));
    }

    #[test]
    fn reserve_is_idempotent_while_live() {
        let m = MemoryCounters::new();
        let b = [key("b", 0, 100, true)];
        assert_eq!(m.reserve("r", &b, 60, 100, 0), Admission::Admitted);
        assert_eq!(m.reserve("r", &b, 60, 100, 0), Admission::Admitted);
        assert_eq!(state(&m, &b[0]), (0, 60));
    }

    #[test]
    fn expiry_releases_and_reserve_sweeps() {
        let m = MemoryCounters::new();
        let b = [key("b", 0, 100, true)];
        assert_eq!(m.reserve("r1", &b, 100, 50, 0), Admission::Admitted);
        assert!(matches!(m.reserve("r2", &b, 1, 50, 10), Admission::Refused { .. }));
        // At the deadline it still holds; after it, reserve sweeps it on its own.
        assert!(matches!(m.reserve("r2", &b, 1, 500, 50), Admission::Refused { .. }));
        assert_eq!(m.reserve("r2", &b, 1, 500, 51), Admission::Admitted);
        assert_eq!(state(&m, &b[0]), (0, 1));
        assert!(!m.settle("r1", 100), "expired reservations do not settle");
        assert_eq!(m.expire(501), 1);
        assert_eq!(state(&m, &b[0]), (0, 0));
        assert_eq!(m.expire(10_000), 0);
    }

    #[test]
    fn settle_charges_the_window_reserved_in() {
        let m = MemoryCounters::new();
        let day1 = key("b", 0, 100, true);
        let day2 = key("b", 1000, 100, true);
        assert_eq!(m.reserve("r", std::slice::from_ref(&day1), 50, 5_000, 999), Admission::Admitted);
        assert_eq!(m.reserve("s", std::slice::from_ref(&day2), 100, 5_000, 1001), Admission::Admitted);
        assert!(m.settle("r", 40));
        assert_eq!(state(&m, &day1), (40, 0));
        assert_eq!(state(&m, &day2), (0, 100));
    }

    #[test]
    fn duplicate_budgets_in_a_chain_count_once() {
        let m = MemoryCounters::new();
        let b = key("b", 0, 100, true);
        assert_eq!(m.reserve("r", &[b.clone(), b.clone()], 60, 100, 0), Admission::Admitted);
        assert_eq!(state(&m, &b), (0, 60));
        assert!(m.settle("r", 60));
        assert_eq!(state(&m, &b), (60, 0));
    }

    #[test]
    fn long_chains_spill_to_the_heap() {
        let m = MemoryCounters::new();
        let chain: Vec<_> = (0..10).map(|i| key(&format!("b{i}"), 0, 100, true)).collect();
        assert_eq!(m.reserve("r", &chain, 7, 100, 0), Admission::Admitted);
        assert!(chain.iter().all(|k| state(&m, k) == (0, 7)));
        assert!(m.settle("r", 5));
        assert!(chain.iter().all(|k| state(&m, k) == (5, 0)));
    }

    #[test]
    fn status_reads_release_reservations_past_their_deadline() {
        let m = MemoryCounters::new();
        let b = key("b", 0, 1_000, true);
        assert_eq!(m.reserve("dead", std::slice::from_ref(&b), 400, 500, 0), Admission::Admitted);
        assert_eq!(m.state_at(&b, 500).reserved_micros, 400);
        assert_eq!(m.state_at(&b, 501).reserved_micros, 0);
        assert!(!m.settle("dead", 400), "released, not charged");
        assert_eq!(m.state(&b), CounterState::default());
    }

    #[test]
    fn set_spent_and_alerts() {
        let m = MemoryCounters::new();
        let b = key("b", 0, 100, true);
        m.set_spent(&b, 70);
        m.set_spent(&b, 70);
        assert_eq!(state(&m, &b), (70, 0));
        assert!(matches!(m.reserve("r", std::slice::from_ref(&b), 31, 100, 0), Admission::Refused { .. }));
        assert!(m.claim_alert(&b, 80));
        assert!(!m.claim_alert(&b, 80));
        assert!(m.claim_alert(&b, 255));
        assert!(m.claim_alert(&b, 1000));
        assert!(!m.claim_alert(&b, 1000));
        // A new window claims again.
        assert!(m.claim_alert(&key("b", 1000, 100, true), 80));
        // The overrun alert is its own claim, once per window.
        assert!(m.claim_overrun_alert(&b));
        assert!(!m.claim_overrun_alert(&b));
        assert!(!m.claim_alert(&b, 80));
        assert!(m.claim_overrun_alert(&key("b", 1000, 100, true)));
    }

    #[test]
    fn old_windows_are_dropped_when_unreferenced() {
        let m = MemoryCounters::new();
        let day = |d: i64| key("b", d * 1000, 100, true);
        assert_eq!(m.reserve("held", &[day(0)], 1, i64::MAX, 0), Admission::Admitted);
        assert_eq!(m.reserve("done", &[day(1)], 1, i64::MAX, 1000), Admission::Admitted);
        assert!(m.settle("done", 1));
        // Far in the future a new window drops day 1 (unreferenced) but keeps day 0 (held).
        let later = 10 * RETAIN_ENDED_MS;
        assert_eq!(m.reserve("new", &[key("b", later, 100, true)], 1, i64::MAX, later), Admission::Admitted);
        assert_eq!(state(&m, &day(1)), (0, 0));
        assert_eq!(state(&m, &day(0)), (0, 1));
        assert!(m.settle("held", 1));
        assert_eq!(state(&m, &day(0)), (1, 0));
    }
}

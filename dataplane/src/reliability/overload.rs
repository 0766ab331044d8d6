//! Overload protection: a cap on requests in flight in this gateway, and a smaller one per
//! virtual key so that one caller cannot take every place. Beyond either a request is
//! refused at once (503 or 429 with `Retry-After`), never queued; on shutdown new requests
//! are refused and the in-flight ones are waited for. A request counts once its body has
//! been read (slow bodies are cut by the body timeouts, not held here).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// The in-flight cap of one gateway.
#[derive(Debug, Clone)]
pub struct InFlight {
    permits: Arc<Semaphore>,
    capacity: usize,
    idle: Arc<Notify>,
}

impl InFlight {
    /// A cap of `capacity` requests (clamped to what a semaphore can count). 0 refuses
    /// everything.
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.min(Semaphore::MAX_PERMITS);
        Self { permits: Arc::new(Semaphore::new(capacity)), capacity, idle: Arc::new(Notify::new()) }
    }

    /// Counts a request in, or `None` at once when the cap is reached or the gateway is
    /// shutting down. Keep the guard until the response is complete, stream included.
    pub fn try_enter(&self) -> Option<InFlightGuard> {
        let permit = Arc::clone(&self.permits).try_acquire_owned().ok()?;
        Some(InFlightGuard { permit: Some(permit), idle: Arc::clone(&self.idle) })
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> usize {
        self.capacity.saturating_sub(self.permits.available_permits())
    }

    /// The cap.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Refuses every new request from now on (graceful shutdown); those in flight go on.
    pub fn close(&self) {
        self.permits.close();
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.permits.is_closed()
    }

    /// Returns once no request is in flight. Wrap it in a timeout for a shutdown deadline.
    pub async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            // Registers interest before the check, so a guard dropped in between is seen.
            notified.as_mut().enable();
            if self.in_flight() == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// One request counted in an [`InFlight`]; dropping it counts the request out.
#[derive(Debug)]
#[must_use = "the request is counted out as soon as the guard is dropped"]
pub struct InFlightGuard {
    permit: Option<OwnedSemaphorePermit>,
    idle: Arc<Notify>,
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        drop(self.permit.take());
        self.idle.notify_waiters();
    }
}

/// Requests in flight per virtual key, capped.
#[derive(Debug)]
pub struct PerKeyInFlight {
    cap: usize,
    counts: Mutex<HashMap<Arc<str>, usize>>,
}

impl PerKeyInFlight {
    /// At most `cap` requests of one key at once (0: no cap).
    pub fn new(cap: usize) -> Arc<Self> {
        Arc::new(Self { cap, counts: Mutex::new(HashMap::new()) })
    }

    /// Counts a request of `key` in, or `None` when the key already has `cap` in flight.
    pub fn try_enter(self: &Arc<Self>, key: &str) -> Option<PerKeyGuard> {
        if self.cap == 0 {
            return Some(PerKeyGuard { owner: None, key: Arc::from("") });
        }
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let key: Arc<str> = match counts.get_key_value(key) {
            Some((k, _)) => Arc::clone(k),
            None => Arc::from(key),
        };
        let n = counts.entry(Arc::clone(&key)).or_insert(0);
        if *n >= self.cap {
            return None;
        }
        *n += 1;
        Some(PerKeyGuard { owner: Some(Arc::clone(self)), key })
    }

    /// Requests of `key` in flight now.
    pub fn in_flight(&self, key: &str) -> usize {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner).get(key).copied().unwrap_or(0)
    }

    /// The cap per key (0: none).
    pub fn cap(&self) -> usize {
        self.cap
    }
}

/// One request counted in a [`PerKeyInFlight`].
#[derive(Debug)]
#[must_use = "the request is counted out as soon as the guard is dropped"]
pub struct PerKeyGuard {
    owner: Option<Arc<PerKeyInFlight>>,
    key: Arc<str>,
}

impl Drop for PerKeyGuard {
    fn drop(&mut self) {
        if let Some(owner) = &self.owner {
            let mut counts = owner.counts.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(n) = counts.get_mut(&self.key) {
                *n -= 1;
                if *n == 0 {
                    counts.remove(&self.key);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_immediately_beyond_the_cap() {
        let cap = InFlight::new(3);
        let guards: Vec<InFlightGuard> = (0..3).map(|_| cap.try_enter().unwrap()).collect();
        assert_eq!(cap.in_flight(), 3);
        assert!(cap.try_enter().is_none());
        assert!(cap.clone().try_enter().is_none(), "clones share the cap");
        drop(guards);
        assert_eq!(cap.in_flight(), 0);
        let _again = cap.try_enter().unwrap();
        assert_eq!(cap.in_flight(), 1);
    }

    #[test]
    fn one_key_cannot_take_every_place() {
        let per_key = PerKeyInFlight::new(2);
        let a1 = per_key.try_enter("a").unwrap();
        let _a2 = per_key.try_enter("a").unwrap();
        assert!(per_key.try_enter("a").is_none());
        let _b = per_key.try_enter("b").unwrap();
        assert_eq!(per_key.in_flight("a"), 2);
        drop(a1);
        assert_eq!(per_key.in_flight("a"), 1);
        let _a3 = per_key.try_enter("a").unwrap();
        let unlimited = PerKeyInFlight::new(0);
        let all: Vec<PerKeyGuard> = (0..100).map(|_| unlimited.try_enter("a").unwrap()).collect();
        assert_eq!(all.len(), 100);
    }

    #[test]
    fn zero_and_huge_caps() {
        assert!(InFlight::new(0).try_enter().is_none());
        let huge = InFlight::new(usize::MAX);
        assert_eq!(huge.capacity(), Semaphore::MAX_PERMITS);
        let _g = huge.try_enter().unwrap();
        assert_eq!(huge.in_flight(), 1);
    }

    /// Whether `wait_idle` is still waiting after every other task had a chance to run.
    async fn still_waiting(cap: &InFlight) -> bool {
        tokio::select! {
            biased;
            () = cap.wait_idle() => false,
            () = async { for _ in 0..10 { tokio::task::yield_now().await } } => true,
        }
    }

    #[tokio::test]
    async fn shutdown_refuses_new_requests_and_waits_for_the_rest() {
        let cap = InFlight::new(10);
        let mut guards: Vec<InFlightGuard> = (0..3).map(|_| cap.try_enter().unwrap()).collect();
        cap.close();
        assert!(cap.is_closed());
        assert!(cap.try_enter().is_none());
        assert_eq!(cap.in_flight(), 3);
        while let Some(guard) = guards.pop() {
            assert!(still_waiting(&cap).await, "{} in flight", cap.in_flight());
            drop(guard);
        }
        assert!(!still_waiting(&cap).await);
        assert_eq!(cap.in_flight(), 0);
    }

    #[tokio::test]
    async fn wait_idle_wakes_when_the_last_request_ends_elsewhere() {
        let cap = InFlight::new(2);
        let (a, b) = (cap.try_enter().unwrap(), cap.try_enter().unwrap());
        let waiter = tokio::spawn({
            let cap = cap.clone();
            async move { cap.wait_idle().await }
        });
        tokio::task::yield_now().await;
        drop(a);
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(b);
        waiter.await.unwrap();
    }
}

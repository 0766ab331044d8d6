#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]
//! The scheduler: a failing job never stops the others (and retries with backoff, its error
//! visible), and of two control planes sharing one PostgreSQL database exactly one runs the
//! jobs, the other taking over when the leader's connection goes away.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tollgate_dataplane::store::Store;
use tollgate_operator::ControlPlane;
use tollgate_operator::scheduler::{Job, JobError, run};
use tollgate_testkit::{ScratchDb, TestGateway};

async fn control_plane(store: Store) -> ControlPlane {
    let t = TestGateway::builder(store).start().await;
    ControlPlane::standalone(t.gateway, t.store)
}

fn counting(name: &'static str, counter: Arc<AtomicUsize>, fail: bool) -> Job {
    Job {
        name,
        every: Duration::from_millis(40),
        run: Arc::new(move |_cp| {
            let counter = Arc::clone(&counter);
            Box::pin(async move {
                counter.fetch_add(1, Ordering::SeqCst);
                if fail {
                    let down = std::io::Error::other("the upstream is down");
                    Err(JobError::ListKeys(tollgate_dataplane::Error::Io(down)))
                } else {
                    Ok("done".to_owned())
                }
            })
        }),
    }
}

async fn until(deadline: Duration, mut f: impl AsyncFnMut() -> bool) {
    let end = Instant::now() + deadline;
    while !f().await {
        assert!(Instant::now() < end, "condition not reached within {deadline:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_job_does_not_stop_the_others() {
    let db = ScratchDb::sqlite();
    let cp = control_plane(db.connect().await).await;
    let (good, bad) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let panicking = Job {
        name: "panics",
        every: Duration::from_millis(40),
        run: Arc::new(|_cp| Box::pin(async { panic!("a bug in a job") })),
    };
    let task = tokio::spawn(run(
        cp.clone(),
        vec![counting("good", Arc::clone(&good), false), counting("bad", Arc::clone(&bad), true), panicking],
    ));
    // Every job has run and been recorded, and the healthy one many times over (on a
    // loaded machine the loops start at different times).
    until(Duration::from_secs(10), async || {
        good.load(Ordering::SeqCst) >= 10 && cp.sql.jobs().await.is_ok_and(|j| j.len() == 3)
    })
    .await;
    let jobs = cp.sql.jobs().await.unwrap();
    let find =
        |n: &str| jobs.iter().find(|j| j.name == n).unwrap_or_else(|| panic!("no {n} in {jobs:?}")).clone();
    let (g, b, p) = (find("good"), find("bad"), find("panics"));
    assert_eq!((g.failures, g.last_error.as_deref()), (0, None));
    assert!(g.last_success_ms.is_some() && g.next_run_ms > g.last_run_ms);
    assert_eq!(b.last_error.as_deref(), Some("listing the virtual keys: I/O: the upstream is down"));
    assert!(b.failures >= 1 && b.last_success_ms.is_none());
    assert!(p.last_error.as_deref().unwrap().contains("panicked"), "{p:?}");
    // Backoff: the failing job ran far fewer times than the healthy one (1 s, 2 s, ...).
    assert!(bad.load(Ordering::SeqCst) < good.load(Ordering::SeqCst) / 2);
    assert!(!task.is_finished(), "the scheduler is still running");
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_one_of_two_control_planes_sharing_postgres_runs_the_jobs() {
    let db = ScratchDb::postgres("tollgate_sched").await;
    let (a_store, b_store) = (db.connect().await, db.connect().await);
    let (a_cp, b_cp) = (control_plane(a_store.clone()).await, control_plane(b_store).await);
    let (a, b) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let a_task = tokio::spawn(run(a_cp, vec![counting("tick", Arc::clone(&a), false)]));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let b_task = tokio::spawn(run(b_cp, vec![counting("tick", Arc::clone(&b), false)]));

    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(a.load(Ordering::SeqCst) >= 10, "the first one leads");
    assert_eq!(b.load(Ordering::SeqCst), 0, "the second one waits");

    // The leader's process goes away: its connections close and the lock with them.
    a_task.abort();
    let Store::Postgres(pool) = a_store else { unreachable!() };
    pool.close().await;
    let before = a.load(Ordering::SeqCst);
    until(Duration::from_secs(15), async || b.load(Ordering::SeqCst) >= 5).await;
    assert!(a.load(Ordering::SeqCst) <= before + 1, "the old leader stopped");
    b_task.abort();
}

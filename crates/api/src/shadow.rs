//! Shadow scoring off the request path, on one thread of the lowest CPU priority
//! (`SCHED_IDLE` on Linux: it runs on what the live requests leave of the CPU).
//!
//! A shadowed predict pushes its rows and production's answer onto a bounded lock-free
//! queue and returns: no lock, no wake-up call. The thread looks at the queue every few
//! milliseconds (less often while it stays empty), takes what has gathered, scores the rows
//! of each rollout's predicts with its candidate in one call (one model lookup, one pass
//! over the trees for a batch of 1-row predicts) and records each predict's comparison;
//! then it rests nine times the CPU time that took, so it uses at most a tenth of a core.
//! Shadowing so costs the live predicts the hand-off, not the candidate's scoring: on a
//! machine the live traffic saturates, the thread gets little CPU, its queue
//! fills and further samples are dropped (counted in the rollout's comparison as
//! `shadow.dropped`), so the comparison is made on fewer rows rather than slowing the
//! answers. The thread starts with the first shadowed predict and ends once the server's
//! state is dropped. The candidate's latency there is the scoring's CPU time, not the wall
//! time its low priority stretches.

use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use crossbeam_queue::ArrayQueue;
use ndarray::Array2;
use nix::time::{ClockId, clock_gettime};
use pynomaly_models::ActiveRollout;
use thread_priority::{
    NormalThreadSchedulePolicy, ThreadPriority, ThreadSchedulePolicy,
    set_thread_priority_and_policy, thread_native_id,
};
use tokio::runtime::Handle;

use crate::state::AppState;

/// Shadowed predicts waiting for the thread; more are dropped.
const QUEUE: usize = 256;
/// The most predicts the thread takes from the queue at a time.
const BATCH: usize = 64;
/// How long the thread sleeps when it finds the queue empty: the shortest nap after work,
/// doubling up to the longest while nothing comes.
const NAP: (Duration, Duration) = (Duration::from_millis(2), Duration::from_millis(100));
/// After scoring, the thread rests this many times the CPU time it spent, so shadowing
/// takes at most a tenth of one core even where the live requests leave it more (in a VM
/// a guest's idle time is not free: the host runs other guests, and preempting the thread
/// costs the request that needs the core).
const REST_PER_WORK: u32 = 9;

/// One shadowed predict: the rows, production's labels and scores, and where to record
/// the comparison.
pub(crate) struct ShadowJob {
    pub(crate) state: AppState,
    pub(crate) tenant: String,
    pub(crate) name: String,
    pub(crate) rollout: Arc<ActiveRollout>,
    pub(crate) x: Array2<f64>,
    pub(crate) production: (Vec<i8>, Vec<f64>),
}

impl ShadowJob {
    /// Whether `other` is a predict of the same rollout (scored together).
    fn same_rollout(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.rollout, &other.rollout)
            && self.tenant == other.tenant
            && self.name == other.name
    }
}

/// The queue to the shadow thread (started on first use).
#[derive(Debug, Default)]
pub(crate) struct ShadowScorer {
    queue: OnceLock<Arc<ArrayQueue<ShadowJob>>>,
}

impl ShadowScorer {
    /// Queues `job`, starting the thread on first use; a full queue drops it (counted on
    /// its rollout).
    pub(crate) fn submit(&self, job: ShadowJob) {
        let queue = self.queue.get_or_init(|| {
            let queue = Arc::new(ArrayQueue::new(QUEUE));
            let weak = Arc::downgrade(&queue);
            let runtime = Handle::current();
            let started = std::thread::Builder::new()
                .name("pynomaly-shadow".into())
                .spawn(move || run(&weak, &runtime));
            if let Err(e) = started {
                tracing::error!(error = %e, "cannot start the shadow scoring thread");
            }
            queue
        });
        if let Err(job) = queue.push(job) {
            job.rollout.shadow_dropped();
        }
    }
}

/// The CPU time the calling thread has used (zero where the clock cannot be read).
pub(crate) fn thread_cpu_time() -> Duration {
    clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID).map_or(Duration::ZERO, Duration::from)
}

fn run(queue: &Weak<ArrayQueue<ShadowJob>>, runtime: &Handle) {
    let idle = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle);
    if let Err(e) = set_thread_priority_and_policy(thread_native_id(), ThreadPriority::Min, idle) {
        tracing::warn!(error = ?e, "the shadow scoring thread keeps the normal CPU priority");
    }
    // Guard breaches end rollouts in tasks spawned on the server's runtime.
    let _runtime = runtime.enter();
    let mut nap = NAP.0;
    // The queue lives as long as the server's state (the scorer in it holds the queue).
    while let Some(queue) = queue.upgrade() {
        let taken: Vec<ShadowJob> = std::iter::from_fn(|| queue.pop()).take(BATCH).collect();
        drop(queue);
        if taken.is_empty() {
            std::thread::sleep(nap);
            nap = (nap * 2).min(NAP.1);
            continue;
        }
        nap = NAP.0;
        let before = thread_cpu_time();
        for group in by_rollout(taken) {
            crate::routes::models::score_shadow(group, runtime);
        }
        std::thread::sleep(thread_cpu_time().saturating_sub(before) * REST_PER_WORK);
    }
}

/// `jobs` grouped by rollout, each group in arrival order.
fn by_rollout(jobs: Vec<ShadowJob>) -> Vec<Vec<ShadowJob>> {
    let mut groups: Vec<Vec<ShadowJob>> = Vec::new();
    for job in jobs {
        match groups.iter_mut().find(|g| g[0].same_rollout(&job)) {
            Some(group) => group.push(job),
            None => groups.push(vec![job]),
        }
    }
    groups
}

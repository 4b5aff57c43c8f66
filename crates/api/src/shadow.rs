//! Shadow scoring off the request path, on one thread of the lowest CPU priority
//! (`SCHED_IDLE` on Linux: it runs on what the live requests leave of the CPU).
//!
//! A shadowed predict hands its rows and production's answer to the thread through a
//! bounded queue and returns; the thread scores them with the candidate and records the
//! comparison. Shadowing so costs the live predicts the hand-off, not the candidate's
//! scoring: on a machine the live traffic saturates, the thread gets little CPU, its queue
//! fills and further samples are dropped (counted in the rollout's comparison as
//! `shadow.dropped`), so the comparison is made on fewer rows rather than slowing the
//! answers. The thread starts with the first shadowed predict and ends when the server's
//! state is dropped. The candidate's latency there is the scoring's CPU time, not the wall
//! time its low priority stretches.

use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

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

/// The queue to the shadow thread (started on first use).
#[derive(Debug, Default)]
pub(crate) struct ShadowScorer {
    queue: OnceLock<SyncSender<ShadowJob>>,
}

impl ShadowScorer {
    /// Queues `job`, starting the thread on first use; a full queue drops it (counted on
    /// its rollout).
    pub(crate) fn submit(&self, job: ShadowJob) {
        let queue = self.queue.get_or_init(|| {
            let (tx, rx) = sync_channel(QUEUE);
            let runtime = Handle::current();
            let started = std::thread::Builder::new()
                .name("pynomaly-shadow".into())
                .spawn(move || run(&rx, &runtime));
            if let Err(e) = started {
                tracing::error!(error = %e, "cannot start the shadow scoring thread");
            }
            tx
        });
        match queue.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(job) | TrySendError::Disconnected(job)) => {
                job.rollout.shadow_dropped();
            }
        }
    }
}

/// The CPU time the calling thread has used (zero where the clock cannot be read).
pub(crate) fn thread_cpu_time() -> Duration {
    clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID).map_or(Duration::ZERO, Duration::from)
}

fn run(queue: &Receiver<ShadowJob>, runtime: &Handle) {
    let idle = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle);
    if let Err(e) = set_thread_priority_and_policy(thread_native_id(), ThreadPriority::Min, idle) {
        tracing::warn!(error = ?e, "the shadow scoring thread keeps the normal CPU priority");
    }
    // Guard breaches end rollouts in tasks spawned on the server's runtime.
    let _runtime = runtime.enter();
    while let Ok(job) = queue.recv() {
        crate::routes::models::score_shadow(job, runtime);
    }
}

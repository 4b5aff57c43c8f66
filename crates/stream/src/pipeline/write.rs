//! The writer: scored batches written (alerts, then dead letters) and committed in order,
//! coalesced while a write is in flight, retried until they succeed or the drain timeout.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::Summary;
use crate::StreamError;
use crate::alert::OutMessage;
use crate::broker::{Committer, Position, Sink};
use crate::metrics::StreamMetrics;

/// A scored batch, ready to write and commit.
pub(super) struct Processed {
    pub(super) alerts: Vec<OutMessage>,
    pub(super) dead: Vec<OutMessage>,
    pub(super) positions: Vec<Position>,
    pub(super) received: Vec<Instant>,
    pub(super) anomalies: u64,
    /// The `stream.batch` span of each batch in it ([`batch_span`]), in read order: they
    /// end when the batch is dropped, once written and committed.
    ///
    /// [`batch_span`]: super::render::batch_span
    pub(super) spans: Vec<tracing::Span>,
}

impl Processed {
    /// Appends the next batch (in read order): written and committed together.
    pub(super) fn absorb(&mut self, next: Processed) {
        self.alerts.extend(next.alerts);
        self.dead.extend(next.dead);
        self.positions.extend(next.positions);
        self.received.extend(next.received);
        self.anomalies += next.anomalies;
        self.spans.extend(next.spans);
    }
}

/// Writes and commits scored batches in order. Batches that queued up while the previous
/// write was waiting for its acknowledgements go out together, up to `coalesce` events:
/// one wait for the sink (Kafka: `linger.ms` plus the produce round trip) and one commit
/// for all of them, instead of one per batch. Small batches (a Kafka fetch's worth) would
/// otherwise cap the rate at one batch per acknowledgement round trip.
pub(super) async fn write_stage(
    mut rx: mpsc::Receiver<Processed>,
    coalesce: usize,
    sink: Arc<dyn Sink>,
    dead_letters: Arc<dyn Sink>,
    committer: Arc<dyn Committer>,
    metrics: StreamMetrics,
    abort: CancellationToken,
) -> Result<Summary, StreamError> {
    let mut summary = Summary::default();
    while let Some(mut p) = rx.recv().await {
        while p.positions.len() < coalesce {
            match rx.try_recv() {
                Ok(next) => p.absorb(next),
                Err(_) => break,
            }
        }
        // A child of the first batch's span; the batches written with it are its links.
        // No batch spans (traces off): no write span either.
        let write = match p.spans.first() {
            None => tracing::Span::none(),
            Some(first) => tracing::info_span!(
                parent: first,
                "write",
                otel.name = "write",
                messaging.batch.message_count = p.alerts.len() as i64,
                stream.dead_letters = p.dead.len() as i64,
                stream.batches = p.spans.len() as i64,
                otel.status_code = tracing::field::Empty,
            ),
        };
        for other in p.spans.iter().skip(1) {
            write.follows_from(other);
        }
        let written = async {
            retry("write alerts", &metrics, &abort, || sink.write(&p.alerts)).await
                && retry("write dead letters", &metrics, &abort, || {
                    dead_letters.write(&p.dead)
                })
                .await
                && retry("commit", &metrics, &abort, || {
                    committer.commit(&p.positions)
                })
                .await
        }
        .instrument(write.clone())
        .await;
        if !written {
            write.record("otel.status_code", "ERROR");
            tracing::warn!(
                "drain timeout: leaving the remaining events unacknowledged for re-delivery"
            );
            break;
        }
        let done = Instant::now();
        for r in &p.received {
            metrics
                .latency
                .observe(done.duration_since(*r).as_secs_f64());
        }
        metrics.alerts_out.inc_by(p.alerts.len() as u64);
        metrics.dead_letters.inc_by(p.dead.len() as u64);
        summary.events += p.positions.len() as u64;
        summary.alerts += p.alerts.len() as u64;
        summary.dead_letters += p.dead.len() as u64;
    }
    Ok(summary)
}

/// Retries `op` with back-off until it succeeds (true) or `abort` (false).
async fn retry<F, Fut>(
    what: &str,
    metrics: &StreamMetrics,
    abort: &CancellationToken,
    mut op: F,
) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), StreamError>>,
{
    let mut backoff = Duration::from_millis(100);
    loop {
        match op().await {
            Ok(()) => return true,
            Err(e) => {
                tracing::warn!(error = %e, "cannot {what}; retrying");
                metrics.set_error(Some(format!("{what}: {e}")));
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = abort.cancelled() => return false,
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

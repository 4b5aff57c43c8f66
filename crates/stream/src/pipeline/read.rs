//! The reader: batches from the source, with back-off while it fails, until shutdown.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::broker::{Record, Source};
use crate::metrics::StreamMetrics;

/// Reads batches of up to `batch_size` events into `read_tx` until `shutdown` (or until the
/// scorer is gone); a failing source is retried with back-off.
pub(super) async fn read_stage(
    mut source: Box<dyn Source>,
    read_tx: mpsc::Sender<Vec<Record>>,
    batch_size: usize,
    metrics: StreamMetrics,
    shutdown: CancellationToken,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let batch = tokio::select! {
            b = source.next_batch(batch_size) => b,
            () = shutdown.cancelled() => break,
        };
        match batch {
            Ok(batch) => {
                backoff = Duration::from_millis(100);
                metrics.set_error(None);
                if batch.is_empty() {
                    continue;
                }
                metrics.events_in.inc_by(batch.len() as u64);
                if read_tx.send(batch).await.is_err() {
                    break;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read from the source; retrying");
                metrics.set_error(Some(format!("source: {e}")));
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = shutdown.cancelled() => break,
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

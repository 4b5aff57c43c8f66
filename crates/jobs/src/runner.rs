//! What jobs do: batch scoring and training from data sources.
//!
//! A batch job streams each source: the synchronous `data-source` reader and the scoring of
//! each chunk run on blocking threads, the output is appended to a streamed artifact write,
//! so memory holds one chunk and one output part whatever the file's size. Between chunks
//! the job checks whether it was cancelled (it ends `cancelled`) or the process is shutting
//! down (it is released back to `queued`). Fitting on a source (a batch with `algorithm`,
//! or a training job) needs the whole matrix: that memory is the detector's, not the
//! reader's.
//!
//! Failures caused by the data (a bad value on line 12, a missing file) end the job
//! `failed` with that message; internal failures are logged with their chain and reported
//! as "internal error", and are retryable: the Redis queue runs the job again after a
//! backoff (the in-process queue fails it).
//!
//! Each job runs in a `job` span (see [`crate::trace_context`]); its steps run in child
//! spans named `parse` (opening or reading a source), `fit`, `score` and `store` (writing
//! an output, registering a model) with `ml.algorithm`, `ml.data_size` (`small` < 100
//! rows, `medium` < 1000, `large`, as the guide's metric), `ml.data_rows` and
//! `ml.anomalies_detected`; a step that fails is marked `ERROR` with its message.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use data_source::{LabelColumn, ReadOptions, TableReader};
use detect_core::drift::{ReferenceProfile, WindowStats};
use detect_core::{Detection, Explanations};
use pynomaly_store::{ArtifactStore, ArtifactWriter, DynMetadataStore, Job, JobKind};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::sources::{OpenError, Source, SourceResolver};
use crate::spec::{BatchSpec, OutputFormat, Scoring, TrainSpec, ValidationSource};
use pynomaly_models::{
    LoadedModel, ModelRegistry, Registration, RegistryError, ValidationSet, matrix_sha256, unix_now,
};

/// Tuning of the job runner.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// Rows read and scored at a time.
    pub chunk_rows: usize,
    /// Least time between two progress writes to the metadata store.
    pub progress_interval: Duration,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        Self {
            chunk_rows: 16_384,
            progress_interval: Duration::from_millis(500),
        }
    }
}

/// How a job run ended.
#[derive(Debug, Clone)]
pub(crate) enum RunOutcome {
    Succeeded(Value),
    /// The data or the request is at fault: running it again gives the same answer.
    Failed(String),
    /// Something around the job failed (storage, database, a crashed step): another
    /// attempt may succeed. Queues that retry do so; the in-process queue does not.
    Retryable(String),
    Cancelled,
    /// Stopped by a shutdown: to be run again.
    Interrupted,
}

/// Why a job stopped early.
#[derive(Debug)]
enum Halt {
    Cancelled,
    Interrupted,
    Failed(String),
    Retryable(String),
}

impl Halt {
    /// Something of the server's failed: logged with its causes, reported without them.
    fn internal(what: &str, e: &(dyn std::error::Error + 'static)) -> Halt {
        tracing::error!(error = %chain(e), "{what}");
        Halt::Retryable(format!("internal error while {what}"))
    }

    /// The artifact store failed while the job wrote its output to `uri`: the job's error
    /// says so, with the store's causes (unreachable, refused, timed out), so that a job
    /// that fails after its retries names why; another attempt may pass.
    /// The error names the root cause only (e.g. `Connection refused`): the layers above
    /// it repeat the store's internal endpoint URL and its retry figures, which the log
    /// keeps.
    fn output(uri: &str, e: &pynomaly_store::StoreError) -> Halt {
        tracing::warn!(error = %chain(e), uri, "cannot write a job's output to the artifact store");
        let what = if e.artifact_store_unreachable() {
            "the artifact store is unavailable"
        } else {
            "the artifact store refused it"
        };
        Halt::Retryable(format!(
            "writing the output {uri} failed: {what}: {}",
            root_cause(e)
        ))
    }

    /// The object store failed to give a data source the job names. The store is the one
    /// the user's `s3://` source points at, so the job's error says why (no credentials,
    /// access denied, unreachable), with its causes; another attempt may pass.
    fn object_store(uri: &str, e: &(dyn std::error::Error + 'static)) -> Halt {
        let chain = chain(e);
        tracing::warn!(error = %chain, uri, "cannot read a data source from the object store");
        Halt::Retryable(format!("{uri}: the object store failed: {chain}"))
    }
}

/// The innermost cause of `e`.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut e = e;
    while let Some(source) = e.source() {
        e = source;
    }
    e.to_string()
}

/// An error and its causes, `: `-separated.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut chain = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let _ = write!(chain, ": {s}");
        source = s.source();
    }
    chain
}

/// The signals a running job checks between chunks, and where it reports progress.
#[derive(Debug)]
pub(crate) struct JobControl {
    cancel: CancellationToken,
    shutdown: CancellationToken,
    meta: DynMetadataStore,
    last_progress: Mutex<Option<Instant>>,
}

impl JobControl {
    pub(crate) fn new(
        cancel: CancellationToken,
        shutdown: CancellationToken,
        meta: DynMetadataStore,
    ) -> Self {
        Self {
            cancel,
            shutdown,
            meta,
            last_progress: Mutex::new(None),
        }
    }

    fn check(&self) -> Result<(), Halt> {
        if self.cancel.is_cancelled() {
            Err(Halt::Cancelled)
        } else if self.shutdown.is_cancelled() {
            Err(Halt::Interrupted)
        } else {
            Ok(())
        }
    }

    async fn progress(&self, job_id: &str, progress: Value, every: Duration, force: bool) {
        {
            let mut last = self.last_progress.lock().unwrap_or_else(|e| e.into_inner());
            if !force && last.is_some_and(|t| t.elapsed() < every) {
                return;
            }
            *last = Some(Instant::now());
        }
        if let Err(e) = self.meta.update_job_progress(job_id, &progress).await {
            tracing::warn!(error = %e, "could not record job progress");
        }
    }
}

/// Told about every batch source a runner has scored, so the process running it can
/// count what was found (the API's `pynomaly_anomalies_detected_total{algorithm,dataset}`).
pub trait BatchObserver: Send + Sync + std::fmt::Debug {
    /// `dataset` is the source as the job named it; `rows` were scored, `anomalies` of
    /// them labelled `-1`.
    fn source_scored(&self, algorithm: &str, dataset: &str, rows: usize, anomalies: usize);

    /// A job run ended after `elapsed`: `kind` is `batch` or `train`, `status` one of
    /// `succeeded`, `failed`, `retrying` (a failure around the job — storage, database —
    /// that the Redis queue retries after a backoff and the in-process queue fails),
    /// `cancelled`, `interrupted` (handed back by a shutdown).
    fn job_finished(&self, _kind: &str, _status: &str, _elapsed: Duration) {}

    /// The data quality of a source scored with a model that has a reference profile:
    /// the share of its cells that were finite and inside the model's training range
    /// (see [`detect_core::drift`]).
    fn source_quality(&self, _dataset: &str, _score: f64) {}
}

/// The size class of `rows` (the guide's `data_size`): `small` < 100, `medium` < 1000,
/// `large`.
pub fn size_class(rows: usize) -> &'static str {
    match rows {
        0..100 => "small",
        100..1000 => "medium",
        _ => "large",
    }
}

/// A job step's span (`parse`, `fit`, `score`, `store`), a child of the current one.
fn step_span(step: &'static str, algorithm: &str, source: &str) -> tracing::Span {
    tracing::info_span!(
        "step",
        otel.name = step,
        step,
        ml.algorithm = algorithm,
        data.source = source,
        ml.data_size = tracing::field::Empty,
        ml.data_rows = tracing::field::Empty,
        ml.anomalies_detected = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
        error.message = tracing::field::Empty,
    )
}

/// Records the rows a step handled (and the anomalies it found) on its span.
fn record_rows(span: &tracing::Span, rows: usize, anomalies: Option<usize>) {
    span.record("ml.data_size", size_class(rows));
    span.record("ml.data_rows", rows as i64);
    if let Some(a) = anomalies {
        span.record("ml.anomalies_detected", a as i64);
    }
}

/// Marks a step's span failed when it failed.
fn traced<T>(span: &tracing::Span, r: Result<T, Halt>) -> Result<T, Halt> {
    if let Err(Halt::Failed(m) | Halt::Retryable(m)) = &r {
        span.record("otel.status_code", "ERROR");
        span.record("error.message", m.as_str());
    }
    r
}

/// Runs batch and training jobs.
#[derive(Debug)]
pub struct JobRunner {
    registry: Arc<ModelRegistry>,
    artifacts: ArtifactStore,
    sources: SourceResolver,
    config: RunnerConfig,
    observer: Option<Arc<dyn BatchObserver>>,
}

impl JobRunner {
    /// A runner reading sources through `sources`, writing outputs to `artifacts`.
    pub fn new(
        registry: Arc<ModelRegistry>,
        artifacts: ArtifactStore,
        sources: SourceResolver,
        config: RunnerConfig,
    ) -> Self {
        Self {
            registry,
            artifacts,
            sources,
            config,
            observer: None,
        }
    }

    /// Reports every scored batch source to `observer`.
    #[must_use]
    pub fn with_observer(mut self, observer: Arc<dyn BatchObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    pub(crate) async fn run(&self, job: &Job, control: &JobControl) -> RunOutcome {
        let started = Instant::now();
        let result = match job.kind {
            JobKind::Batch => match serde_json::from_value::<BatchSpec>(job.spec.clone()) {
                Ok(spec) => self.run_batch(job, &spec, control).await,
                Err(e) => Err(Halt::internal("reading the job's specification", &e)),
            },
            JobKind::Train => match serde_json::from_value::<TrainSpec>(job.spec.clone()) {
                Ok(spec) => self.run_train(job, &spec, control).await,
                Err(e) => Err(Halt::internal("reading the job's specification", &e)),
            },
        };
        let (status, error) = match &result {
            Ok(_) => ("succeeded", None),
            Err(Halt::Cancelled) => ("cancelled", None),
            Err(Halt::Interrupted) => ("interrupted", None),
            Err(Halt::Failed(m)) => ("failed", Some(m.as_str())),
            Err(Halt::Retryable(m)) => ("retrying", Some(m.as_str())),
        };
        // Inside the job's span (the queue instruments this future with it).
        crate::trace_context::record_job_end(&tracing::Span::current(), status, error);
        if let Some(observer) = &self.observer {
            observer.job_finished(job.kind.as_str(), status, started.elapsed());
        }
        match result {
            Ok(v) => RunOutcome::Succeeded(v),
            Err(Halt::Cancelled) => RunOutcome::Cancelled,
            Err(Halt::Interrupted) => RunOutcome::Interrupted,
            Err(Halt::Failed(m)) => RunOutcome::Failed(m),
            Err(Halt::Retryable(m)) => RunOutcome::Retryable(m),
        }
    }

    fn resolve(&self, uri: &str) -> Result<Source, Halt> {
        self.sources
            .locate(uri)
            .map_err(|e| Halt::Failed(e.to_string()))
    }

    /// Opens a source's chunked reader on a blocking thread.
    async fn open(
        &self,
        uri: &str,
        source: Source,
        options: ReadOptions,
    ) -> Result<TableReader<'static>, Halt> {
        let sources = self.sources.clone();
        let runtime = tokio::runtime::Handle::current();
        let opened = blocking(move || sources.open_blocking(&source, &options, &runtime)).await?;
        opened.map_err(|e| open_halt(uri, e))
    }

    /// A fitting job's `parse` step: the whole source read under its span, which gets
    /// the row count or the error.
    async fn parse_step(
        &self,
        algorithm: &str,
        uri: &str,
        source: Source,
        options: ReadOptions,
    ) -> Result<data_source::Table, Halt> {
        let parse = step_span("parse", algorithm, uri);
        let read = self
            .read_all(uri, source, options)
            .instrument(parse.clone())
            .await;
        let table = traced(&parse, read)?;
        record_rows(&parse, table.features.nrows(), None);
        Ok(table)
    }

    /// Reads a whole source (for fitting) on a blocking thread.
    async fn read_all(
        &self,
        uri: &str,
        source: Source,
        options: ReadOptions,
    ) -> Result<data_source::Table, Halt> {
        let reader = self.open(uri, source, options).await?;
        blocking(move || reader.read_all())
            .await?
            .map_err(|e| Halt::Failed(format!("{uri}: {e}")))
    }

    async fn run_batch(
        &self,
        job: &Job,
        spec: &BatchSpec,
        control: &JobControl,
    ) -> Result<Value, Halt> {
        let model = match &spec.scoring {
            Scoring::Model {
                model_name,
                version,
            } => {
                let loaded = self
                    .registry
                    .load(&job.tenant, model_name, *version)
                    .await
                    .map_err(|e| Halt::internal("loading the model", &e))?;
                let Some(loaded) = loaded else {
                    return Err(Halt::Failed(format!("model '{model_name}' not found")));
                };
                Some(loaded)
            }
            Scoring::Fit(_) => None,
        };
        let total = spec.sources.len();
        let mut outputs = Vec::with_capacity(total);
        let (mut rows_processed, mut anomalies) = (0usize, 0usize);
        for (i, source) in spec.sources.iter().enumerate() {
            control.check()?;
            let path = self.resolve(source)?;
            let out_path = format!(
                "jobs/{}/{}/output-{i}.{}",
                job.tenant,
                job.id,
                spec.output_format.extension()
            );
            let out_uri = self.artifacts.uri(&out_path);
            let mut out = OutputWriter::start(
                &self.artifacts,
                &out_path,
                spec.output_format,
                spec.explain.is_some(),
            )
            .await
            .map_err(|e| Halt::output(&out_uri, &e))?;
            let progress = |rows: usize| json!({"rows_processed": rows, "sources_done": i, "sources_total": total});
            let mut run = SourceRun {
                job,
                source,
                out: &mut out,
                control,
                progress: |r| progress(rows_processed + r),
            };
            let mut quality = None;
            let scored = match &model {
                Some(model) => {
                    self.score_stream(&mut run, path, spec, model)
                        .await
                        .map(|(n, a, q)| {
                            quality = q;
                            (n, a)
                        })
                }
                None => self.fit_and_label(&mut run, path, spec).await,
            };
            let (n, a) = match scored {
                Ok(counts) => counts,
                Err(halt) => {
                    out.abort().await;
                    return Err(halt);
                }
            };
            let algorithm = match (&model, &spec.scoring) {
                (Some(loaded), _) => loaded.model.algorithm(),
                (None, Scoring::Fit(config)) => config.algorithm.name(),
                (None, Scoring::Model { .. }) => "unknown",
            };
            let store = step_span("store", algorithm, source);
            record_rows(&store, n, None);
            let finished = out
                .finish()
                .instrument(store.clone())
                .await
                .map_err(|e| Halt::output(&out_uri, &e));
            traced(&store, finished)?;
            rows_processed += n;
            anomalies += a;
            if let Some(observer) = &self.observer {
                observer.source_scored(algorithm, source, n, a);
                if let Some(quality) = quality {
                    observer.source_quality(source, quality);
                }
            }
            outputs.push(json!({
                "source": source,
                "uri": self.artifacts.uri(&out_path),
                "path": out_path,
                "format": spec.output_format,
                "n_samples": n,
                "anomaly_count": a,
            }));
            control
                .progress(
                    &job.id,
                    json!({"rows_processed": rows_processed, "sources_done": i + 1, "sources_total": total}),
                    self.config.progress_interval,
                    true,
                )
                .await;
        }
        Ok(json!({"n_samples": rows_processed, "anomaly_count": anomalies, "outputs": outputs}))
    }

    /// Scores a source with a trained model: its rows, its anomalies and its data quality
    /// against the model's training data (when the model has a reference profile).
    async fn score_stream(
        &self,
        run: &mut SourceRun<'_, impl Fn(usize) -> Value>,
        path: Source,
        spec: &BatchSpec,
        loaded: &LoadedModel,
    ) -> Result<(usize, usize, Option<f64>), Halt> {
        let source = run.source;
        let model = &loaded.model;
        let options = read_options(spec.label_column.as_deref());
        let parse = step_span("parse", model.algorithm(), source);
        let opened = self
            .open(source, path, options)
            .instrument(parse.clone())
            .await;
        let reader = traced(&parse, opened)?;
        if reader.n_features() != model.n_features() {
            return traced(
                &parse,
                Err(Halt::Failed(format!(
                    "{source}: rows have {} features, the model expects {}",
                    reader.n_features(),
                    model.n_features()
                ))),
            );
        }
        // Explanations name the features as the model does, else as the source's header.
        let explain = match spec.explain {
            Some(e) => {
                let top_k = e
                    .top_k(model.n_features())
                    .map_err(|m| Halt::Failed(format!("{source}: {m}")));
                let names = explained_names(
                    loaded
                        .version
                        .feature_names
                        .as_deref()
                        .or(reader.feature_names()),
                    model.n_features(),
                );
                Some((traced(&parse, top_k)?, Arc::new(names)))
            }
            None => None,
        };
        drop(parse);
        // Reading and scoring alternate chunk by chunk: one `score` span covers both.
        let score = step_span("score", model.algorithm(), source);
        let scored = self
            .score_chunks(run, reader, loaded, explain)
            .instrument(score.clone())
            .await;
        if let Ok((n, anomalies, _)) = &scored {
            record_rows(&score, *n, Some(*anomalies));
        }
        traced(&score, scored)
    }

    async fn score_chunks(
        &self,
        run: &mut SourceRun<'_, impl Fn(usize) -> Value>,
        mut reader: TableReader<'static>,
        loaded: &LoadedModel,
        explain: Option<(usize, Arc<Vec<String>>)>,
    ) -> Result<(usize, usize, Option<f64>), Halt> {
        let (source, control) = (run.source, run.control);
        let model = &loaded.model;
        // What this source looks like against the model's training data: added to the
        // model's drift window chunk by chunk, and its data quality reported at the end.
        let drift = loaded.drift.clone();
        let mut seen = drift.as_ref().map(|d| WindowStats::new(d.reference()));
        let (mut n, mut anomalies) = (0usize, 0usize);
        let chunk_rows = self.config.chunk_rows;
        loop {
            control.check()?;
            let model = Arc::clone(model);
            let format = run.out.format;
            let first = run.out.rows == 0;
            let chunk_drift = drift.clone();
            let explain = explain.clone();
            let (back, step) = blocking(move || {
                let step = match reader.next_chunk(chunk_rows) {
                    Ok(Some(chunk)) => match model.predict(chunk.features.view()).and_then(|d| {
                        let explained = explain
                            .map(|(k, names)| {
                                model.explain(chunk.features.view(), k).map(|e| (e, names))
                            })
                            .transpose()?;
                        Ok((d, explained))
                    }) {
                        Ok((d, explained)) => {
                            let stats = chunk_drift.map(|drift| {
                                let mut stats = WindowStats::new(drift.reference());
                                stats.add_rows(
                                    drift.reference(),
                                    chunk.features.view(),
                                    d.anomaly_count,
                                );
                                drift.merge(&stats, unix_now());
                                stats
                            });
                            let explained = explained.as_ref().map(|(rows, names)| Explained {
                                rows,
                                first: 0,
                                names,
                            });
                            let bytes =
                                render(&d, chunk.first_row, format, first, explained.as_ref());
                            Ok(Some((bytes, d, stats)))
                        }
                        Err(e) => Err(e.to_string()),
                    },
                    Ok(None) => Ok(None),
                    Err(e) => Err(e.to_string()),
                };
                (reader, step)
            })
            .await?;
            reader = back;
            let Some((bytes, detection, stats)) =
                step.map_err(|m| Halt::Failed(format!("{source}: {m}")))?
            else {
                break;
            };
            if let (Some(seen), Some(stats)) = (seen.as_mut(), stats) {
                seen.merge(&stats);
            }
            run.out
                .write(&bytes, detection.scores.len())
                .await
                .map_err(|e| Halt::output(&run.out.uri, &e))?;
            n += detection.scores.len();
            anomalies += detection.anomaly_count;
            control
                .progress(
                    &run.job.id,
                    (run.progress)(n),
                    self.config.progress_interval,
                    false,
                )
                .await;
        }
        Ok((n, anomalies, seen.map(|s| s.data_quality())))
    }

    async fn fit_and_label(
        &self,
        run: &mut SourceRun<'_, impl Fn(usize) -> Value>,
        path: Source,
        spec: &BatchSpec,
    ) -> Result<(usize, usize), Halt> {
        let (source, control) = (run.source, run.control);
        let Scoring::Fit(config) = &spec.scoring else {
            return Err(Halt::Failed("no model and no algorithm".into()));
        };
        let algorithm = config.algorithm.name();
        let config = config.clone();
        let options = read_options(spec.label_column.as_deref());
        let table = self.parse_step(algorithm, source, path, options).await?;
        control.check()?;
        let fit = step_span("fit", algorithm, source);
        record_rows(&fit, table.features.nrows(), None);
        let explain = spec
            .explain
            .map(|e| e.top_k(table.features.ncols()))
            .transpose()
            .map_err(|m| Halt::Failed(format!("{source}: {m}")));
        let explain = traced(&fit, explain)?;
        let names = explained_names(table.feature_names.as_deref(), table.features.ncols());
        let fitted = async {
            blocking(move || {
                let fitted = detect_core::fit(&config, table.features.view())?;
                let explained = explain
                    .map(|k| fitted.model.explain(table.features.view(), k))
                    .transpose()?;
                Ok::<_, detect_core::DetectError>((fitted, explained))
            })
            .await?
            .map_err(|e| Halt::Failed(format!("{source}: {e}")))
        }
        .instrument(fit.clone())
        .await;
        let (fitted, explained) = traced(&fit, fitted)?;
        fit.record(
            "ml.anomalies_detected",
            fitted.training.anomaly_count as i64,
        );
        drop(fit);
        let d = fitted.training;
        let chunk = self.config.chunk_rows;
        for start in (0..d.scores.len()).step_by(chunk) {
            control.check()?;
            let end = (start + chunk).min(d.scores.len());
            let part = Detection {
                scores: d.scores[start..end].to_vec(),
                predictions: d.predictions[start..end].to_vec(),
                threshold: d.threshold,
                anomaly_count: 0,
            };
            let explained = explained.as_ref().map(|rows| Explained {
                rows,
                first: start,
                names: &names,
            });
            let bytes = render(&part, start, run.out.format, start == 0, explained.as_ref());
            run.out
                .write(&bytes, end - start)
                .await
                .map_err(|e| Halt::output(&run.out.uri, &e))?;
        }
        Ok((d.scores.len(), d.anomaly_count))
    }

    async fn run_train(
        &self,
        job: &Job,
        spec: &TrainSpec,
        control: &JobControl,
    ) -> Result<Value, Halt> {
        let config = spec.detector.clone();
        let path = self.resolve(&spec.training_data)?;
        let options = read_options(spec.label_column.as_deref());
        let (algorithm, source) = (spec.detector.algorithm.name(), spec.training_data.as_str());
        let table = self.parse_step(algorithm, source, path, options).await?;
        control.check()?;
        let n = table.features.nrows();
        // The whole source is read before the fit: report its rows as processed.
        control
            .progress(
                &job.id,
                json!({"rows_processed": n, "sources_done": 1, "sources_total": 1}),
                self.config.progress_interval,
                true,
            )
            .await;
        let read_validation = match &spec.validation_source {
            Some(v) => Some(self.read_validation(algorithm, v).await?),
            None => None,
        };
        let validation = read_validation.as_ref().or(spec.validation.as_ref());
        control.check()?;
        let feature_names = table.feature_names.clone();
        let started = Instant::now();
        let fit = step_span("fit", algorithm, source);
        record_rows(&fit, n, None);
        let fitted = async {
            blocking(move || {
                let fitted = detect_core::fit(&config, table.features.view())?;
                let reference =
                    ReferenceProfile::from_training(table.features.view(), &fitted.training);
                let digest = matrix_sha256(table.features.view());
                Ok::<_, detect_core::DetectError>((fitted, reference, digest))
            })
            .await?
            .map_err(|e| Halt::Failed(format!("{source}: {e}")))
        }
        .instrument(fit.clone())
        .await;
        let (fitted, reference, digest) = traced(&fit, fitted)?;
        fit.record(
            "ml.anomalies_detected",
            fitted.training.anomaly_count as i64,
        );
        drop(fit);
        let training_time_ms = started.elapsed().as_secs_f64() * 1e3;
        control.check()?;
        let store = step_span("store", algorithm, source);
        let lineage = json!({
            "training_data": spec.training_data,
            "label_column": spec.label_column,
            "rows": n,
            "sha256": digest,
            "job_id": job.id,
        });
        let by = spec.trained_by.as_deref().unwrap_or("pynomaly");
        let registered = self
            .registry
            .register_and_roll_out(
                fitted.model,
                Registration {
                    tenant: job.tenant.clone(),
                    model_name: spec.model_name.clone(),
                    feature_names,
                    training_time_ms,
                    job_id: Some(job.id.clone()),
                    metrics: None,
                    lineage: Some(lineage),
                },
                Some(reference),
                &spec.rollout,
                validation,
                by,
            )
            .instrument(store.clone())
            .await
            .map_err(|e| match e {
                RegistryError::Validation(e) => Halt::Failed(format!("validation_data: {e}")),
                RegistryError::Store(e) if e.artifact_store_unreachable() => {
                    tracing::warn!(error = %chain(&e), "cannot write the model to the artifact store");
                    Halt::Retryable(format!(
                        "saving the model failed: the artifact store is unavailable: {}",
                        root_cause(&e)
                    ))
                }
                e => Halt::internal("registering the model", &e),
            });
        let (loaded, promotion) = traced(&store, registered)?;
        drop(store);
        let mut result = serde_json::to_value(&*loaded.version)
            .map_err(|e| Halt::internal("reporting the model", &e))?;
        result["promotion"] = serde_json::to_value(&promotion)
            .map_err(|e| Halt::internal("reporting the model", &e))?;
        result["n_samples"] = json!(n);
        result["anomaly_count"] = json!(fitted.training.anomaly_count);
        result["warnings"] = json!(fitted.warnings);
        Ok(result)
    }
}

/// A source that cannot be opened: the data's fault (or a missing object) fails the job;
/// the object store's may pass on another attempt, and says why either way.
fn open_halt(uri: &str, e: OpenError) -> Halt {
    match e {
        OpenError::Data(e) => Halt::Failed(format!("{uri}: {e}")),
        OpenError::NotFound { .. } => Halt::Failed(format!("{uri}: {e}")),
        OpenError::Config(e) => Halt::Failed(format!("{uri}: {e}")),
        OpenError::Store(e) => Halt::object_store(uri, &e),
    }
}

impl JobRunner {
    /// The labelled rows of a training's validation source: every row's label must be 0
    /// or 1.
    async fn read_validation(
        &self,
        algorithm: &str,
        v: &ValidationSource,
    ) -> Result<ValidationSet, Halt> {
        let path = self.resolve(&v.source)?;
        let options = read_options(Some(&v.label_column));
        let table = self.parse_step(algorithm, &v.source, path, options).await?;
        let labels = table.labels.ok_or_else(|| {
            Halt::Failed(format!(
                "validation_data: {} has no label column '{}'",
                v.source, v.label_column
            ))
        })?;
        if labels.other_values() > 0 {
            return Err(Halt::Failed(format!(
                "validation_data: column '{}' of {} holds values other than 0 and 1 in {} rows",
                v.label_column,
                v.source,
                labels.other_values()
            )));
        }
        Ok(ValidationSet {
            data: table.features,
            labels: labels.outlier_flags(),
        })
    }
}

fn read_options(label_column: Option<&str>) -> ReadOptions {
    ReadOptions {
        label: match label_column {
            Some(name) => LabelColumn::Required(name.to_string()),
            None => LabelColumn::default(),
        },
        ..ReadOptions::default()
    }
}

/// Runs synchronous work on the blocking pool.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, Halt> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Halt::internal("running a blocking step", &e))
}

/// The names explanations give `n` features: `names` when there is one per feature, else
/// `x0`, `x1`, ….
fn explained_names(names: Option<&[String]>, n: usize) -> Vec<String> {
    match names {
        Some(names) if names.len() == n => names.to_vec(),
        _ => (0..n).map(detect_core::explain::column_name).collect(),
    }
}

/// Rows' explanations and the features' names, as the outputs write them.
struct Explained<'a> {
    /// Explanations of the rendered rows (and maybe others): rendered row `i`'s is row
    /// `first + i`.
    rows: &'a Explanations,
    first: usize,
    names: &'a [String],
}

impl Explained<'_> {
    /// Row `i`'s explanation as a JSON array of `{"feature", "contribution"}`.
    fn json(&self, i: usize, s: &mut String) {
        s.push('[');
        for (j, c) in self.rows[self.first + i].iter().enumerate() {
            if j > 0 {
                s.push(',');
            }
            let name = Value::String(self.names[c.feature].clone());
            let _ = write!(
                s,
                "{{\"feature\":{name},\"contribution\":{}}}",
                c.contribution
            );
        }
        s.push(']');
    }

    /// Row `i`'s explanation as one CSV field ([`detect_core::explain::csv_cell`]).
    fn csv(&self, i: usize, s: &mut String) {
        s.push_str(&detect_core::explain::csv_cell(
            &self.rows[self.first + i],
            self.names,
        ));
    }
}

/// Renders rows `first_row..` of a detection as output text, with each row's explanation
/// when given. JSON output is one array: the first chunk opens it (see
/// [`OutputWriter::start`]) and later chunks start with a comma.
fn render(
    d: &Detection,
    first_row: usize,
    format: OutputFormat,
    first: bool,
    explained: Option<&Explained<'_>>,
) -> Vec<u8> {
    let mut s = String::with_capacity(d.scores.len() * if explained.is_some() { 120 } else { 40 });
    for (i, (score, prediction)) in d.scores.iter().zip(&d.predictions).enumerate() {
        let row = first_row + i;
        match format {
            OutputFormat::Csv => {
                let _ = write!(s, "{row},{prediction},{score}");
                if let Some(e) = explained {
                    s.push(',');
                    e.csv(i, &mut s);
                }
                s.push('\n');
            }
            OutputFormat::Json => {
                if !(first && i == 0) {
                    s.push(',');
                }
                let _ = write!(
                    s,
                    "\n{{\"row\":{row},\"prediction\":{prediction},\"score\":{score}"
                );
                if let Some(e) = explained {
                    s.push_str(",\"explanation\":");
                    e.json(i, &mut s);
                }
                s.push('}');
            }
        }
    }
    s.into_bytes()
}

/// One source of a batch job being scored: the job, the source's name, where its rows go,
/// the job's control (cancellation, progress) and what progress to report after `n` rows.
struct SourceRun<'a, P> {
    job: &'a Job,
    source: &'a str,
    out: &'a mut OutputWriter,
    control: &'a JobControl,
    progress: P,
}

/// A job output being written: header, rows, footer.
struct OutputWriter {
    inner: ArtifactWriter,
    format: OutputFormat,
    rows: usize,
    /// Where it goes (for errors).
    uri: String,
}

impl OutputWriter {
    async fn start(
        artifacts: &ArtifactStore,
        path: &str,
        format: OutputFormat,
        explain: bool,
    ) -> Result<Self, pynomaly_store::StoreError> {
        let mut inner = artifacts.writer(path).await?;
        match format {
            OutputFormat::Csv if explain => {
                inner.write(b"row,prediction,score,explanation\n").await?
            }
            OutputFormat::Csv => inner.write(b"row,prediction,score\n").await?,
            OutputFormat::Json => inner.write(b"[").await?,
        }
        Ok(Self {
            inner,
            format,
            rows: 0,
            uri: artifacts.uri(path),
        })
    }

    async fn write(&mut self, bytes: &[u8], rows: usize) -> Result<(), pynomaly_store::StoreError> {
        self.inner.write(bytes).await?;
        self.rows += rows;
        Ok(())
    }

    async fn finish(mut self) -> Result<u64, pynomaly_store::StoreError> {
        if self.format == OutputFormat::Json {
            self.inner.write(b"\n]\n").await?;
        }
        self.inner.finish().await
    }

    async fn abort(self) {
        if let Err(e) = self.inner.abort().await {
            tracing::warn!(error = %e, "could not abort a job output");
        }
    }
}

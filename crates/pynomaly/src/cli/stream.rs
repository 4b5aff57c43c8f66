//! `pynomaly stream`: scores events from a Redis stream or a Kafka topic into an alerts
//! stream or topic, until SIGTERM or Ctrl-C (see the `pynomaly-stream` crate for the
//! guarantees).
//!
//! ```text
//! pynomaly stream --source redis://127.0.0.1:6379/sensor-data \
//!                 --sink redis://127.0.0.1:6379/anomaly-alerts --model sensors
//! pynomaly stream --source kafka://127.0.0.1:9092/sensor-data \
//!                 --sink kafka://127.0.0.1:9092/anomaly-alerts \
//!                 --algorithm isolation_forest --contamination 0.05 --update-frequency 1000
//! pynomaly stream --source redis+cluster://10.0.0.1:7000,10.0.0.2:7000/sensor-data \
//!                 --sink redis+cluster://10.0.0.1:7000,10.0.0.2:7000/anomaly-alerts --model sensors
//! ```
//!
//! `--model` reads the API's registry with the API's settings (`PYNOMALY_DATA_DIR` or
//! `--data-dir`, `DATABASE_URL`, `PYNOMALY_STORAGE_URL`, and `REDIS_URL`/`REDIS_CLUSTER`
//! for the model-change events: a server or a cluster as for `serve`, whichever Redis the
//! source and sink are on); online learning checkpoints its model to the same artifact
//! storage, under `stream-checkpoints/<group>/<source>.ckpt`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use pynomaly_runtime::{KeyHasher, open_artifacts, open_metadata, open_registry, shutdown_signal};
use pynomaly_stream::alert::EventFields;
use pynomaly_stream::kafka::{CONNECT_CHECK, KafkaSink, KafkaSource, KafkaSourceConfig};
use pynomaly_stream::redis::{RedisSink, RedisSource, RedisSourceConfig, StartFrom};
use pynomaly_stream::{
    CheckpointStore, Endpoint, Features, OnlineConfig, OnlineLearner, Pipeline, PipelineConfig,
    RegistryModel, Scoring, Sink, Source, StreamError, StreamMetrics,
};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::cli::InputError;

/// Arguments of `pynomaly stream`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
    pynomaly stream --source redis://127.0.0.1:6379/sensor-data --sink redis://127.0.0.1:6379/anomaly-alerts --model sensors
    pynomaly stream --source kafka://127.0.0.1:9092/sensor-data --sink kafka://127.0.0.1:9092/anomaly-alerts --algorithm isolation_forest --update-frequency 1000")]
pub struct StreamArgs {
    /// Events: redis://HOST:PORT[/DB]/STREAM, redis+cluster://HOST:PORT[,HOST:PORT]/STREAM
    /// (a Redis Cluster, by some of its nodes) or kafka://HOST:PORT[,HOST:PORT]/TOPIC
    #[arg(long, value_name = "URL")]
    pub source: String,
    /// Alerts: a stream or topic URL, as --source
    #[arg(long, value_name = "URL")]
    pub sink: String,
    /// Unreadable events, with the reason [default: the source with `.dlq` appended]
    #[arg(long, value_name = "URL")]
    pub dead_letter: Option<String>,
    /// Consumer group: processes with the same group share the stream's partitions
    #[arg(long, default_value = "pynomaly-stream", value_name = "NAME")]
    pub group: String,
    /// This consumer's name in the group (Redis; keep it across restarts to re-read what
    /// it had not acknowledged at once) [default: HOSTNAME-PID]
    #[arg(long, value_name = "NAME")]
    pub consumer: Option<String>,
    /// Where a new group starts: `earliest` (what the stream already holds) or `latest`
    #[arg(long, default_value = "earliest", value_parser = ["earliest", "latest"])]
    pub from: String,

    /// Score with this registry model's production version (picked up again when it changes)
    #[arg(long, value_name = "NAME", conflicts_with_all = ["algorithm", "contamination", "random_state", "params", "window", "warm_up", "update_frequency"])]
    pub model: Option<String>,
    /// Tenant of --model
    #[arg(long, default_value = "default", requires = "model")]
    pub tenant: String,
    /// How often the registry is asked for a new production version, in seconds
    #[arg(long, default_value_t = 2.0, value_name = "SECONDS")]
    pub model_refresh: f64,
    /// Data directory of the registry (as `pynomaly serve --data-dir`) [env: PYNOMALY_DATA_DIR]
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Learn online with this detector (when --model is not given)
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(detect_core::params::ALGORITHM_NAMES))]
    pub algorithm: Option<String>,
    /// Expected share of anomalies: `auto` or a number in (0, 0.5]
    #[arg(long, value_name = "auto|FRACTION")]
    pub contamination: Option<String>,
    /// Seed of each online isolation forest
    #[arg(long, value_name = "N")]
    pub random_state: Option<u64>,
    /// An algorithm parameter, e.g. `n_estimators=200` (repeatable)
    #[arg(long = "param", value_name = "NAME=VALUE", value_parser = crate::cli::detect::parse_param)]
    pub params: Vec<(String, Value)>,
    /// Events in the sliding window each refit uses
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    pub window: usize,
    /// Events held before the first model is fitted [default: --update-frequency, at most --window]
    #[arg(long, value_name = "N")]
    pub warm_up: Option<usize>,
    /// Refit every N events
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub update_frequency: usize,

    /// Feature paths, e.g. `temp,pressure,meta.rpm` [default: with --model, the model's
    /// feature names when it has them; else every numeric field but the id and timestamp
    /// fields, nested objects flattened, keys in sorted order]
    #[arg(long, value_name = "PATHS")]
    pub features: Option<String>,
    /// The event field that keys an alert (never a feature)
    #[arg(long, default_value = "id", value_name = "FIELD")]
    pub id_field: String,
    /// The event field copied as an alert's timestamp (never a feature)
    #[arg(long, default_value = "timestamp", value_name = "FIELD")]
    pub timestamp_field: String,
    /// Write alerts for anomalies only
    #[arg(long)]
    pub only_anomalies: bool,
    /// Events read and scored at once
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub batch_size: usize,
    /// Redis: take over entries another consumer left unacknowledged this long, in seconds
    #[arg(long, default_value_t = 30.0, value_name = "SECONDS")]
    pub claim_idle: f64,
    /// Kafka: a librdkafka setting for the consumer and producers, e.g.
    /// `session.timeout.ms=10000` (repeatable)
    #[arg(long = "kafka-config", value_name = "KEY=VALUE", value_parser = parse_setting)]
    pub kafka_config: Vec<(String, String)>,
    /// Redis: trim the alert and dead-letter streams to about N entries
    #[arg(long, value_name = "N")]
    pub sink_max_len: Option<u64>,
    /// Serve /metrics and /health here (port 0: any free port, printed at start)
    #[arg(long, value_name = "ADDR")]
    pub metrics_bind: Option<SocketAddr>,
    /// On SIGTERM, how long writing what was already read may take, in seconds
    #[arg(long, default_value_t = 10.0, value_name = "SECONDS")]
    pub drain_timeout: f64,

    /// Put each alert's top features in its `metadata.explanation`
    #[arg(long)]
    pub explain: bool,

    /// Features per alert with --explain [default: 3; at most the number of features]
    #[arg(long, value_name = "N", requires = "explain", value_parser = clap::value_parser!(u64).range(1..))]
    pub top_k: Option<u64>,
}

fn seconds(name: &str, v: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(v)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
            InputError(format!(
                "--{name} must be a positive number of seconds, got {v}"
            ))
            .into()
        })
}

fn input(e: StreamError) -> anyhow::Error {
    if e.is_input_error() {
        InputError(e.to_string()).into()
    } else {
        anyhow::Error::new(e)
    }
}

/// Runs the stream until SIGTERM or Ctrl-C.
///
/// # Errors
/// Bad options (exit status 2), a broker or store that cannot be reached at start-up.
pub fn run(args: &StreamArgs) -> anyhow::Result<()> {
    let source = Endpoint::parse(&args.source).map_err(input)?;
    let sink = Endpoint::parse(&args.sink).map_err(input)?;
    let dead = match &args.dead_letter {
        Some(url) => Endpoint::parse(url).map_err(input)?,
        None => source.with_suffix(".dlq"),
    };
    if args.model.is_none() && args.algorithm.is_none() {
        return Err(InputError(
            "give --model NAME (a registry model) or --algorithm NAME (learn online)".into(),
        )
        .into());
    }
    for (name, v) in [
        ("batch-size", args.batch_size),
        ("window", args.window),
        ("update-frequency", args.update_frequency),
    ] {
        if v == 0 {
            return Err(InputError(format!("--{name} must be at least 1")).into());
        }
    }
    if args.warm_up.is_some_and(|w| w < 2 || w > args.window) {
        return Err(InputError(format!(
            "--warm-up must be between 2 and --window ({})",
            args.window
        ))
        .into());
    }
    let mut features = match &args.features {
        Some(list) => Features::parse_paths(list).map_err(InputError)?,
        None => Features::AllNumeric,
    };
    let fields = EventFields {
        id: args.id_field.clone(),
        timestamp: args.timestamp_field.clone(),
    };
    let settings = crate::cli::serve::settings(args.data_dir.as_ref())?;
    let claim_idle = seconds("claim-idle", args.claim_idle)?;
    let refresh = seconds("model-refresh", args.model_refresh)?;
    let drain = seconds("drain-timeout", args.drain_timeout)?;
    let online = match &args.algorithm {
        Some(algorithm) => Some(OnlineConfig {
            detector: crate::cli::detect::detector_config(
                algorithm,
                args.contamination.as_deref().unwrap_or("auto"),
                args.random_state,
                &args.params,
            )?,
            window: args.window,
            warm_up: args
                .warm_up
                .unwrap_or(args.update_frequency.clamp(2, args.window)),
            update_frequency: args.update_frequency,
        }),
        None => None,
    };
    let consumer = args.consumer.clone().unwrap_or_else(default_consumer);

    // Dropped after the runtime: the exporter flushes the last spans.
    let (_telemetry, runtime) =
        crate::cli::start_process(&settings, "pynomaly-stream", "pynomaly-stream")?;
    runtime.block_on(async {
        let metrics = StreamMetrics::new();
        let stop = CancellationToken::new();
        // The API's keys: models the server wrote encrypted are read, checkpoints sealed.
        let artifacts = open_artifacts(&settings).with_context(|| {
            format!(
                "cannot open the artifact storage {}",
                settings.storage.artifacts_url
            )
        })?;
        // Alerts echo their event: personal data in it is masked as the API's privacy
        // settings say (PYNOMALY_PII_FIELDS, PYNOMALY_PII_MODE, PYNOMALY_PII_HASH_KEY).
        let data_dir = &settings.storage.data_dir;
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("cannot create the data directory {}", data_dir.display()))?;
        let hasher = KeyHasher::for_settings(&settings).context(
            "cannot read the server secret (PYNOMALY_SECRET_KEY or <data dir>/secret.key)",
        )?;
        let privacy = Arc::new(pynomaly_runtime::privacy(&settings, &hasher));
        let (scoring, refresher, checkpointer) = match (&args.model, online) {
            (Some(name), _) => {
                let meta = open_metadata(&settings)
                    .await
                    .context("cannot open the model registry")?;
                let registry = open_registry(&settings, &meta, &artifacts, &stop)
                    .await
                    .context("cannot open the model registry")?;
                if args.features.is_none() {
                    features = model_features(&registry, &args.tenant, name).await?;
                }
                let (slot, task) = RegistryModel {
                    registry,
                    tenant: args.tenant.clone(),
                    name: name.clone(),
                    refresh,
                }
                .start(metrics.clone(), stop.clone())
                .await
                .map_err(input)?;
                (Scoring::Registry(slot), Some(task), None)
            }
            (None, Some(config)) => {
                let path = format!(
                    "stream-checkpoints/{}/{}.ckpt",
                    sanitize(&args.group),
                    sanitize(&source.display())
                );
                let (learner, writer) = OnlineLearner::start(
                    config,
                    Some(CheckpointStore { artifacts, path }),
                    metrics.clone(),
                )
                .await
                .map_err(input)?;
                (Scoring::Online(Box::new(learner)), None, writer)
            }
            (None, None) => unreachable!("checked above"),
        };
        let src = open_source(&source, args, &consumer, claim_idle).await?;
        let sink_out = open_sink(&sink, args).await?;
        let dead_out = open_sink(&dead, args).await?;
        let about = json!({
            "source": source.display(), "sink": sink.display(), "dead_letter": dead.display(),
            "group": args.group, "consumer": consumer,
        });
        let http = match args.metrics_bind {
            Some(addr) => {
                let (bound, task) =
                    pynomaly_stream::metrics::serve(addr, metrics.clone(), about, stop.clone())
                        .await
                        .map_err(input)?;
                println!("metrics on http://{bound}/metrics, health on http://{bound}/health");
                Some(task)
            }
            None => None,
        };
        println!(
            "pynomaly stream: {} -> {} (dead letters: {}), group {}, consumer {consumer}",
            source.display(),
            sink.display(),
            dead.display(),
            args.group
        );
        let pipeline = Pipeline {
            source: src,
            sink: sink_out,
            dead_letters: dead_out,
            scoring,
            config: PipelineConfig {
                features,
                fields,
                only_anomalies: args.only_anomalies,
                batch_size: args.batch_size,
                queue_batches: 2,
                source_name: source.display(),
                drain_timeout: drain,
                traces: settings.telemetry.traces.enabled,
                privacy: Some(privacy),
                explain: args.explain.then(|| {
                    args.top_k
                        .map_or(detect_core::explain::DEFAULT_TOP_K, |k| k as usize)
                }),
            },
            metrics,
        };
        let shutdown = CancellationToken::new();
        let signal = {
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                shutdown_signal().await;
                tracing::info!("shutting down: finishing the events already read");
                shutdown.cancel();
            })
        };
        let summary = pipeline.run(shutdown).await;
        signal.abort();
        stop.cancel();
        if let Some(t) = refresher {
            let _ = t.await;
        }
        if let Some(t) = checkpointer {
            let _ = t.await;
        }
        if let Some(t) = http {
            let _ = t.await;
        }
        let summary = summary.map_err(input)?;
        eprintln!(
            "stopped: {} events, {} alerts, {} dead letters",
            summary.events, summary.alerts, summary.dead_letters
        );
        Ok(())
    })
}

async fn open_source(
    endpoint: &Endpoint,
    args: &StreamArgs,
    consumer: &str,
    claim_idle: Duration,
) -> anyhow::Result<Box<dyn Source>> {
    let start = if args.from == "latest" {
        StartFrom::Latest
    } else {
        StartFrom::Earliest
    };
    match endpoint {
        Endpoint::Redis { url, stream } => {
            let config = RedisSourceConfig {
                group: args.group.clone(),
                consumer: consumer.to_string(),
                start,
                claim_idle,
                block: Duration::from_millis(500),
            };
            let source = RedisSource::connect(url, stream, config)
                .await
                .with_context(|| format!("cannot consume {}", endpoint.display()))?;
            Ok(Box::new(source))
        }
        Endpoint::Kafka { .. } => kafka_source(endpoint, args, consumer, start).await,
    }
}

async fn open_sink(endpoint: &Endpoint, args: &StreamArgs) -> anyhow::Result<Arc<dyn Sink>> {
    let max_len = args.sink_max_len;
    match endpoint {
        Endpoint::Redis { url, stream } => Ok(Arc::new(
            RedisSink::new(url, stream, endpoint.display(), max_len).map_err(input)?,
        )),
        Endpoint::Kafka { .. } => kafka_sink(endpoint, args).await,
    }
}

async fn kafka_source(
    endpoint: &Endpoint,
    args: &StreamArgs,
    consumer: &str,
    start: StartFrom,
) -> anyhow::Result<Box<dyn Source>> {
    let Endpoint::Kafka { brokers, topic } = endpoint else {
        unreachable!("called for Kafka endpoints")
    };
    let config = KafkaSourceConfig {
        group: args.group.clone(),
        client_id: consumer.to_string(),
        start,
        poll_wait: Duration::from_millis(500),
        extra: args.kafka_config.clone(),
    };
    let source = KafkaSource::connect(brokers, topic, config).map_err(input)?;
    source
        .check_connection(CONNECT_CHECK)
        .await
        .map_err(input)?;
    Ok(Box::new(source))
}

async fn kafka_sink(endpoint: &Endpoint, args: &StreamArgs) -> anyhow::Result<Arc<dyn Sink>> {
    let Endpoint::Kafka { brokers, topic } = endpoint else {
        unreachable!("called for Kafka endpoints")
    };
    let sink =
        KafkaSink::new(brokers, topic, endpoint.display(), &args.kafka_config).map_err(input)?;
    sink.check_connection(CONNECT_CHECK).await.map_err(input)?;
    Ok(Arc::new(sink))
}

/// `key=value`.
fn parse_setting(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.trim().to_string())),
        _ => Err(format!("expected KEY=VALUE, got '{s}'")),
    }
}

fn default_consumer() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "pynomaly".into());
    format!("{host}-{}", std::process::id())
}

/// A path segment from a name: anything but `[A-Za-z0-9._-]` becomes `_`.
fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The features of events scored with the model `name`: its production version's feature
/// names looked up in each event (dotted names nested), when it has them; else every
/// numeric field but the id and timestamp.
async fn model_features(
    registry: &pynomaly_models::ModelRegistry,
    tenant: &str,
    name: &str,
) -> anyhow::Result<Features> {
    let loaded = registry
        .load(tenant, name, None)
        .await
        .context("cannot read the model")?;
    let names = loaded.and_then(|l| l.version.feature_names.clone());
    Ok(match names {
        Some(names) => Features::from_names(names.iter().map(String::as_str)).ok_or_else(|| {
            InputError(format!(
                "model '{name}' has feature names that are not field paths: {names:?}; \
                 name the features with --features"
            ))
        })?,
        None => Features::AllNumeric,
    })
}

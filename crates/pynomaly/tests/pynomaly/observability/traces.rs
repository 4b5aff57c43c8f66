//! Traces exported over OTLP/HTTP, decoded by a receiver in the test.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode as AxumStatus, header};
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message as _;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use testkit::{Api, Proc, Reply, ScaleOut, eventually, free_port, wait_ready};

use super::{Deployment, csv_with_outliers, deploy};
use crate::stream::Broker as _;
use crate::stream::redis::RedisStreams;
use crate::{Env, pynomaly};

/// One span as the receiver decoded it.
#[derive(Debug, Clone)]
struct Received {
    service: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent: String,
    kind: i32,
    status_code: i32,
    attrs: HashMap<String, Value>,
}

impl Received {
    fn attr(&self, key: &str) -> &Value {
        self.attrs.get(key).unwrap_or(&Value::Null)
    }
}

#[derive(Debug, Clone, Default)]
struct Receiver {
    spans: Arc<Mutex<Vec<Received>>>,
    /// Bodies that were not `application/x-protobuf` or did not decode.
    rejected: Arc<Mutex<Vec<String>>>,
}

impl Receiver {
    fn spans(&self) -> Vec<Received> {
        self.spans.lock().unwrap().clone()
    }
}

fn any_to_json(v: Option<&Any>) -> Value {
    match v {
        Some(Any::StringValue(s)) => json!(s),
        Some(Any::IntValue(i)) => json!(i),
        Some(Any::DoubleValue(f)) => json!(f),
        Some(Any::BoolValue(b)) => json!(b),
        other => json!(format!("{other:?}")),
    }
}

async fn export(
    State(rx): State<Receiver>,
    headers: HeaderMap,
    body: Bytes,
) -> (AxumStatus, [(header::HeaderName, &'static str); 1], Vec<u8>) {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let reply = |status| {
        (
            status,
            [(header::CONTENT_TYPE, "application/x-protobuf")],
            ExportTraceServiceResponse::default().encode_to_vec(),
        )
    };
    if ct != "application/x-protobuf" {
        rx.rejected
            .lock()
            .unwrap()
            .push(format!("content-type {ct}"));
        return reply(AxumStatus::UNSUPPORTED_MEDIA_TYPE);
    }
    let request = match ExportTraceServiceRequest::decode(body) {
        Ok(r) => r,
        Err(e) => {
            rx.rejected.lock().unwrap().push(e.to_string());
            return reply(AxumStatus::BAD_REQUEST);
        }
    };
    let mut spans = rx.spans.lock().unwrap();
    for rs in request.resource_spans {
        let service = rs
            .resource
            .as_ref()
            .and_then(|r| r.attributes.iter().find(|kv| kv.key == "service.name"))
            .map(|kv| any_to_json(kv.value.as_ref().and_then(|v| v.value.as_ref())))
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        for ss in rs.scope_spans {
            for s in ss.spans {
                spans.push(Received {
                    service: service.clone(),
                    name: s.name.clone(),
                    trace_id: hex::encode(&s.trace_id),
                    span_id: hex::encode(&s.span_id),
                    parent: hex::encode(&s.parent_span_id),
                    kind: s.kind,
                    status_code: s.status.as_ref().map_or(0, |st| st.code),
                    attrs: s
                        .attributes
                        .iter()
                        .map(|kv| {
                            (
                                kv.key.clone(),
                                any_to_json(kv.value.as_ref().and_then(|v| v.value.as_ref())),
                            )
                        })
                        .collect(),
                });
            }
        }
    }
    reply(AxumStatus::OK)
}

/// A receiver and the OTLP/HTTP app that fills it.
fn receiver_app() -> (Receiver, axum::Router) {
    let rx = Receiver::default();
    let app = axum::Router::new()
        .route("/v1/traces", post(export))
        .with_state(rx.clone());
    (rx, app)
}

/// Starts the receiver; its base URL (what `OTEL_EXPORTER_OTLP_ENDPOINT` is set to).
async fn start_receiver() -> (Receiver, String) {
    let (rx, app) = receiver_app();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (rx, format!("http://{addr}"))
}

fn find<'a>(spans: &'a [Received], what: &str, f: impl Fn(&Received) -> bool) -> &'a Received {
    let found: Vec<&Received> = spans.iter().filter(|s| f(s)).collect();
    assert_eq!(
        found.len(),
        1,
        "expected exactly one span: {what}; received spans:\n{}",
        spans
            .iter()
            .map(|s| format!(
                "  {} {} trace={} parent={}",
                s.service, s.name, s.trace_id, s.parent
            ))
            .collect::<Vec<_>>()
            .join("\n")
    );
    found[0]
}

fn children<'a>(spans: &'a [Received], parent: &Received) -> Vec<&'a Received> {
    spans
        .iter()
        .filter(|s| s.parent == parent.span_id && s.trace_id == parent.trace_id)
        .collect()
}

/// The names of the direct children of `parent`.
fn child_names<'a>(spans: &'a [Received], parent: &Received) -> Vec<&'a str> {
    children(spans, parent)
        .iter()
        .map(|s| s.name.as_str())
        .collect()
}

fn log_lines(proc: &Proc) -> Vec<Value> {
    proc.log_text()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .collect()
}

fn base_env(root: &Path, endpoint: &str) -> Env {
    Env::default()
        .set("PYNOMALY_SOURCES_DIR", root.join("sources"))
        .set("PYNOMALY_STORAGE_URL", root.join("storage"))
        .set("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
        .set("OTEL_BSP_SCHEDULE_DELAY", "100")
        .set("LOG_LEVEL", "info")
        .set("RAYON_NUM_THREADS", "1")
        .set("PYNOMALY_SHUTDOWN_TIMEOUT_S", "5")
}

/// [`base_env`] for a `serve` named `service` on `port`, its data under `root/data`.
fn serve_env(root: &Path, endpoint: &str, service: &str, port: u16) -> Env {
    base_env(root, endpoint)
        .set("OTEL_SERVICE_NAME", service)
        .set("PYNOMALY_BIND", format!("127.0.0.1:{port}"))
        .set("PYNOMALY_DATA_DIR", root.join("data"))
}

/// Starts `pynomaly serve` on `env` and waits until it is live; the process and calls to
/// it with the admin key it wrote under `root/data`.
async fn serve(root: &Path, env: &Env, port: u16) -> (Proc, Api) {
    let server = pynomaly("serve", &["serve"], env, root);
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(&format!("{base}/health/live"), &server).await;
    let key = std::fs::read_to_string(root.join("data/admin.key")).unwrap();
    (server, Api::new(base, key.trim()))
}

fn traceparent(trace: &str, parent: &str) -> String {
    format!("00-{trace}-{parent}-01")
}

/// `POST path` with `body`, continuing the sampled trace `trace` from its span `parent`.
async fn traced(api: &Api, path: &str, body: &Value, (trace, parent): (&str, &str)) -> Reply {
    let call = api.call(Method::POST, path).json(body);
    call.header("traceparent", &traceparent(trace, parent))
        .send()
        .await
}

/// Submits a job with [`traced`] and waits for it to end; its final JSON.
async fn run_traced_job(api: &Api, path: &str, body: &Value, span: (&str, &str)) -> Value {
    let submitted = traced(api, path, body, span).await;
    let id = submitted.assert_status(202)["job_id"].as_str().unwrap();
    api.wait_job(id, Duration::from_secs(60)).await
}

const SERVER: i32 = SpanKind::Server as i32;
const CONSUMER: i32 = SpanKind::Consumer as i32;
const STATUS_ERROR: i32 = 2;

/// Waits until the receiver holds spans named `names` (the exporter sends in batches).
async fn wait_spans(rx: &Receiver, names: &[&str]) {
    let what = format!("the receiver holds spans {names:?}");
    eventually(&what, Duration::from_secs(20), async || {
        let spans = rx.spans();
        if names.iter().all(|n| spans.iter().any(|s| s.name == *n)) {
            Ok(())
        } else {
            Err(format!(
                "{:?}",
                spans.iter().map(|s| &s.name).collect::<Vec<_>>()
            ))
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::too_many_lines)]
async fn requests_and_jobs_are_traced_over_otlp_and_logs_carry_their_ids() {
    let (rx, endpoint) = start_receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("sources")).unwrap();
    std::fs::write(root.join("sources/data.csv"), csv_with_outliers(1200)).unwrap();
    let port = free_port();
    let env = serve_env(root, &endpoint, "pynomaly-trace-test", port)
        .set("WORKER_CONCURRENCY", "1")
        // Parent-based with ratio 0: a request that continues a sampled trace is traced, a
        // new trace is not.
        .set("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
        .set("OTEL_TRACES_SAMPLER_ARG", "0");
    let (mut server, api) = serve(root, &env, port).await;

    let (t_train, p_train) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    let (t_batch, p_batch) = ("5bf92f3577b34da6a3ce929d0e0e4737", "10f067aa0ba902b8");
    let (t_job, p_job) = ("6bf92f3577b34da6a3ce929d0e0e4738", "20f067aa0ba902b9");
    let (t_404, p_404) = ("7bf92f3577b34da6a3ce929d0e0e4739", "30f067aa0ba902ba");
    let (t_pred, p_pred) = ("8bf92f3577b34da6a3ce929d0e0e473a", "40f067aa0ba902bb");
    let mut rows = testkit::data::wave_rows(40);
    rows.push(vec![30.0, -30.0]);
    let train = json!({"model_name": "traced", "data": rows, "random_state": 1});
    let trained = traced(&api, "/api/v1/models", &train, (t_train, p_train)).await;
    trained.assert_status(201);
    // No traceparent: a new trace, not sampled (ratio 0).
    let predict = "/api/v1/models/traced/predict";
    let two_rows = json!({"data": [[0.1, 0.2], [25.0, -25.0]]});
    let unsampled = api.call(Method::POST, predict).json(&two_rows);
    let unsampled = unsampled.header("x-request-id", "unsampled-predict");
    unsampled.send().await.assert_status(200);
    // Neither an id nor a traceparent: the request's id is its new trace's id.
    let fresh = api.post(predict, &json!({"data": [[0.1, 0.2]]})).await;
    fresh.assert_status(200);
    let fresh_id = fresh.headers["x-request-id"].to_str().unwrap().to_string();
    assert!(
        fresh_id.len() == 32 && fresh_id.bytes().all(|b| b.is_ascii_hexdigit()),
        "a trace id: {fresh_id}"
    );
    // A sampled predict of two rows: scored inline, its ml.* attributes on the request span.
    let traced_predict = traced(&api, predict, &two_rows, (t_pred, p_pred)).await;
    let traced_predict = traced_predict.assert_status(200);
    let not_found = api
        .call(Method::POST, "/api/v1/models/nothing-here/predict")
        .json(&json!({"data": [[0.1, 0.2]]}))
        .header("traceparent", &traceparent(t_404, p_404))
        .header("x-request-id", "traced-404")
        .send()
        .await;
    let body = not_found.assert_status(404);
    assert_eq!(body["request_id"], "traced-404", "{body}");
    let batch = json!({"data_source": "data.csv", "model_name": "traced"});
    let job = run_traced_job(&api, "/api/v1/batch", &batch, (t_batch, p_batch)).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let train =
        json!({"model_name": "from-file", "training_data": "data.csv", "contamination": 0.02});
    let job2 = run_traced_job(&api, "/api/v1/models", &train, (t_job, p_job)).await;
    assert_eq!(job2["status"], "succeeded", "{job2}");
    wait_spans(&rx, &["job batch", "job train"]).await;
    // A graceful stop flushes what the batch processor still holds.
    server.stop(Duration::from_secs(20));
    assert!(
        rx.rejected.lock().unwrap().is_empty(),
        "the receiver rejected exports: {:?}",
        rx.rejected.lock().unwrap()
    );
    let spans = rx.spans();
    assert!(
        spans.iter().all(|s| s.service == "pynomaly-trace-test"),
        "OTEL_SERVICE_NAME names the service: {:?}",
        spans.iter().map(|s| &s.service).collect::<Vec<_>>()
    );

    // Inline training: the request span continues the caller's trace; fit and store are
    // its children with the guide's ml.* attributes.
    let train = find(&spans, "the inline training request", |s| {
        s.name == "POST /api/v1/models" && s.trace_id == t_train
    });
    assert_eq!(train.parent, p_train, "continues the caller's span");
    assert_eq!(train.kind, SERVER);
    assert_eq!(train.attr("http.method"), "POST");
    assert_eq!(train.attr("http.route"), "/api/v1/models");
    assert_eq!(train.attr("http.status_code"), 201);
    let steps = child_names(&spans, train);
    assert!(
        steps.contains(&"fit") && steps.contains(&"store"),
        "{steps:?}"
    );
    let fit = find(&spans, "the inline fit", |s| {
        s.name == "fit" && s.parent == train.span_id
    });
    assert_eq!(fit.attr("ml.algorithm"), "isolation_forest");
    assert_eq!(fit.attr("ml.data_size"), "small");
    assert_eq!(fit.attr("ml.data_rows"), 41);
    assert!(
        fit.attr("ml.anomalies_detected").as_i64().is_some(),
        "{fit:?}"
    );

    // Sampling: the predict that started a new trace was not exported...
    assert!(
        !spans
            .iter()
            .any(|s| s.name == "POST /api/v1/models/{name}/predict"
                && s.attr("http.status_code") == 200
                && s.trace_id != t_pred),
        "ratio 0 drops new traces"
    );
    // ...but its log line still carries a trace id (to find it when sampling keeps it).
    let logs = log_lines(&server);
    let unsampled = logs
        .iter()
        .find(|l| l["request_id"] == "unsampled-predict")
        .expect("the predict's access log line");
    assert_eq!(
        unsampled["trace_id"].as_str().map(str::len),
        Some(32),
        "{unsampled}"
    );
    let fresh_line = logs
        .iter()
        .find(|l| l["request_id"] == fresh_id.as_str())
        .expect("the id-less predict's access log line");
    assert_eq!(fresh_line["trace_id"], fresh_id.as_str(), "{fresh_line}");

    // The sampled inline predict: one span, carrying the step's ml.* attributes.
    let predict = find(&spans, "the sampled predict", |s| {
        s.trace_id == t_pred && s.kind == SERVER
    });
    assert_eq!(predict.name, "POST /api/v1/models/{name}/predict");
    assert_eq!(predict.parent, p_pred);
    assert_eq!(predict.attr("http.status_code"), 200);
    assert_eq!(predict.attr("ml.algorithm"), "isolation_forest");
    assert_eq!(predict.attr("ml.data_size"), "small");
    // An inline step's row count is its size class's (at most 32 rows: "small").
    assert_eq!(predict.attr("ml.data_rows"), &Value::Null, "{predict:?}");
    // No id of its own: the request's id is made of the span's ids, not repeated on it.
    assert_eq!(predict.attr("request_id"), &Value::Null, "{predict:?}");
    let predict_line = logs
        .iter()
        .find(|l| l["message"] == "request" && l["trace_id"] == t_pred)
        .expect("the sampled predict's access log line");
    assert_eq!(
        predict_line["request_id"],
        format!("{t_pred}-{}", predict.span_id),
        "{predict_line}"
    );
    assert_eq!(
        predict.attr("ml.anomalies_detected"),
        &traced_predict["anomaly_count"],
        "{predict:?}"
    );
    assert!(
        children(&spans, predict).is_empty(),
        "an inline predict makes no step span: {:?}",
        children(&spans, predict)
    );

    // A client error: the span carries the status and the contract's code.
    let not_found = find(&spans, "the 404 predict", |s| {
        s.trace_id == t_404 && s.kind == SERVER
    });
    assert_eq!(not_found.name, "POST /api/v1/models/{name}/predict");
    assert_eq!(not_found.attr("http.status_code"), 404);
    assert_eq!(not_found.attr("error.type"), "not_found");
    assert_eq!(
        not_found.attr("request_id"),
        "traced-404",
        "the client's own id"
    );
    assert!(
        not_found
            .attr("error.message")
            .as_str()
            .unwrap_or("")
            .contains("nothing-here"),
        "{not_found:?}"
    );

    // The batch job: one trace from the submitting request to the job's steps.
    let submit = find(&spans, "the batch submission", |s| {
        s.trace_id == t_batch && s.kind == SERVER
    });
    assert_eq!(submit.name, "POST /api/v1/batch");
    assert_eq!(submit.parent, p_batch);
    assert_eq!(submit.attr("http.status_code"), 202);
    let job_span = find(&spans, "the batch job", |s| s.name == "job batch");
    assert_eq!(
        job_span.trace_id, t_batch,
        "the job continues the request's trace"
    );
    assert_eq!(
        job_span.parent, submit.span_id,
        "the job's parent is the request"
    );
    assert_eq!(job_span.kind, CONSUMER);
    assert_eq!(job_span.attr("job.status"), "succeeded");
    let steps = child_names(&spans, job_span);
    assert_eq!(steps.len(), 3, "{steps:?}");
    for step in ["parse", "score", "store"] {
        assert!(steps.contains(&step), "{step} in {steps:?}");
    }
    let score = find(&spans, "the batch's score step", |s| {
        s.name == "score" && s.parent == job_span.span_id
    });
    assert_eq!(score.attr("ml.algorithm"), "isolation_forest");
    assert_eq!(score.attr("ml.data_rows"), 1200);
    assert_eq!(score.attr("ml.data_size"), "large");
    assert_eq!(
        score.attr("ml.anomalies_detected"),
        &job["result"]["anomaly_count"],
        "the span counts what the job reports"
    );

    // The training job: parse, fit, store.
    let train_job_span = find(&spans, "the training job", |s| s.name == "job train");
    assert_eq!(train_job_span.trace_id, t_job);
    let steps = child_names(&spans, train_job_span);
    for step in ["parse", "fit", "store"] {
        assert!(steps.contains(&step), "{step} in {steps:?}");
    }

    // Logs lead to traces: the batch request's access line and the job's lines carry
    // the ids of their spans.
    let access = logs
        .iter()
        .find(|l| l["route"] == "/api/v1/batch" && l["message"] == "request")
        .expect("the batch access log line");
    assert_eq!(access["trace_id"], t_batch, "{access}");
    assert_eq!(access["span_id"], submit.span_id.as_str(), "{access}");
    let started = logs
        .iter()
        .find(|l| l["message"] == "job started" && l["trace_id"] == t_batch)
        .expect("the batch job's 'job started' line carries the trace id");
    assert_eq!(started["span_id"], job_span.span_id.as_str(), "{started}");
    let errors: Vec<&Received> = spans
        .iter()
        .filter(|s| s.status_code == STATUS_ERROR)
        .collect();
    assert!(errors.is_empty(), "no span failed here: {errors:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_run_by_a_worker_process_continues_the_submitting_request_trace() {
    // The worker takes jobs from Redis; skipped without it and Postgres.
    testkit::with_postgres_and_redis(worker_trace).await;
}

async fn worker_trace(scale_out: ScaleOut) {
    let (rx, endpoint) = start_receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("sources")).unwrap();
    std::fs::write(root.join("sources/data.csv"), csv_with_outliers(300)).unwrap();
    let env = base_env(root, &endpoint)
        .set("DATABASE_URL", &scale_out.database_url)
        .set("REDIS_URL", &scale_out.redis_url)
        .set("PYNOMALY_REDIS_PREFIX", &scale_out.redis_prefix)
        .set("PYNOMALY_SECRET_KEY", "5a".repeat(32));
    // Quiet logs do not quiet traces.
    let api_env = env.clone().set("LOG_LEVEL", "warn");
    let Deployment {
        mut api_proc,
        mut worker,
        api,
        worker_metrics_port,
        ..
    } = deploy(root, &env, api_env, "1").await;
    let worker_metrics = format!("http://127.0.0.1:{worker_metrics_port}/metrics");
    let rows = testkit::data::wave_rows(50);
    let trained = api
        .post("/api/v1/models", &json!({"model_name": "w", "data": rows}))
        .await;
    trained.assert_status(201);
    let (trace, parent) = ("8bf92f3577b34da6a3ce929d0e0e4730", "40f067aa0ba902bb");
    let batch = json!({"data_source": "data.csv", "model_name": "w"});
    let job = run_traced_job(&api, "/api/v1/batch", &batch, (trace, parent)).await;
    assert_eq!(job["status"], "succeeded", "{job}\n{}", worker.log_tail());

    // The worker's own metrics port counts the job it ran.
    let text = api.client().get(&worker_metrics).send().await.unwrap();
    let text = text.text().await.unwrap();
    assert!(
        text.contains("pynomaly_job_duration_seconds_count{kind=\"batch\",status=\"succeeded\"} 1"),
        "{text}"
    );
    assert!(text.contains("role=\"worker\""), "{text}");

    wait_spans(&rx, &["job batch", "POST /api/v1/batch"]).await;
    worker.stop(Duration::from_secs(20));
    api_proc.stop(Duration::from_secs(20));
    let spans = rx.spans();
    let submit = find(&spans, "the batch submission", |s| {
        s.trace_id == trace && s.kind == SERVER
    });
    assert_eq!(
        submit.service, "pynomaly-api",
        "the default service name of serve"
    );
    let job_span = find(&spans, "the batch job", |s| s.name == "job batch");
    assert_eq!(
        job_span.service, "pynomaly-worker",
        "run by the worker process"
    );
    assert_eq!(
        job_span.trace_id, trace,
        "the worker continues the request's trace"
    );
    assert_eq!(job_span.parent, submit.span_id);
    let steps = child_names(&spans, job_span);
    for step in ["parse", "score", "store"] {
        assert!(steps.contains(&step), "{step} in {steps:?}");
    }
    let lines = log_lines(&worker);
    assert!(
        lines
            .iter()
            .any(|l| l["message"] == "job started" && l["trace_id"] == trace),
        "the worker's log lines carry the trace id:\n{}",
        worker.log_tail()
    );
}

/// `pynomaly stream` exports a trace per batch: `stream.batch` (consumer) with its
/// `score` and `write` steps, counting events, anomalies and dead letters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::too_many_lines)]
async fn a_stream_process_traces_each_batch_with_its_score_and_write_steps() {
    // The stream reads a Redis stream.
    let Some(streams) = RedisStreams::open("traces", &[]) else {
        return;
    };
    let (rx, endpoint) = start_receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let events: Vec<Value> = (0..300)
        .map(|i| {
            let (a, b) = (f64::from(i % 17) / 17.0, f64::from(i % 11) / 11.0);
            json!({"id": format!("e{i}"), "a": a, "meta": {"b": b}})
        })
        .collect();
    streams.produce("events", &events);
    streams.produce_raw("events", "bad", "not json");

    let env = base_env(root, &endpoint)
        .set("OTEL_SERVICE_NAME", "pynomaly-stream-test")
        .set("PYNOMALY_DATA_DIR", root.join("data"));
    let source = streams.url("events");
    let args = [
        "stream",
        "--source",
        &source,
        "--sink",
        &streams.url("alerts"),
        "--algorithm",
        "isolation_forest",
        "--contamination",
        "0.1",
        "--warm-up",
        "100",
        "--window",
        "200",
        "--update-frequency",
        "100000",
        "--batch-size",
        "50",
    ];
    let mut stream = pynomaly("stream", &args, &env, root);
    eventually(
        "300 alerts and 1 dead letter",
        Duration::from_secs(60),
        async || {
            let (alerts, dead) = (streams.len("alerts"), streams.len("events.dlq"));
            if alerts == 300 && dead == 1 {
                Ok(())
            } else {
                Err(format!(
                    "{alerts} alerts and {dead} dead letters:\n{}",
                    stream.log_tail()
                ))
            }
        },
    )
    .await;
    // A graceful stop flushes the exporter.
    stream.stop(Duration::from_secs(20));
    wait_spans(&rx, &["stream.batch", "score", "write"]).await;
    let spans = rx.spans();
    assert!(rx.rejected.lock().unwrap().is_empty());
    let batches: Vec<&Received> = spans.iter().filter(|s| s.name == "stream.batch").collect();
    let int = |s: &Received, k: &str| s.attr(k).as_i64().unwrap_or_else(|| panic!("{k} of {s:?}"));
    let sum = |spans: &[&Received], k: &str| spans.iter().map(|s| int(s, k)).sum::<i64>();
    assert_eq!(
        sum(&batches, "messaging.batch.message_count"),
        301,
        "every event read is in one batch's span: {batches:?}"
    );
    assert_eq!(sum(&batches, "stream.dead_letters"), 1);
    let anomalies = sum(&batches, "ml.anomalies_detected");
    assert!((1..300).contains(&anomalies), "{anomalies} anomalies");
    for b in &batches {
        assert_eq!(b.service, "pynomaly-stream-test");
        assert_eq!(b.kind, CONSUMER);
        assert_eq!(b.parent, "", "a batch starts its own trace");
        assert_eq!(b.attr("ml.algorithm"), "isolation_forest");
        assert_eq!(b.attr("messaging.source.name"), &json!(source));
        assert!(int(b, "ml.model_version") >= 1);
        let steps = child_names(&spans, b);
        assert_eq!(
            steps.iter().filter(|s| **s == "score").count(),
            1,
            "one score step per batch: {steps:?}"
        );
    }
    // Writes belong to a batch's trace (batches written together: the first's).
    let writes: Vec<&Received> = spans.iter().filter(|s| s.name == "write").collect();
    for w in &writes {
        assert!(
            batches
                .iter()
                .any(|b| b.span_id == w.parent && b.trace_id == w.trace_id),
            "{w:?} is a child of a batch span"
        );
        assert_ne!(w.status_code, STATUS_ERROR);
    }
    assert_eq!(
        sum(&writes, "messaging.batch.message_count"),
        300,
        "every alert written under a write span"
    );
    assert_eq!(sum(&writes, "stream.dead_letters"), 1);
}

/// Starts the receiver behind TLS with the certificate and key in `dir` (PEM); its base
/// URL, `https://localhost:PORT`.
async fn start_tls_receiver(dir: &Path) -> (Receiver, String) {
    use tokio_rustls::rustls::{self, pki_types::pem::PemObject as _};
    let certs = rustls::pki_types::CertificateDer::pem_file_iter(dir.join("leaf.pem"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_file(dir.join("leaf.key")).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let (rx, app) = receiver_app();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, app) = (acceptor.clone(), app.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper_util::service::TowerToHyperService::new(app);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (rx, format!("https://localhost:{port}"))
}

/// An `https://` collector endpoint: spans go over TLS, the collector's certificate
/// checked against the trust store (`SSL_CERT_FILE` naming a private CA here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_an_https_collector_trusted_through_ssl_cert_file() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // ca.pem, and leaf.pem and leaf.key, which the receiver serves.
    let Some(ca) = testkit::TestCa::new(root) else {
        return;
    };
    ca.issue("leaf");
    let (rx, endpoint) = start_tls_receiver(root).await;
    let port = free_port();
    let env = serve_env(root, &endpoint, "pynomaly-tls-test", port)
        .set("SSL_CERT_FILE", root.join("ca.pem"));
    let (mut server, api) = serve(root, &env, port).await;
    let anonymous = Api::with_client(api.client().clone(), api.base());
    let status = anonymous.get("/api/v1/models").await.status;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    server.stop(Duration::from_secs(20));
    wait_spans(&rx, &["GET /api/v1/models"]).await;
    let spans = rx.spans();
    let span = find(&spans, "the request", |s| s.name == "GET /api/v1/models");
    assert_eq!(span.service, "pynomaly-tls-test");
    assert_eq!(span.attr("http.status_code"), 401);
    assert!(rx.rejected.lock().unwrap().is_empty());
}

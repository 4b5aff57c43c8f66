//! `pynomaly stream` on Redis Streams: the shared suite on the test Redis
//! (`PYNOMALY_TEST_REDIS_URL`) and on a Redis Cluster of the test's own
//! ([`on_a_redis_cluster`]), and what is tested on the one server only.

use std::cell::RefCell;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use deadpool_redis::redis::{self, Commands, ConnectionLike};
use pynomaly_models::{ModelEvents, ModelRegistry};
use pynomaly_redis::RedisTarget;
use pynomaly_store::{NewStage, PRODUCTION, PostgresStore};
use serde_json::{Value, json};
use testkit::{RedisCluster, TestDatabase, wait_until};
use tokio_util::sync::CancellationToken;

use super::harness::{
    Message, Rng, StreamProcess, artifacts_in, register_in, register_model, register_model_named,
    sensor_event, sensor_events,
};
use super::{Broker, WAIT};

suite!(RedisStreams);

/// The shared suite with every stream on a 3-master Redis Cluster started for the test,
/// named to `pynomaly stream` by `redis+cluster://` URLs: the events, alerts and dead
/// letters hash to different slots, so to different nodes; and a `--model` stream whose
/// `REDIS_URL` names the cluster. Ignored unless asked for (`--ignored on_a_redis_cluster`,
/// as `.ci/run` does).
mod on_a_redis_cluster {
    suite!(
        #[ignore = "starts a Redis Cluster (redis-server, redis-cli); .ci/run runs it"]
        super::RedisStreamsOn<super::Cluster>
    );

    #[test]
    #[ignore = "starts a Redis Cluster and needs PYNOMALY_TEST_DATABASE_URL; .ci/run runs it"]
    fn a_registry_model_follows_the_model_changes_announced_on_the_cluster() {
        super::a_registry_model_follows_the_model_changes_announced_on_the_cluster();
    }
}

/// Where a test's streams are.
pub(crate) trait Server {
    /// The Redis; `None`, the test skipping, when it is not configured.
    fn open() -> Option<Connection>;
}

/// A Redis for one test: the URL `pynomaly stream` is given (the stream appended), the
/// test's own connection, and the cluster started for this test only, if any (stopped
/// when dropped).
pub(crate) struct Connection {
    url: String,
    conn: Conn,
    cluster: Option<RedisCluster>,
}

/// The test's own connection to either kind of Redis.
enum Conn {
    Single(redis::Connection),
    Cluster(Box<redis::cluster::ClusterConnection>),
}

impl Conn {
    fn get(&mut self) -> &mut dyn ConnectionLike {
        match self {
            Self::Single(c) => c,
            Self::Cluster(c) => &mut **c,
        }
    }
}

/// The test Redis (`PYNOMALY_TEST_REDIS_URL`), one server.
pub(crate) struct Single;

impl Server for Single {
    fn open() -> Option<Connection> {
        let url = testkit::env::redis_url()?;
        let client = redis::Client::open(url.as_str()).expect("redis url");
        let conn = client.get_connection().expect("redis connection");
        Some(Connection {
            url,
            conn: Conn::Single(conn),
            cluster: None,
        })
    }
}

/// A Redis Cluster of three masters started for the test ([`RedisCluster`]).
pub(crate) struct Cluster;

impl Server for Cluster {
    fn open() -> Option<Connection> {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let cluster = rt.block_on(RedisCluster::start());
        let nodes: Vec<String> = cluster
            .ports()
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}"))
            .collect();
        let conn = redis::cluster::ClusterClient::new(nodes)
            .expect("cluster client")
            .get_connection()
            .expect("cluster connection");
        Some(Connection {
            url: cluster.url(),
            conn: Conn::Cluster(Box::new(conn)),
            cluster: Some(cluster),
        })
    }
}

/// Unique streams on the test Redis.
pub(crate) type RedisStreams = RedisStreamsOn<Single>;

/// Unique stream names for one test on the Redis `S`; deleted when dropped (on a cluster,
/// the cluster is).
pub(crate) struct RedisStreamsOn<S> {
    url: String,
    conn: RefCell<Conn>,
    prefix: String,
    // Dropped after the connection, when the streams have been deleted.
    _cluster: Option<RedisCluster>,
    server: PhantomData<S>,
}

impl<S> RedisStreamsOn<S> {
    /// The stream's key.
    fn key(&self, name: &str) -> String {
        format!("{}-{name}", self.prefix)
    }

    /// The number of entries in the stream.
    pub(crate) fn len(&self, name: &str) -> usize {
        redis::cmd("XLEN")
            .arg(self.key(name))
            .query(self.conn.borrow_mut().get())
            .expect("XLEN")
    }

    /// Adds one entry with these fields.
    fn add(&self, name: &str, fields: &[(&str, &str)]) {
        let mut cmd = redis::cmd("XADD");
        cmd.arg(self.key(name)).arg("*");
        for (k, v) in fields {
            cmd.arg(*k).arg(*v);
        }
        cmd.query::<String>(self.conn.borrow_mut().get())
            .expect("XADD");
    }
}

impl<S: Server> Broker for RedisStreamsOn<S> {
    const POSITION: &'static str = "entry ";
    // Entries a dead consumer left unacknowledged for a second are claimed by another.
    const TAKEOVER_ARGS: &'static [&'static str] = &["--claim-idle", "1"];
    const REBALANCE_REDELIVERS: bool = false;

    fn open(test: &str, _topics: &[(&str, i32)]) -> Option<Self> {
        let Connection { url, conn, cluster } = S::open()?;
        Some(Self {
            url,
            conn: RefCell::new(conn),
            prefix: format!(
                "pynomaly-test-stream-{test}-{}",
                uuid::Uuid::new_v4().simple()
            ),
            _cluster: cluster,
            server: PhantomData,
        })
    }

    fn url(&self, name: &str) -> String {
        format!("{}/{}", self.url.trim_end_matches('/'), self.key(name))
    }

    fn group(&self) -> String {
        format!("{}-group", self.prefix)
    }

    fn process_args(&self) -> Vec<String> {
        Vec::new()
    }

    fn produce(&self, name: &str, events: &[Value]) {
        let key = self.key(name);
        for chunk in events.chunks(500) {
            // The same XADDs pipelined; redis' blocking cluster connection takes its own
            // pipeline type (all to one stream: one slot).
            match &mut *self.conn.borrow_mut() {
                Conn::Single(c) => {
                    let mut pipe = redis::pipe();
                    for e in chunk {
                        pipe.cmd("XADD").arg(&key).arg("*").arg("value");
                        pipe.arg(e.to_string()).ignore();
                    }
                    pipe.query::<()>(c).expect("XADD");
                }
                Conn::Cluster(c) => {
                    let mut pipe = redis::cluster::cluster_pipe();
                    for e in chunk {
                        pipe.cmd("XADD").arg(&key).arg("*").arg("value");
                        pipe.arg(e.to_string()).ignore();
                    }
                    pipe.query::<()>(c).expect("XADD");
                }
            }
        }
    }

    fn produce_raw(&self, name: &str, key: &str, payload: &str) {
        self.add(name, &[("key", key), ("value", payload)]);
    }

    fn produce_broker_malformed(&self, name: &str) -> Vec<(&'static str, &'static str)> {
        // An entry without the field that holds the event.
        self.add(name, &[("key", "bad-no-value"), ("payload", "{}")]);
        vec![("bad-no-value", "the entry has no `value` field")]
    }

    fn read_all(&self, name: &str, at_least: usize) -> Vec<Message> {
        wait_until(&format!("{name} has {at_least} entries"), WAIT, || {
            self.len(name) >= at_least
        });
        let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
            .arg(self.key(name))
            .arg("-")
            .arg("+")
            .query(self.conn.borrow_mut().get())
            .expect("XRANGE");
        reply
            .ids
            .iter()
            .map(|entry| {
                let key: Option<String> = entry.get("key");
                let value: String = entry.get("value").expect("value field");
                (key, serde_json::from_str(&value).expect("JSON message"))
            })
            .collect()
    }

    fn pending(&self, name: &str, group: &str) -> Option<usize> {
        let reply: redis::streams::StreamPendingReply = redis::cmd("XPENDING")
            .arg(self.key(name))
            .arg(group)
            .query(self.conn.borrow_mut().get())
            .expect("XPENDING");
        Some(reply.count())
    }

    fn settle_group(&self) {
        // A Redis group hands out entries to whichever member reads: nothing to settle.
    }
}

impl<S> Drop for RedisStreamsOn<S> {
    fn drop(&mut self) {
        // A cluster of the test's own goes away with its streams.
        let Conn::Single(conn) = self.conn.get_mut() else {
            return;
        };
        let keys: Vec<String> = conn.keys(format!("{}-*", self.prefix)).unwrap_or_default();
        for k in keys {
            let _: Result<(), _> = conn.del(k);
        }
    }
}

/// `pynomaly stream --model` with `DATABASE_URL` and a `REDIS_URL` naming a Redis Cluster
/// (here the one its streams are on): it subscribes to the model changes there, as `serve`
/// does, and the version a registry on that database and cluster promotes is the one it
/// scores with next.
fn a_registry_model_follows_the_model_changes_announced_on_the_cluster() {
    testkit::env::require(&[testkit::env::DATABASE_URL_VAR]);
    let s = RedisStreamsOn::<Cluster>::open("model-events", &[]).expect("a cluster");
    let ports = s._cluster.as_ref().expect("a cluster").ports().to_vec();
    let prefix = format!("pynomaly-test-{}", uuid::Uuid::new_v4().simple());
    let channel = format!("{prefix}:models");
    // Classic pub/sub subscriptions are per node: the cluster's are the sum.
    let subscribers = || -> i64 {
        ports
            .iter()
            .map(|port| {
                let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap();
                let mut conn = client.get_connection().expect("node connection");
                let (_, n): (String, i64) = redis::cmd("PUBSUB")
                    .arg("NUMSUB")
                    .arg(&channel)
                    .query(&mut conn)
                    .expect("PUBSUB NUMSUB");
                n
            })
            .sum()
    };
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(TestDatabase::run(async |database_url| {
        let dir = tempfile::tempdir().expect("tempdir");
        let stop = CancellationToken::new();
        // The registry an API instance on this database and cluster would have.
        let meta = Arc::new(
            PostgresStore::connect(&database_url, 2)
                .await
                .expect("postgres"),
        );
        let registry = Arc::new(ModelRegistry::new(meta, artifacts_in(dir.path()), 1 << 26));
        let target = RedisTarget::parse(&s.url, false).expect("the cluster's URL");
        let pool = target.pool(Duration::from_secs(5), 2).expect("pool");
        registry
            .follow_changes(ModelEvents::new(target, pool, &prefix), stop.clone())
            .await;
        assert_eq!(register_in(&registry, "sensors", 1, 1.0, None).await, 1);
        assert_eq!(subscribers(), 1, "the test's registry");

        let mut p = StreamProcess::start_with_env(
            dir.path(),
            &model_stream_args(&s).each_ref().map(String::as_str),
            &[
                ("DATABASE_URL", &database_url),
                ("REDIS_URL", &s.url),
                ("PYNOMALY_REDIS_PREFIX", &prefix),
            ],
        );
        wait_until(
            "the stream subscribes to model changes on the cluster",
            WAIT,
            || subscribers() == 2,
        );
        let mut rng = Rng::new(2);
        s.produce("events", &[sensor_event("before", &mut rng)]);
        wait_until("the first alert", WAIT, || s.len("alerts") == 1);
        // Registered as staging, then promoted: announced on the cluster.
        assert_eq!(register_in(&registry, "sensors", 2, 3.0, None).await, 2);
        let promote = NewStage {
            to: PRODUCTION.into(),
            by: "test".into(),
            reason: "promote".into(),
            note: None,
        };
        registry
            .change_stage("default", "sensors", 2, promote, None)
            .await
            .expect("promote");
        wait_until("the process reports version 2", WAIT, || {
            p.metric("pynomaly_stream_model_version") == 2.0
        });
        s.produce("events", &[sensor_event("promoted", &mut rng)]);
        let versions = versions_by_key(&s.read_all("alerts", 2));
        assert_eq!(versions, vec![("before".into(), 1), ("promoted".into(), 2)]);
        assert!(p.terminate().success(), "{}", p.log_text());
        stop.cancel();
    }));
}

/// The arguments of a stream from `events` to `alerts` scored by the registry's `sensors`,
/// looking for a new production version every 0.2 s.
fn model_stream_args<S: Server>(s: &RedisStreamsOn<S>) -> [String; 8] {
    [
        "--source".into(),
        s.url("events"),
        "--sink".into(),
        s.url("alerts"),
        "--model".into(),
        "sensors".into(),
        "--model-refresh".into(),
        "0.2".into(),
    ]
}

/// Each alert's key and the model version that scored it.
fn versions_by_key(alerts: &[Message]) -> Vec<(String, i64)> {
    alerts
        .iter()
        .map(|(k, a)| {
            (
                k.clone().expect("an alert key"),
                a["metadata"]["model_version"].as_i64().expect("a version"),
            )
        })
        .collect()
}

/// A data directory for a registry, and a runtime to register models in it with.
fn registry_dir() -> (tempfile::TempDir, tokio::runtime::Runtime) {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    (dir, rt)
}

#[test]
fn a_newly_promoted_registry_version_is_used_without_a_restart() {
    let Some(s) = RedisStreams::open("promote", &[]) else {
        return;
    };
    let (dir, rt) = registry_dir();
    assert_eq!(
        rt.block_on(register_model(dir.path(), "sensors", 1, 1.0)),
        1
    );
    let mut p = StreamProcess::start(
        dir.path(),
        &model_stream_args(&s).each_ref().map(String::as_str),
    );
    let mut rng = Rng::new(2);
    s.produce("events", &[sensor_event("before", &mut rng)]);
    wait_until("the first alert", WAIT, || s.len("alerts") == 1);
    // Version 2 is registered as staging: still version 1.
    assert_eq!(
        rt.block_on(register_model(dir.path(), "sensors", 2, 3.0)),
        2
    );
    // The process looks at the registry every 0.2 s: a few looks have to pass for the
    // staged version's absence to show.
    std::thread::sleep(Duration::from_millis(600));
    s.produce("events", &[sensor_event("staged", &mut rng)]);
    wait_until("the second alert", WAIT, || s.len("alerts") == 2);
    // Promote version 2 in the registry's database, as a promotion does.
    rt.block_on(async {
        let db = sqlx::SqlitePool::connect(&format!("sqlite://{}", dir.path().join("metadata.db").display()))
            .await
            .expect("sqlite");
        sqlx::query("UPDATE model_versions SET stage = CASE version WHEN 2 THEN 'production' ELSE 'staging' END WHERE model_name = 'sensors'")
            .execute(&db)
            .await
            .expect("promote");
        db.close().await;
    });
    wait_until("the process reports version 2", WAIT, || {
        p.metric("pynomaly_stream_model_version") == 2.0
    });
    s.produce("events", &[sensor_event("promoted", &mut rng)]);
    wait_until("the third alert", WAIT, || s.len("alerts") == 3);
    let versions = versions_by_key(&s.read_all("alerts", 3));
    assert_eq!(
        versions,
        vec![
            ("before".into(), 1),
            ("staged".into(), 1),
            ("promoted".into(), 2)
        ]
    );
    assert!(p.terminate().success());
}

#[test]
fn id_and_timestamp_are_never_features_and_a_named_model_reads_its_features_by_name() {
    let Some(s) = RedisStreams::open("fields", &[]) else {
        return;
    };
    let (dir, rt) = registry_dir();
    // Trained on (meta.a, meta.rpm, temp), with those names.
    let names = ["meta.a", "meta.rpm", "temp"].map(String::from).to_vec();
    rt.block_on(register_model_named(
        dir.path(),
        "named",
        1,
        1.0,
        Some(names),
    ));
    rt.block_on(register_model(dir.path(), "plain", 1, 1.0));
    let event = |id: u64, pressure: Option<f64>| {
        let mut e = json!({"id": id, "timestamp": 1_700_000_000 + id, "temp": 20.1,
                           "meta": {"a": 1.0, "rpm": 1000.0}, "site": "a"});
        if let Some(p) = pressure {
            e["meta"]["pressure"] = json!(p);
        }
        e
    };
    // Numeric ids and timestamps are left out of every numeric field (3 features, as
    // trained); the named model looks its features up by name, so an extra numeric field
    // is ignored, and a missing one is a dead letter naming it.
    let start = |model: &str| {
        StreamProcess::start(
            dir.path(),
            &[
                "--source",
                &s.url(&format!("ev-{model}")),
                "--sink",
                &s.url(&format!("al-{model}")),
                "--dead-letter",
                &s.url(&format!("dl-{model}")),
                "--model",
                model,
            ],
        )
    };
    let mut plain = start("plain");
    let mut named = start("named");
    s.produce("ev-plain", &[event(17, None), event(18, None)]);
    let mut missing = event(21, None);
    missing["meta"].as_object_mut().unwrap().remove("rpm");
    s.produce(
        "ev-named",
        &[event(19, Some(1.2)), event(20, None), missing],
    );
    wait_until("the plain model's alerts", WAIT, || s.len("al-plain") == 2);
    wait_until("the named model's alerts", WAIT, || s.len("al-named") == 2);
    wait_until("the dead letter", WAIT, || s.len("dl-named") == 1);
    let keys: Vec<String> = s
        .read_all("al-named", 2)
        .into_iter()
        .map(|(k, a)| {
            assert_eq!(
                a["timestamp"],
                json!(1_700_000_000 + k.as_deref().unwrap().parse::<u64>().unwrap())
            );
            k.unwrap()
        })
        .collect();
    assert_eq!(keys, ["19", "20"]);
    let dead = s.read_all("dl-named", 1);
    assert!(
        dead[0].1["reason"].as_str().unwrap().contains("meta.rpm"),
        "{}",
        dead[0].1
    );
    assert_eq!(s.len("dl-plain"), 0);
    assert!(plain.terminate().success());
    assert!(named.terminate().success());
}

#[test]
fn online_refits_at_the_update_frequency_advance_the_model_version_and_resume_after_restart() {
    let Some(s) = RedisStreams::open("online", &[]) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let args = [
        "--source".to_string(),
        s.url("events"),
        "--sink".into(),
        s.url("alerts"),
        "--algorithm".into(),
        "isolation_forest".into(),
        "--random-state".into(),
        "5".into(),
        "--param".into(),
        "n_estimators=50".into(),
        "--window".into(),
        "300".into(),
        "--update-frequency".into(),
        "100".into(),
        "--warm-up".into(),
        "100".into(),
        "--batch-size".into(),
        "40".into(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut p = StreamProcess::start(dir.path(), &args);
    let mut rng = Rng::new(5);
    let mut produced = 0;
    let chunk = |rng: &mut Rng, produced: &mut usize| {
        s.produce("events", &sensor_events(*produced..*produced + 100, rng));
        *produced += 100;
    };
    // Chunk 0 is the warm-up (the first model, version 1, scores it); each later chunk of
    // 100 is scored by the current model and then triggers one refit.
    for k in 0..6 {
        chunk(&mut rng, &mut produced);
        let refitted = (k + 1) as f64;
        testkit::wait::wait(&format!("chunk {k} is scored and refitted on"), WAIT).until_blocking(
            || {
                let (alerts, refits) = (s.len("alerts"), p.metric("pynomaly_stream_refits_total"));
                if alerts >= produced && refits >= refitted {
                    Ok(())
                } else {
                    Err(format!(
                        "{alerts} alerts, {refits} refits, metrics:\n{}\nlog:\n{}",
                        p.http_get("/metrics").1,
                        p.log_text()
                    ))
                }
            },
        );
        let refits = p.metric("pynomaly_stream_refits_total");
        assert_eq!(
            (s.len("alerts"), refits),
            (produced, (k + 1) as f64),
            "chunk {k}:\n{}",
            p.log_text()
        );
    }
    let version_of = |alerts: &[Message], i: usize| -> i64 {
        let id = format!("ev-{i}");
        let found = alerts
            .iter()
            .find(|(k, _)| k.as_deref() == Some(id.as_str()))
            .expect("alert");
        found.1["metadata"]["model_version"]
            .as_i64()
            .expect("version")
    };
    let alerts = s.read_all("alerts", produced);
    for i in 0..600 {
        let expected = (i / 100).max(1) as i64;
        assert_eq!(version_of(&alerts, i), expected, "event {i}");
    }
    assert_eq!(p.metric("pynomaly_stream_model_version"), 6.0);
    assert!(p.terminate().success(), "{}", p.log_text());
    assert!(
        std::fs::read_dir(
            dir.path()
                .join("storage/stream-checkpoints/pynomaly-stream")
        )
        .expect("checkpoint dir")
        .count()
            == 1
    );

    // Restarted: the checkpointed model (version 6) scores at once, no warm-up.
    let mut p = StreamProcess::start(dir.path(), &args);
    chunk(&mut rng, &mut produced);
    wait_until("alerts after the restart", WAIT, || {
        s.len("alerts") == produced
    });
    let alerts = s.read_all("alerts", produced);
    for i in 600..700 {
        assert_eq!(version_of(&alerts, i), 6, "event {i} after restart");
    }
    wait_until("a refit after the restart", WAIT, || {
        p.metric("pynomaly_stream_refits_total") == 1.0
    });
    assert_eq!(p.metric("pynomaly_stream_model_version"), 7.0);
    let log = p.log_text();
    assert!(
        log.contains("resumed online learning from the checkpoint"),
        "{log}"
    );
    assert!(p.terminate().success());
}

//! Benchmark helper for `bench/stream_bench.sh` (not part of the product):
//!
//! ```text
//! stream_bench produce   URL N [RATE]   events with 10 features (f0..f9), ids ev-0..; RATE/s or as fast as possible
//! stream_bench passthrough SOURCE SINK N   read → write unchanged → commit, no parsing or scoring (the broker's own cost)
//! stream_bench latency  EVENTS ALERTS N   per-event added latency from broker timestamps (Redis entry ids, Kafka message times)
//! stream_bench topics   URL...             creates Kafka topics (4 partitions) that do not exist yet: tansu does not
//!                                          create topics on first use as Kafka's default configuration does
//! ```
//!
//! URLs are `pynomaly stream`'s (`redis://host:port/stream`, `kafka://host:port/topic`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_redis::redis;
use pynomaly_stream::alert::OutMessage;
use pynomaly_stream::kafka::{KafkaSink, KafkaSource, KafkaSourceConfig};
use pynomaly_stream::redis::{RedisSink, RedisSource, RedisSourceConfig, StartFrom};
use pynomaly_stream::{Endpoint, Sink, Source};
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};

type Error = Box<dyn std::error::Error + Send + Sync>;

fn sink(e: &Endpoint) -> Result<Arc<dyn Sink>, Error> {
    Ok(match e {
        Endpoint::Redis { url, stream } => {
            Arc::new(RedisSink::new(url, stream, e.display(), None)?)
        }
        Endpoint::Kafka { brokers, topic } => {
            Arc::new(KafkaSink::new(brokers, topic, e.display(), &[])?)
        }
    })
}

async fn source(e: &Endpoint, group: &str) -> Result<Box<dyn Source>, Error> {
    Ok(match e {
        Endpoint::Redis { url, stream } => Box::new(
            RedisSource::connect(
                url,
                stream,
                RedisSourceConfig {
                    group: group.into(),
                    consumer: "bench".into(),
                    start: StartFrom::Earliest,
                    claim_idle: Duration::from_secs(60),
                    block: Duration::from_millis(500),
                },
            )
            .await?,
        ),
        Endpoint::Kafka { brokers, topic } => Box::new(KafkaSource::connect(
            brokers,
            topic,
            KafkaSourceConfig {
                group: group.into(),
                client_id: "bench".into(),
                start: StartFrom::Earliest,
                poll_wait: Duration::from_millis(500),
                extra: vec![],
            },
        )?),
    })
}

fn event(i: u64, state: &mut u64) -> OutMessage {
    let mut f = [0.0f64; 10];
    for x in &mut f {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *x = (*state >> 11) as f64 / (1u64 << 53) as f64;
    }
    // One event in 1000 far off.
    if i % 1000 == 999 {
        f[3] += 8.0;
    }
    let payload = format!(
        r#"{{"id":"ev-{i}","timestamp":"2026-11-26T12:00:00Z","sensor":{{"f0":{:.4},"f1":{:.4},"f2":{:.4},"f3":{:.4},"f4":{:.4}}},"f5":{:.4},"f6":{:.4},"f7":{:.4},"f8":{:.4},"f9":{:.4},"site":"plant-3"}}"#,
        f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8], f[9]
    );
    OutMessage {
        key: Some(format!("ev-{i}")),
        payload: payload.into_bytes(),
    }
}

async fn produce(url: &str, n: u64, rate: Option<f64>) -> Result<(), Error> {
    let e = Endpoint::parse(url)?;
    let out = sink(&e)?;
    let started = Instant::now();
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let chunk = 1000u64;
    let mut i = 0;
    while i < n {
        let batch: Vec<OutMessage> = (i..(i + chunk).min(n))
            .map(|j| event(j, &mut state))
            .collect();
        i += batch.len() as u64;
        out.write(&batch).await?;
        if let Some(r) = rate {
            let due = Duration::from_secs_f64(i as f64 / r);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                tokio::time::sleep(wait).await;
            }
        }
    }
    let s = started.elapsed().as_secs_f64();
    println!("produced {n} events in {s:.2} s ({:.0}/s)", n as f64 / s);
    Ok(())
}

/// Reads, writes unchanged and commits, as the pipeline does but with no parsing or
/// scoring: a reader task and a writer joined by a bounded channel, the writer taking
/// every batch that queued while its last write waited for acknowledgements (as the
/// pipeline's writer does), so the figure is the brokers' and clients' cost, not a
/// round trip per fetch.
async fn passthrough(from: &str, to: &str, n: u64) -> Result<(), Error> {
    let mut src = source(&Endpoint::parse(from)?, "passthrough").await?;
    let committer = src.committer();
    let out = sink(&Endpoint::parse(to)?)?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<pynomaly_stream::Record>>(4);
    let reader = tokio::spawn(async move {
        let mut read = 0u64;
        while read < n {
            let batch = src.next_batch(2000).await?;
            read += batch.len() as u64;
            if !batch.is_empty() && tx.send(batch).await.is_err() {
                break;
            }
        }
        Ok::<_, pynomaly_stream::StreamError>(())
    });
    let mut done = 0u64;
    let mut started = None;
    while done < n {
        let Some(mut batch) = rx.recv().await else {
            break;
        };
        started.get_or_insert_with(Instant::now);
        while batch.len() < 8000 {
            match rx.try_recv() {
                Ok(more) => batch.extend(more),
                Err(_) => break,
            }
        }
        let msgs: Vec<OutMessage> = batch
            .iter()
            .map(|r| OutMessage {
                key: r.key.clone(),
                payload: r.payload.clone().unwrap_or_default(),
            })
            .collect();
        out.write(&msgs).await?;
        let positions: Vec<_> = batch.into_iter().map(|r| r.position).collect();
        committer.commit(&positions).await?;
        done += positions.len() as u64;
    }
    let s = started.map_or(0.0, |t| t.elapsed().as_secs_f64());
    reader.await??;
    committer.close().await;
    println!(
        "passthrough: {done} events in {s:.2} s ({:.0}/s), no parsing or scoring",
        done as f64 / s
    );
    Ok(())
}

/// Event id → broker time in ms, for every message of a stream or topic.
fn times(url: &str, n: u64, alerts: bool) -> Result<HashMap<String, i64>, Error> {
    let mut map = HashMap::with_capacity(n as usize);
    match Endpoint::parse(url)? {
        Endpoint::Redis { url, stream } => {
            let mut c = redis::Client::open(url.as_str())?.get_connection()?;
            let mut cursor = "-".to_string();
            loop {
                let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
                    .arg(&stream)
                    .arg(&cursor)
                    .arg("+")
                    .arg("COUNT")
                    .arg(10_000)
                    .query(&mut c)?;
                if reply.ids.is_empty() {
                    break;
                }
                for e in &reply.ids {
                    let ms: i64 = e.id.split('-').next().unwrap_or("0").parse()?;
                    let key: String = e.get("key").unwrap_or_default();
                    map.entry(key).or_insert(ms);
                }
                let last = &reply.ids[reply.ids.len() - 1].id;
                cursor = format!("({last}");
            }
        }
        Endpoint::Kafka { brokers, topic } => {
            let consumer: BaseConsumer = rdkafka::ClientConfig::new()
                .set("bootstrap.servers", &brokers)
                .set(
                    "group.id",
                    format!("latency-{}-{alerts}", std::process::id()),
                )
                .set("auto.offset.reset", "earliest")
                .set("enable.auto.commit", "false")
                .create()?;
            consumer.subscribe(&[&topic])?;
            let mut quiet = Instant::now();
            while (map.len() as u64) < n || quiet.elapsed() < Duration::from_secs(2) {
                match consumer.poll(Duration::from_millis(200)) {
                    Some(Ok(m)) => {
                        let key = m
                            .key()
                            .map(|k| String::from_utf8_lossy(k).into_owned())
                            .unwrap_or_default();
                        let ms = m.timestamp().to_millis().unwrap_or(0);
                        map.entry(key).or_insert(ms);
                        quiet = Instant::now();
                    }
                    Some(Err(e)) => return Err(e.into()),
                    None if quiet.elapsed() > Duration::from_secs(20) => break,
                    None => {}
                }
            }
        }
    }
    Ok(map)
}

fn latency(events: &str, alerts: &str, n: u64) -> Result<(), Error> {
    let e = times(events, n, false)?;
    let a = times(alerts, n, true)?;
    let mut d: Vec<i64> = e
        .iter()
        .filter_map(|(k, t)| a.get(k).map(|x| x - t))
        .collect();
    d.sort_unstable();
    if d.is_empty() {
        return Err("no event has an alert".into());
    }
    let q = |p: f64| d[((d.len() - 1) as f64 * p).round() as usize];
    println!(
        "latency (broker time of the alert minus broker time of the event), {} events: p50 {} ms, p99 {} ms, p99.9 {} ms, max {} ms",
        d.len(),
        q(0.5),
        q(0.99),
        q(0.999),
        d[d.len() - 1]
    );
    Ok(())
}

/// Creates the Kafka topics among `urls` (4 partitions each), leaving existing ones.
async fn create_topics(urls: &[String]) -> Result<(), Error> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::types::RDKafkaErrorCode;
    for url in urls {
        let Endpoint::Kafka { brokers, topic } = Endpoint::parse(url)? else {
            return Err(format!("{url} is not a kafka:// URL").into());
        };
        let admin: AdminClient<DefaultClientContext> = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .create()?;
        let new = NewTopic::new(&topic, 4, TopicReplication::Fixed(1));
        for result in admin.create_topics([&new], &AdminOptions::new()).await? {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((t, e)) => return Err(format!("cannot create topic {t}: {e}").into()),
            }
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize| {
        args.get(i)
            .cloned()
            .ok_or_else(|| format!("missing argument {i}; see the module docs"))
    };
    match arg(1)?.as_str() {
        "produce" => {
            produce(
                &arg(2)?,
                arg(3)?.parse()?,
                args.get(4).map(|r| r.parse()).transpose()?,
            )
            .await
        }
        "passthrough" => passthrough(&arg(2)?, &arg(3)?, arg(4)?.parse()?).await,
        "latency" => latency(&arg(2)?, &arg(3)?, arg(4)?.parse()?),
        "topics" => create_topics(&args[2..]).await,
        other => Err(format!("unknown command {other}").into()),
    }
}

//! Redis Streams, on one server or a Redis Cluster: a consumer-group [`Source`] and an XADD
//! [`Sink`].
//!
//! Entries carry the event JSON in a field named `value` and its key, if any, in `key`;
//! alerts and dead letters are written the same way.
//!
//! Delivery: the group is created at the start of the stream (`--from earliest`, entries
//! already there are processed) or at its end. Each consumer first re-reads its own
//! pending entries (`XREADGROUP ... 0`: what it read before a crash and never
//! acknowledged), then new ones (`>`), and every `claim_idle / 2` takes over entries that
//! another consumer has held unacknowledged for longer than `claim_idle` (`XAUTOCLAIM`: a
//! consumer that died and did not come back). Entries are acknowledged (`XACK`) only after
//! their alerts are written, in one command per batch; alerts are written with one
//! pipelined `XADD` per entry, one round trip per batch.
//!
//! # On a Redis Cluster
//!
//! The connections are [`pynomaly_redis`]'s, for one server or a cluster alike (the URL
//! says which, see [`crate::endpoint`]); the commands are the same. A cluster asks that
//! every command, pipeline or script touch keys of one slot, and here each touches one key:
//! - the source's `XGROUP CREATE`, `XREADGROUP`, `XAUTOCLAIM`, `XACK` and `XINFO GROUPS`
//!   each name its one stream, and a stream's consumer groups, their pending entries and
//!   delivery counts are kept inside the stream's own key, so they all go to the node
//!   owning it;
//! - the sink's pipeline is `XADD`s to its one stream (the cluster client refuses a
//!   pipeline that spans slots, so this must stay so);
//! - no `MULTI`, no Lua script.
//!
//! The events, alerts and dead-letter streams are different keys and may be on different
//! nodes (or on different servers altogether). Nothing spans them atomically, on a cluster
//! or on one server: the pipeline writes a batch's alerts, then its dead letters, then
//! acknowledges its events, each a separate call retried until it succeeds (see
//! [`crate::broker`]). A crash or a failed node between two of them leaves the events
//! unacknowledged, so they are delivered again and their alerts written twice: duplicates,
//! never a lost event, which is the at-least-once promise. Blocking reads take their own
//! pool whose response timeout exceeds the block, on a cluster as on one server.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use deadpool_redis::redis::{self, Value};
use pynomaly_redis::{PoolError, RedisConnection, RedisPool, RedisTarget};

use crate::StreamError;
use crate::alert::OutMessage;
use crate::broker::{Committer, Position, Record, Sink, Source};

/// Where a new group starts reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartFrom {
    /// Everything already in the stream.
    Earliest,
    /// Only what is added after the group is created.
    Latest,
}

/// Options of a Redis consumer.
#[derive(Debug, Clone)]
pub struct RedisSourceConfig {
    pub group: String,
    pub consumer: String,
    pub start: StartFrom,
    /// Entries another consumer held this long unacknowledged are taken over.
    pub claim_idle: Duration,
    /// How long one read waits for new entries.
    pub block: Duration,
}

/// The one server or the cluster a connection URL names (checked already by
/// [`crate::Endpoint::parse`]; checked again for callers that build URLs themselves).
fn target(url: &str) -> Result<RedisTarget, StreamError> {
    RedisTarget::parse(url, false).map_err(|e| StreamError::Config(format!("redis: {e}")))
}

fn pool(
    target: &RedisTarget,
    response_timeout: Duration,
    size: usize,
) -> Result<RedisPool, StreamError> {
    target
        .pool(response_timeout, size)
        .map_err(|e| StreamError::Config(e.to_string()))
}

async fn conn(pool: &RedisPool) -> Result<RedisConnection, StreamError> {
    pool.get().await.map_err(|e| match e {
        PoolError::Backend(e) => StreamError::Redis(e),
        other => StreamError::RedisPool(other.to_string()),
    })
}

enum Phase {
    /// Re-reading this consumer's pending entries, after this id.
    History(String),
    Live,
}

/// A consumer in a Redis consumer group.
#[derive(derive_more::Debug)]
pub struct RedisSource {
    #[debug(skip)]
    pool: RedisPool,
    #[debug(skip)]
    ack_pool: RedisPool,
    stream: String,
    config: RedisSourceConfig,
    #[debug(skip)]
    phase: Phase,
    #[debug(skip)]
    claim_cursor: String,
    #[debug(skip)]
    next_claim: Instant,
}

impl RedisSource {
    /// Connects to the server or cluster `url` names (an [`crate::Endpoint::Redis`] URL)
    /// and creates the consumer group (and the stream) if missing.
    ///
    /// # Errors
    /// The URL is invalid, Redis cannot be reached, or the key is not a stream.
    pub async fn connect(
        url: &str,
        stream: &str,
        config: RedisSourceConfig,
    ) -> Result<Self, StreamError> {
        let target = target(url)?;
        // Blocking reads: a response timeout beyond the block.
        let pool = pool(&target, config.block + Duration::from_secs(10), 2)?;
        let ack_pool = pool_for_writes(&target)?;
        let start = match config.start {
            StartFrom::Earliest => "0",
            StartFrom::Latest => "$",
        };
        let mut c = conn(&pool).await?;
        let created: Result<(), redis::RedisError> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(stream)
            .arg(&config.group)
            .arg(start)
            .arg("MKSTREAM")
            .query_async(&mut c)
            .await;
        match created {
            Ok(()) => {}
            Err(e) if e.code() == Some("BUSYGROUP") => {}
            Err(e) => return Err(e.into()),
        }
        drop(c);
        Ok(Self {
            pool,
            ack_pool,
            stream: stream.to_string(),
            phase: Phase::History("0".into()),
            claim_cursor: "0-0".into(),
            next_claim: Instant::now(),
            config,
        })
    }

    async fn read(
        &mut self,
        max: usize,
        id: &str,
        block: bool,
    ) -> Result<Vec<Record>, StreamError> {
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(&self.config.group)
            .arg(&self.config.consumer)
            .arg("COUNT")
            .arg(max);
        if block {
            cmd.arg("BLOCK").arg(self.config.block.as_millis() as u64);
        }
        cmd.arg("STREAMS").arg(&self.stream).arg(id);
        let mut c = conn(&self.pool).await?;
        let reply: Value = cmd.query_async(&mut c).await?;
        let now = Instant::now();
        let mut out = Vec::new();
        match reply {
            Value::Nil => {}
            Value::Array(streams) => {
                for s in streams {
                    let Value::Array(mut pair) = s else {
                        return Err(bad_reply("XREADGROUP", "a stream is not [name, entries]"));
                    };
                    if pair.len() != 2 {
                        return Err(bad_reply("XREADGROUP", "a stream is not [name, entries]"));
                    }
                    parse_entries(
                        pair.pop().unwrap_or(Value::Nil),
                        now,
                        &mut out,
                        "XREADGROUP",
                    )?;
                }
            }
            Value::Map(streams) => {
                for (_, entries) in streams {
                    parse_entries(entries, now, &mut out, "XREADGROUP")?;
                }
            }
            other => return Err(bad_reply("XREADGROUP", &format!("{other:?}"))),
        }
        Ok(out)
    }

    async fn claim(&mut self, max: usize) -> Result<Vec<Record>, StreamError> {
        let mut c = conn(&self.pool).await?;
        let reply: Value = redis::cmd("XAUTOCLAIM")
            .arg(&self.stream)
            .arg(&self.config.group)
            .arg(&self.config.consumer)
            .arg(self.config.claim_idle.as_millis() as u64)
            .arg(&self.claim_cursor)
            .arg("COUNT")
            .arg(max)
            .query_async(&mut c)
            .await?;
        let Value::Array(mut parts) = reply else {
            return Err(bad_reply("XAUTOCLAIM", "not an array"));
        };
        if parts.len() < 2 {
            return Err(bad_reply("XAUTOCLAIM", "fewer than 2 elements"));
        }
        let mut out = Vec::new();
        let entries = parts.swap_remove(1);
        self.claim_cursor =
            bulk_string(&parts[0]).ok_or_else(|| bad_reply("XAUTOCLAIM", "cursor"))?;
        parse_entries(entries, Instant::now(), &mut out, "XAUTOCLAIM")?;
        if !out.is_empty() {
            tracing::info!(
                entries = out.len(),
                stream = self.stream,
                "took over entries another consumer left unacknowledged"
            );
        }
        if self.claim_cursor == "0-0" {
            // A full pass is done: wait before the next one.
            self.next_claim =
                Instant::now() + (self.config.claim_idle / 2).max(Duration::from_millis(200));
        }
        Ok(out)
    }
}

fn pool_for_writes(target: &RedisTarget) -> Result<RedisPool, StreamError> {
    pool(target, Duration::from_secs(10), 4)
}

fn bad_reply(command: &'static str, detail: &str) -> StreamError {
    StreamError::RedisReply {
        command,
        detail: detail.to_string(),
    }
}

/// [`bulk_string`] taking the reply's buffer.
fn into_string(v: Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b).ok(),
        Value::SimpleString(s) => Some(s),
        _ => None,
    }
}

fn bulk_string(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

/// `[[id, [field, value, ...] | nil], ...]` into records.
fn parse_entries(
    entries: Value,
    received: Instant,
    out: &mut Vec<Record>,
    command: &'static str,
) -> Result<(), StreamError> {
    let entries = match entries {
        Value::Array(e) => e,
        Value::Nil => return Ok(()),
        _ => return Err(bad_reply(command, "entries are not an array")),
    };
    out.reserve(entries.len());
    for entry in entries {
        // Taken apart by value: the id, key and payload keep the buffers the reply was
        // read into (no copy, no list of pairs per entry).
        let Value::Array(entry) = entry else {
            return Err(bad_reply(command, "an entry is not [id, fields]"));
        };
        let Ok::<[Value; 2], _>([id, fields]) = entry.try_into() else {
            return Err(bad_reply(command, "an entry is not [id, fields]"));
        };
        let id = into_string(id).ok_or_else(|| bad_reply(command, "entry id"))?;
        let mut key = None;
        let mut value = None;
        let mut deleted = true;
        let mut field = |k: Value, v: Value| {
            deleted = false;
            let Value::BulkString(name) = k else { return };
            match (name.as_slice(), v) {
                (b"value", Value::BulkString(b)) => value = Some(b),
                (b"key", Value::BulkString(b)) => {
                    key =
                        Some(String::from_utf8(b).unwrap_or_else(|e| {
                            String::from_utf8_lossy(e.as_bytes()).into_owned()
                        }));
                }
                _ => {}
            }
        };
        match fields {
            Value::Array(f) => {
                let mut it = f.into_iter();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    field(k, v);
                }
            }
            Value::Map(m) => {
                for (k, v) in m {
                    field(k, v);
                }
            }
            _ => {}
        }
        let payload = match value {
            Some(v) => Ok(v),
            None if deleted => {
                Err("the entry was deleted from the stream before it was processed".to_string())
            }
            None => Err("the entry has no `value` field".to_string()),
        };
        out.push(Record {
            key,
            payload,
            position: Position::Redis(id),
            received,
        });
    }
    Ok(())
}

#[async_trait]
impl Source for RedisSource {
    async fn next_batch(&mut self, max: usize) -> Result<Vec<Record>, StreamError> {
        if let Phase::History(cursor) = &self.phase {
            let cursor = cursor.clone();
            let batch = self.read(max, &cursor, false).await?;
            match batch.last() {
                Some(Record {
                    position: Position::Redis(id),
                    ..
                }) => {
                    tracing::info!(
                        entries = batch.len(),
                        "re-reading entries delivered before a restart and never acknowledged"
                    );
                    self.phase = Phase::History(id.clone());
                    return Ok(batch);
                }
                _ => self.phase = Phase::Live,
            }
        }
        if Instant::now() >= self.next_claim {
            let claimed = self.claim(max).await?;
            if !claimed.is_empty() {
                return Ok(claimed);
            }
        }
        self.read(max, ">", true).await
    }

    fn committer(&self) -> Box<dyn Committer> {
        Box::new(RedisCommitter {
            pool: self.ack_pool.clone(),
            stream: self.stream.clone(),
            group: self.config.group.clone(),
        })
    }
}

/// XACKs entries of one stream for one group.
struct RedisCommitter {
    pool: RedisPool,
    stream: String,
    group: String,
}

#[async_trait]
impl Committer for RedisCommitter {
    async fn commit(&self, positions: &[Position]) -> Result<(), StreamError> {
        if positions.is_empty() {
            return Ok(());
        }
        let mut cmd = redis::cmd("XACK");
        cmd.arg(&self.stream).arg(&self.group);
        for p in positions {
            if let Position::Redis(id) = p {
                cmd.arg(id);
            }
        }
        let mut c = conn(&self.pool).await?;
        let _acked: i64 = cmd.query_async(&mut c).await?;
        Ok(())
    }

    async fn lag(&self) -> Option<u64> {
        let mut c = conn(&self.pool).await.ok()?;
        let reply: Value = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(&self.stream)
            .query_async(&mut c)
            .await
            .ok()?;
        let Value::Array(groups) = reply else {
            return None;
        };
        for g in groups {
            let fields: Vec<(Value, Value)> = match g {
                Value::Array(f) => {
                    let mut it = f.into_iter();
                    let mut pairs = Vec::new();
                    while let (Some(k), Some(v)) = (it.next(), it.next()) {
                        pairs.push((k, v));
                    }
                    pairs
                }
                Value::Map(m) => m,
                _ => continue,
            };
            let mut name = None;
            let (mut lag, mut pending) = (None, 0u64);
            for (k, v) in fields {
                match (bulk_string(&k).as_deref(), v) {
                    (Some("name"), v) => name = bulk_string(&v),
                    (Some("lag"), Value::Int(n)) => lag = Some(n.max(0) as u64),
                    (Some("pending"), Value::Int(n)) => pending = n.max(0) as u64,
                    _ => {}
                }
            }
            if name.as_deref() == Some(self.group.as_str()) {
                // Not yet processed by the group: never delivered, plus delivered and not
                // acknowledged. Redis reports no lag (nil) after some deletions.
                return lag.map(|l| l + pending);
            }
        }
        None
    }
}

/// Writes messages to a stream with pipelined XADDs.
#[derive(derive_more::Debug)]
pub struct RedisSink {
    #[debug(skip)]
    pool: RedisPool,
    #[debug(skip)]
    stream: String,
    display: String,
    #[debug(skip)]
    max_len: Option<u64>,
}

impl RedisSink {
    /// A sink writing to `stream` on the server or cluster `url` names (an
    /// [`crate::Endpoint::Redis`] URL), trimming it to about `max_len` entries when given.
    ///
    /// # Errors
    /// The URL is invalid.
    pub fn new(
        url: &str,
        stream: &str,
        display: String,
        max_len: Option<u64>,
    ) -> Result<Self, StreamError> {
        Ok(Self {
            pool: pool_for_writes(&target(url)?)?,
            stream: stream.to_string(),
            display,
            max_len,
        })
    }
}

#[async_trait]
impl Sink for RedisSink {
    async fn write(&self, messages: &[OutMessage]) -> Result<(), StreamError> {
        if messages.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for m in messages {
            let cmd = pipe.cmd("XADD").arg(&self.stream);
            if let Some(n) = self.max_len {
                cmd.arg("MAXLEN").arg("~").arg(n);
            }
            cmd.arg("*");
            if let Some(k) = &m.key {
                cmd.arg("key").arg(k);
            }
            cmd.arg("value").arg(&m.payload).ignore();
        }
        let mut c = conn(&self.pool).await?;
        let () = pipe.query_async(&mut c).await?;
        Ok(())
    }

    fn describe(&self) -> String {
        self.display.clone()
    }
}

//! # pynomaly-redis: one Redis server or a Redis Cluster, behind one type
//!
//! The job queue, the shared rate limits and the model-change events talk to Redis
//! through [`RedisPool`] and [`RedisConnection`], which are either a single server's
//! (deadpool-redis' multiplexed connections) or a Redis Cluster's (redis' `cluster_async`
//! connections, which route each command to the node owning its keys' slot and follow
//! `MOVED`/`ASK`). Both implement [`redis::aio::ConnectionLike`], so commands, pipelines
//! and [`redis::Script`]s are written once for both.
//!
//! What a cluster asks of the code above, and how it is met:
//! - **A script or a pipeline touches keys of one slot only.** Keys that a script or a
//!   multi-key command uses together share a hash tag: [`slot_tag`] turns a key prefix into
//!   one (`{pynomaly}:jobs`, `{pynomaly}:delayed`), and each caller documents which of its
//!   keys go together.
//! - **Pub/sub**: a classic `PUBLISH` on any node reaches the subscribers of every node
//!   (the cluster bus forwards it), so a subscriber needs one connection to any node:
//!   [`RedisTarget::pubsub`] tries the seed nodes in turn.
//! - **Timeouts**: redis 1.x answers `timed out` after 500 ms by default, on a cluster too;
//!   every pool is built with an explicit response timeout ([`RedisTarget::pool`]), and
//!   blocking reads (`XREADGROUP … BLOCK`) take their own pool whose timeout exceeds the
//!   block.
//!
//! Where Redis is comes from a URL ([`RedisTarget::parse`]): `redis://host:6379` is one
//! server; `redis+cluster://h1:7000,h2:7001` (or a `redis://` URL with the cluster flag,
//! `REDIS_CLUSTER=true` in the settings) names a cluster by some of its nodes, from which
//! the client learns the rest.

use std::fmt;
use std::time::Duration;

use deadpool::managed;
use deadpool_redis::redis::aio::{ConnectionLike, MultiplexedConnection, PubSub};
use deadpool_redis::redis::cluster::{ClusterClient, ClusterClientBuilder};
use deadpool_redis::redis::cluster_async::ClusterConnection;
use deadpool_redis::redis::{
    self, AsyncConnectionConfig, Cmd, IntoConnectionInfo, Pipeline, RedisError, RedisFuture,
    RedisResult, Value,
};

/// A connection could not be had from a pool: the same type for both kinds of pool
/// (`deadpool_redis::PoolError`).
pub type PoolError = deadpool_redis::PoolError;

/// Occupancy of a pool (`deadpool_redis::Status`).
pub type PoolStatus = deadpool_redis::Status;

/// A Redis URL that cannot be used; the message never repeats the URL (it may hold a
/// password).
#[derive(Debug, thiserror::Error)]
pub enum RedisUrlError {
    #[error(
        "expected a Redis URL: redis://host:6379, or a Redis Cluster as \
         redis+cluster://host1:7000,host2:7001"
    )]
    Scheme,
    #[error(
        "several hosts name a Redis Cluster: write redis+cluster://… or set REDIS_CLUSTER=true"
    )]
    SeveralHostsWithoutCluster,
    #[error("a Redis Cluster URL needs at least one host:port, and no empty one between commas")]
    EmptyHost,
    #[error("not a usable Redis URL: {0}")]
    Invalid(String),
}

/// A pool could not be set up (the URL was accepted, the client refused it).
#[derive(Debug, thiserror::Error)]
#[error("cannot set up a Redis connection pool: {0}")]
pub struct RedisPoolError(String);

/// Where Redis is: one server, or a cluster named by some of its nodes.
#[derive(Clone, PartialEq, Eq)]
pub enum RedisTarget {
    /// One server (`redis://host:port[/db]`).
    Single(String),
    /// Seed nodes of a Redis Cluster, each as `redis://[user:pass@]host:port`.
    Cluster(Vec<String>),
}

impl fmt::Debug for RedisTarget {
    // The URLs may hold a password: only the shape is shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Single(_) => f.write_str("RedisTarget::Single(…)"),
            Self::Cluster(nodes) => write!(f, "RedisTarget::Cluster({} seed nodes)", nodes.len()),
        }
    }
}

impl RedisTarget {
    /// Reads a Redis URL. `redis://` and `rediss://` name one server, unless `cluster` is
    /// set; `redis+cluster://` and `rediss+cluster://` always name a cluster. A cluster URL
    /// may list several `host:port`s separated by commas, sharing the credentials before
    /// the `@` and whatever follows the hosts (`/0`, `?protocol=resp3`).
    ///
    /// # Errors
    /// Another scheme, several hosts without the cluster flag, an empty host, or a URL the
    /// Redis client rejects.
    pub fn parse(url: &str, cluster: bool) -> Result<Self, RedisUrlError> {
        let url = url.trim();
        let (scheme, rest) = url.split_once("://").ok_or(RedisUrlError::Scheme)?;
        let (scheme, cluster) = match scheme {
            "redis" | "rediss" => (scheme, cluster),
            "redis+cluster" => ("redis", true),
            "rediss+cluster" => ("rediss", true),
            _ => return Err(RedisUrlError::Scheme),
        };
        let (authority, suffix) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
        let (userinfo, hosts) = match authority.rsplit_once('@') {
            Some((user, hosts)) => (format!("{user}@"), hosts),
            None => (String::new(), authority),
        };
        let check = |node: &str| {
            node.into_connection_info()
                .map(|_| ())
                .map_err(|e| RedisUrlError::Invalid(e.detail().unwrap_or("unreadable").to_string()))
        };
        if !cluster {
            if hosts.contains(',') {
                return Err(RedisUrlError::SeveralHostsWithoutCluster);
            }
            check(url)?;
            return Ok(Self::Single(url.to_string()));
        }
        let nodes = hosts
            .split(',')
            .map(|host| {
                let host = host.trim();
                if host.is_empty() {
                    return Err(RedisUrlError::EmptyHost);
                }
                let node = format!("{scheme}://{userinfo}{host}{suffix}");
                check(&node)?;
                Ok(node)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::Cluster(nodes))
    }

    /// Whether this is a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster(_))
    }

    /// `redis` or `redis-cluster`, for logs and health reports.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Single(_) => "redis",
            Self::Cluster(_) => "redis-cluster",
        }
    }

    /// A pool of at most `max_size` connections whose commands are answered within
    /// `response_timeout`: connecting takes at most 5 s, waiting for a free connection at
    /// most 10 s, then the caller gets an error (it decides what an unreachable Redis
    /// means for it). On a cluster each pooled connection reaches every node it needs.
    ///
    /// # Errors
    /// The client rejects the URL.
    pub fn pool(
        &self,
        response_timeout: Duration,
        max_size: usize,
    ) -> Result<RedisPool, RedisPoolError> {
        let connect = Duration::from_secs(5);
        let error = |e: &dyn fmt::Display| RedisPoolError(e.to_string());
        match self {
            Self::Single(url) => {
                let config = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(connect))
                    .set_response_timeout(Some(response_timeout));
                let manager = deadpool_redis::Manager::new_with_config(url.as_str(), config)
                    .map_err(|e| error(&e))?;
                deadpool_redis::Pool::builder(manager)
                    .max_size(max_size)
                    .runtime(deadpool_redis::Runtime::Tokio1)
                    .wait_timeout(Some(Duration::from_secs(10)))
                    .create_timeout(Some(connect))
                    .build()
                    .map(RedisPool::Single)
                    .map_err(|e| error(&e))
            }
            Self::Cluster(nodes) => {
                let client = ClusterClientBuilder::new(nodes.iter().map(String::as_str))
                    .connection_timeout(connect)
                    .response_timeout(response_timeout)
                    .build()
                    .map_err(|e| error(&e))?;
                managed::Pool::builder(ClusterManager { client })
                    .max_size(max_size)
                    .runtime(deadpool::Runtime::Tokio1)
                    .wait_timeout(Some(Duration::from_secs(10)))
                    // Connecting to a cluster reads its slot map and may touch every node.
                    .create_timeout(Some(connect * 2))
                    .build()
                    .map(RedisPool::Cluster)
                    .map_err(|e| error(&e))
            }
        }
    }

    /// A pub/sub connection. On a cluster, to the first seed node that answers: a classic
    /// `PUBLISH` on any node reaches the subscribers of all of them.
    ///
    /// # Errors
    /// No node could be reached.
    pub async fn pubsub(&self) -> RedisResult<PubSub> {
        match self {
            Self::Single(url) => redis::Client::open(url.as_str())?.get_async_pubsub().await,
            Self::Cluster(nodes) => {
                let mut last = None;
                for node in nodes {
                    let connected = async {
                        let client = redis::Client::open(node.as_str())?;
                        tokio_timeout(Duration::from_secs(5), client.get_async_pubsub()).await
                    };
                    match connected.await {
                        Ok(pubsub) => return Ok(pubsub),
                        Err(e) => last = Some(e),
                    }
                }
                Err(last.unwrap_or_else(|| {
                    RedisError::from((redis::ErrorKind::Client, "no seed node"))
                }))
            }
        }
    }
}

/// `future`, or a timeout error after `limit`.
async fn tokio_timeout<T>(
    limit: Duration,
    future: impl Future<Output = RedisResult<T>>,
) -> RedisResult<T> {
    tokio::time::timeout(limit, future)
        .await
        .unwrap_or_else(|_| {
            Err(RedisError::from(std::io::Error::from(
                std::io::ErrorKind::TimedOut,
            )))
        })
}

/// `prefix` made a hash tag, for keys that must live in one cluster slot (a script's
/// keys, a multi-key command's): `pynomaly` → `{pynomaly}`, so `{pynomaly}:jobs` and
/// `{pynomaly}:delayed` hash alike. A prefix that already holds a tag (`app{7}`) is kept
/// as it is: Redis hashes the first `{…}` of a key, so its keys share that tag's slot.
pub fn slot_tag(prefix: &str) -> String {
    let has_tag = prefix
        .find('{')
        .and_then(|open| prefix[open + 1..].find('}'))
        .is_some_and(|len| len > 0);
    if has_tag {
        prefix.to_string()
    } else {
        format!("{{{prefix}}}")
    }
}

/// Makes and checks the connections of a Redis Cluster pool.
pub struct ClusterManager {
    client: ClusterClient,
}

impl fmt::Debug for ClusterManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterManager")
    }
}

impl managed::Manager for ClusterManager {
    type Type = ClusterConnection;
    type Error = RedisError;

    async fn create(&self) -> Result<ClusterConnection, RedisError> {
        self.client.get_async_connection().await
    }

    async fn recycle(
        &self,
        conn: &mut ClusterConnection,
        _: &managed::Metrics,
    ) -> managed::RecycleResult<RedisError> {
        let pong: String = redis::cmd("PING").query_async(conn).await?;
        if pong == "PONG" {
            Ok(())
        } else {
            Err(managed::RecycleError::message("unexpected PING answer"))
        }
    }
}

/// A pool of connections to one server or to a cluster.
#[derive(Clone)]
pub enum RedisPool {
    Single(deadpool_redis::Pool),
    Cluster(managed::Pool<ClusterManager>),
}

impl fmt::Debug for RedisPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.status();
        f.debug_struct("RedisPool")
            .field(
                "kind",
                &if self.is_cluster() {
                    "cluster"
                } else {
                    "single"
                },
            )
            .field("size", &s.size)
            .field("max_size", &s.max_size)
            .finish()
    }
}

impl From<deadpool_redis::Pool> for RedisPool {
    fn from(pool: deadpool_redis::Pool) -> Self {
        Self::Single(pool)
    }
}

impl RedisPool {
    /// A connection, made if none is free (within the pool's timeouts).
    ///
    /// # Errors
    /// None free in time, or a new one could not be made.
    pub async fn get(&self) -> Result<RedisConnection, PoolError> {
        Ok(match self {
            Self::Single(pool) => RedisConnection::Single(pool.get().await?),
            Self::Cluster(pool) => RedisConnection::Cluster(pool.get().await?),
        })
    }

    /// How many connections are open, idle and allowed.
    pub fn status(&self) -> PoolStatus {
        match self {
            Self::Single(pool) => pool.status(),
            Self::Cluster(pool) => pool.status(),
        }
    }

    /// Whether the pool reaches a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster(_))
    }
}

/// A connection lent by a [`RedisPool`], back in the pool when dropped.
pub enum RedisConnection {
    Single(deadpool_redis::Connection),
    Cluster(managed::Object<ClusterManager>),
}

impl fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Single(_) => "RedisConnection::Single",
            Self::Cluster(_) => "RedisConnection::Cluster",
        })
    }
}

impl RedisConnection {
    /// Takes the connection out of its pool for good, to be cloned and shared by many
    /// tasks (both kinds multiplex concurrent commands over their sockets).
    pub fn take(this: Self) -> SharedConnection {
        match this {
            Self::Single(c) => SharedConnection::Single(deadpool_redis::Connection::take(c)),
            Self::Cluster(c) => SharedConnection::Cluster(managed::Object::take(c)),
        }
    }
}

/// A connection shared by many tasks (see [`RedisConnection::take`]).
#[derive(Clone)]
pub enum SharedConnection {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl fmt::Debug for SharedConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Single(_) => "SharedConnection::Single",
            Self::Cluster(_) => "SharedConnection::Cluster",
        })
    }
}

/// Forwards [`ConnectionLike`] to whichever connection an enum holds.
macro_rules! connection_like {
    ($ty:ty, $single:ident => $single_conn:expr, $cluster:ident => $cluster_conn:expr) => {
        impl ConnectionLike for $ty {
            fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
                match self {
                    Self::Single($single) => $single_conn.req_packed_command(cmd),
                    Self::Cluster($cluster) => $cluster_conn.req_packed_command(cmd),
                }
            }

            fn req_packed_commands<'a>(
                &'a mut self,
                pipeline: &'a Pipeline,
                offset: usize,
                count: usize,
            ) -> RedisFuture<'a, Vec<Value>> {
                match self {
                    Self::Single($single) => {
                        $single_conn.req_packed_commands(pipeline, offset, count)
                    }
                    Self::Cluster($cluster) => {
                        $cluster_conn.req_packed_commands(pipeline, offset, count)
                    }
                }
            }

            fn get_db(&self) -> i64 {
                match self {
                    Self::Single($single) => $single_conn.get_db(),
                    Self::Cluster($cluster) => $cluster_conn.get_db(),
                }
            }
        }
    };
}

connection_like!(RedisConnection, c => c, c => c);
connection_like!(SharedConnection, c => c, c => c);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redis_url_is_one_server_unless_it_says_cluster() {
        let t = RedisTarget::parse("redis://:pw@h:6379/2", false).unwrap();
        assert_eq!(t, RedisTarget::Single("redis://:pw@h:6379/2".into()));
        assert!(!t.is_cluster());
        assert_eq!(t.kind(), "redis");
    }

    #[test]
    fn a_cluster_url_lists_its_seed_nodes_with_the_shared_credentials() {
        let t =
            RedisTarget::parse("redis+cluster://u:pw@h1:7000, h2:7001,h3:7002/0", false).unwrap();
        assert_eq!(
            t,
            RedisTarget::Cluster(vec![
                "redis://u:pw@h1:7000/0".into(),
                "redis://u:pw@h2:7001/0".into(),
                "redis://u:pw@h3:7002/0".into(),
            ])
        );
        assert_eq!(t.kind(), "redis-cluster");
        let flagged = RedisTarget::parse("redis://h1:7000,h2:7001", true).unwrap();
        assert_eq!(
            flagged,
            RedisTarget::Cluster(vec!["redis://h1:7000".into(), "redis://h2:7001".into()])
        );
        assert_eq!(
            RedisTarget::parse("redis://h1:7000", true).unwrap(),
            RedisTarget::Cluster(vec!["redis://h1:7000".into()])
        );
    }

    #[test]
    fn unusable_urls_are_refused_without_repeating_them() {
        for (url, cluster) in [
            ("http://h:6379", false),
            ("h:6379", false),
            ("redis://h1:7000,h2:7001", false),
            ("redis+cluster://h1:7000,,h2:7001", false),
            ("redis+cluster://", false),
            ("redis://:secret@h:notaport", false),
        ] {
            let e = RedisTarget::parse(url, cluster).unwrap_err().to_string();
            assert!(!e.contains("secret") && !e.contains("h1:"), "{url}: {e}");
        }
    }

    #[test]
    fn debug_never_shows_the_urls() {
        let t = RedisTarget::parse("redis+cluster://:secret@h1:7000,h2:7001", false).unwrap();
        assert_eq!(format!("{t:?}"), "RedisTarget::Cluster(2 seed nodes)");
        let t = RedisTarget::parse("redis://:secret@h", false).unwrap();
        assert!(!format!("{t:?}").contains("secret"));
    }

    #[test]
    fn a_prefix_becomes_a_hash_tag_unless_it_holds_one() {
        assert_eq!(slot_tag("pynomaly"), "{pynomaly}");
        assert_eq!(slot_tag("app{7}"), "app{7}");
        assert_eq!(slot_tag("a{}b"), "{a{}b}");
        assert_eq!(slot_tag("a}b{"), "{a}b{}");
    }
}

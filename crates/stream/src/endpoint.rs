//! Where events come from and go to: `redis://[user:pass@]host:port[/db]/stream`,
//! `redis+cluster://[user:pass@]host:port[,host:port...]/stream` (a Redis Cluster, named by
//! some of its nodes) or `kafka://host:port[,host:port...]/topic`.
//!
//! The last path segment is the stream or topic (so a `redis://` URL's database number, if
//! any, sits before it: `redis://host:6379/2/events`). A Redis Cluster has one database,
//! so a `redis+cluster://` URL takes no number. The same endpoint with `.dlq` appended to
//! the stream or topic is the default dead-letter destination.

use pynomaly_redis::{RedisTarget, RedisUrlError};

use crate::StreamError;

/// A broker and the stream or topic on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A Redis stream: the connection URL without the stream (one server's,
    /// `redis://host:port[/db]`, or a cluster's, `redis+cluster://host:port,host:port`:
    /// what [`RedisTarget::parse`] reads) and the stream's key.
    Redis { url: String, stream: String },
    /// A Kafka topic: the bootstrap servers (comma-separated) and the topic.
    Kafka { brokers: String, topic: String },
}

impl Endpoint {
    /// Parses a `--source`/`--sink`/`--dead-letter` URL.
    ///
    /// # Errors
    /// An unknown scheme, or no stream/topic name after the host.
    pub fn parse(url: &str) -> Result<Self, StreamError> {
        // Messages show the URL without its credentials.
        let shown = without_credentials(url);
        let bad = |why: &str| {
            StreamError::Config(format!(
                "invalid endpoint {shown:?}: {why} (expected redis://host:6379/STREAM, \
                 redis+cluster://host1:7000,host2:7001/STREAM or kafka://host:9092/TOPIC)"
            ))
        };
        let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("no scheme"))?;
        let (authority, path) = rest
            .split_once('/')
            .ok_or_else(|| bad("no stream or topic name"))?;
        if authority.is_empty() {
            return Err(bad("no host"));
        }
        let (db, name) = match path.rsplit_once('/') {
            Some((db, name)) => (Some(db), name),
            None => (None, path),
        };
        if name.is_empty() {
            return Err(bad("no stream or topic name"));
        }
        match scheme {
            "redis" | "rediss" | "redis+cluster" | "rediss+cluster" => {
                let cluster = scheme.ends_with("+cluster");
                let mut conn = format!("{scheme}://{authority}");
                if let Some(db) = db {
                    if cluster {
                        return Err(bad(
                            "a Redis Cluster has a single database (0), so its URL takes no \
                             database number before the stream",
                        ));
                    }
                    if db.parse::<u32>().is_err() {
                        return Err(bad(
                            "the segment before the stream must be a database number",
                        ));
                    }
                    conn = format!("{conn}/{db}");
                }
                RedisTarget::parse(&conn, false).map_err(|e| match e {
                    RedisUrlError::SeveralHostsWithoutCluster => bad(
                        "several hosts name a Redis Cluster: write redis+cluster://host1:port1,host2:port2/STREAM",
                    ),
                    other => bad(&other.to_string()),
                })?;
                Ok(Self::Redis {
                    url: conn,
                    stream: name.to_string(),
                })
            }
            "kafka" => {
                if db.is_some() {
                    return Err(bad("a Kafka topic name cannot contain '/'"));
                }
                Ok(Self::Kafka {
                    brokers: authority.to_string(),
                    topic: name.to_string(),
                })
            }
            other => Err(bad(&format!("unknown scheme {other:?}"))),
        }
    }

    /// The same broker, stream or topic name with `suffix` appended (the dead letters).
    pub fn with_suffix(&self, suffix: &str) -> Self {
        match self {
            Self::Redis { url, stream } => Self::Redis {
                url: url.clone(),
                stream: format!("{stream}{suffix}"),
            },
            Self::Kafka { brokers, topic } => Self::Kafka {
                brokers: brokers.clone(),
                topic: format!("{topic}{suffix}"),
            },
        }
    }

    /// The stream or topic name.
    pub fn name(&self) -> &str {
        match self {
            Self::Redis { stream, .. } => stream,
            Self::Kafka { topic, .. } => topic,
        }
    }

    /// A printable form without credentials.
    pub fn display(&self) -> String {
        match self {
            Self::Redis { url, stream } => format!("{}/{stream}", without_credentials(url)),
            Self::Kafka { brokers, topic } => format!("kafka://{brokers}/{topic}"),
        }
    }
}

/// `url` without the `user:password@` before its host(s).
fn without_credentials(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let host_end = rest.find('/').unwrap_or(rest.len());
    match rest[..host_end].rsplit_once('@') {
        Some((_, hosts)) => format!("{scheme}://{hosts}{}", &rest[host_end..]),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_urls_split_into_connection_and_stream() {
        assert_eq!(
            Endpoint::parse("redis://127.0.0.1:6379/sensor-data").unwrap(),
            Endpoint::Redis {
                url: "redis://127.0.0.1:6379".into(),
                stream: "sensor-data".into()
            }
        );
        assert_eq!(
            Endpoint::parse("redis://:pw@h:1/3/s").unwrap(),
            Endpoint::Redis {
                url: "redis://:pw@h:1/3".into(),
                stream: "s".into()
            }
        );
        assert_eq!(
            Endpoint::parse("redis://:pw@h:1/3/s").unwrap().display(),
            "redis://h:1/3/s"
        );
    }

    #[test]
    fn a_redis_cluster_url_keeps_its_seed_nodes_and_shows_no_credentials() {
        let e =
            Endpoint::parse("redis+cluster://u:pw@127.0.0.1:7000,127.0.0.1:7001/events").unwrap();
        assert_eq!(
            e,
            Endpoint::Redis {
                url: "redis+cluster://u:pw@127.0.0.1:7000,127.0.0.1:7001".into(),
                stream: "events".into()
            }
        );
        assert_eq!(
            e.display(),
            "redis+cluster://127.0.0.1:7000,127.0.0.1:7001/events"
        );
        let dead = e.with_suffix(".dlq");
        assert_eq!(dead.name(), "events.dlq");
        assert_eq!(
            dead.display(),
            "redis+cluster://127.0.0.1:7000,127.0.0.1:7001/events.dlq"
        );
        let Endpoint::Redis { url, .. } = &e else {
            unreachable!()
        };
        assert_eq!(
            RedisTarget::parse(url, false).unwrap(),
            RedisTarget::Cluster(vec![
                "redis://u:pw@127.0.0.1:7000".into(),
                "redis://u:pw@127.0.0.1:7001".into()
            ])
        );
        assert_eq!(
            Endpoint::parse("redis+cluster://h:7000/s").unwrap(),
            Endpoint::Redis {
                url: "redis+cluster://h:7000".into(),
                stream: "s".into()
            }
        );
    }

    #[test]
    fn kafka_urls_take_several_brokers() {
        let e = Endpoint::parse("kafka://a:9092,b:9092/alerts").unwrap();
        assert_eq!(
            e,
            Endpoint::Kafka {
                brokers: "a:9092,b:9092".into(),
                topic: "alerts".into()
            }
        );
        assert_eq!(e.with_suffix(".dlq").name(), "alerts.dlq");
    }

    #[test]
    fn bad_urls_say_what_is_wrong() {
        for (url, why) in [
            ("localhost:6379/x", "no scheme"),
            ("redis://localhost:6379", "no stream"),
            ("redis://localhost:6379/", "no stream"),
            ("nats://h/x", "unknown scheme"),
            ("redis://h/db/x", "database number"),
            ("kafka://h/a/b", "cannot contain"),
            ("redis+cluster://h1:7000,h2:7001/0/x", "single database (0)"),
            (
                "redis+cluster://:pw@h1:7000/2/x",
                "takes no database number",
            ),
            ("redis://h1:7000,h2:7001/x", "write redis+cluster://"),
            ("redis+cluster://h1:7000,,h2:7001/x", "no empty one"),
            ("redis://:pw@h:port/x", "not a usable Redis URL"),
        ] {
            let e = Endpoint::parse(url).unwrap_err().to_string();
            assert!(e.contains(why), "{url}: {e}");
            assert!(!e.contains("pw"), "{url}: {e}");
        }
    }
}

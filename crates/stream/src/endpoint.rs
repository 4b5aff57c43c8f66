//! Where events come from and go to: `redis://[user:pass@]host:port[/db]/stream` or
//! `kafka://host:port[,host:port...]/topic`.
//!
//! The last path segment is the stream or topic (so a `redis://` URL's database number, if
//! any, sits before it: `redis://host:6379/2/events`). The same endpoint with `.dlq`
//! appended to the stream or topic is the default dead-letter destination.

use crate::StreamError;

/// A broker and the stream or topic on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A Redis stream: the connection URL (without the stream) and the stream's key.
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
        let bad = |why: &str| {
            StreamError::Config(format!(
                "invalid endpoint {url:?}: {why} (expected redis://host:6379/STREAM or \
                 kafka://host:9092/TOPIC)"
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
            "redis" | "rediss" => {
                let mut conn = format!("{scheme}://{authority}");
                if let Some(db) = db {
                    if db.parse::<u32>().is_err() {
                        return Err(bad(
                            "the segment before the stream must be a database number",
                        ));
                    }
                    conn = format!("{conn}/{db}");
                }
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
            Self::Redis { url, stream } => {
                let (scheme, rest) = url.split_once("://").unwrap_or(("redis", url));
                let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
                format!("{scheme}://{host}/{stream}")
            }
            Self::Kafka { brokers, topic } => format!("kafka://{brokers}/{topic}"),
        }
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
        ] {
            let e = Endpoint::parse(url).unwrap_err().to_string();
            assert!(e.contains(why), "{url}: {e}");
        }
    }
}

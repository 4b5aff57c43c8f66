//! `pynomaly stream` end to end, against real brokers: the Redis at
//! `PYNOMALY_TEST_REDIS_URL` and the Kafka-protocol broker (tansu, started by `.ci/run`)
//! at `PYNOMALY_TEST_KAFKA_BROKERS`. Each test skips, saying why, when its broker's
//! variable is unset. Streams and topics have unique names per test.
//!
//! The behaviours every broker must have are written once, in [`cases`], against the
//! [`Broker`] trait; `suite!` runs each of them on Redis (`stream::redis::…`), on a Redis
//! Cluster of the test's own (`stream::redis::on_a_redis_cluster::…`, ignored unless asked
//! for: `.ci/run` runs them) and on Kafka (`stream::kafka::…`). What only one broker has
//! (a registry promotion picked up without a restart, online refits with checkpoints:
//! tested on Redis) stays in that broker's module.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use self::harness::{Message, StreamProcess};

/// Generates one `#[test]` per shared case in [`cases`] for the broker `$broker`, in the
/// module that invokes it; attributes before the broker go on every test
/// (`suite!(#[ignore = "why"] Broker)`). It names the cases from the crate root, so a
/// submodule may invoke it too.
macro_rules! suite {
    ($(#[$attr:meta])* $broker:ty) => {
        suite!(@cases [$(#[$attr])*] $broker;
            nested_events_are_scored_by_a_registry_model_and_malformed_ones_go_to_the_dead_letters,
            a_process_killed_mid_stream_and_restarted_loses_no_event,
            two_processes_in_one_group_split_the_events,
        );
    };
    (@cases $attrs:tt $broker:ty; $($case:ident),* $(,)?) => {
        $(suite!(@case $attrs $broker; $case);)*
    };
    (@case [$(#[$attr:meta])*] $broker:ty; $case:ident) => {
        #[test]
        $(#[$attr])*
        fn $case() {
            crate::stream::cases::$case::<$broker>();
        }
    };
}

mod cases;
mod harness;
mod kafka;
pub(crate) mod redis;

/// How long a stream test waits for events to go through.
const WAIT: Duration = Duration::from_secs(120);

/// A broker the suite runs on: streams (Redis) or topics (Kafka) of one test's own, named
/// by short names (`events`, `alerts`, `events.dlq`, …) and removed afterwards.
pub(crate) trait Broker: Sized {
    /// How a dead letter names an event's place: `entry …` or `partition …`.
    const POSITION: &'static str;
    /// The arguments that hand a killed consumer's unacknowledged events to another soon.
    const TAKEOVER_ARGS: &'static [&'static str];
    /// Whether two members of a group may both process an event (Kafka's do across a
    /// rebalance: the partition's new owner resumes from the last commit).
    const REBALANCE_REDELIVERS: bool;

    /// The streams or topics `(name, partitions)` of the test `test` (Redis ignores the
    /// partitions); `None`, the test skipping, when the broker is not configured.
    fn open(test: &str, topics: &[(&str, i32)]) -> Option<Self>;

    /// The `--source`, `--sink` or `--dead-letter` URL of `name`.
    fn url(&self, name: &str) -> String;

    /// A consumer group of this test's own.
    fn group(&self) -> String;

    /// What every stream process on this broker is given besides the test's arguments.
    fn process_args(&self) -> Vec<String>;

    /// Produces JSON events, keyed by their `id`.
    fn produce(&self, name: &str, events: &[Value]);

    /// Produces one message with this key and payload.
    fn produce_raw(&self, name: &str, key: &str, payload: &str);

    /// Produces the malformed messages only this broker can carry; for each, its key and
    /// the start of its dead letter's reason.
    fn produce_broker_malformed(&self, name: &str) -> Vec<(&'static str, &'static str)>;

    /// Every message of `name` from the start, once at least `at_least` have arrived.
    fn read_all(&self, name: &str, at_least: usize) -> Vec<Message>;

    /// The messages of `name` delivered to `group` and not acknowledged, where the broker
    /// tells them apart (Redis); `None` where it does not (Kafka keeps an offset).
    fn pending(&self, name: &str, group: &str) -> Option<usize>;

    /// Waits until the members of a group just started have been given their share.
    fn settle_group(&self);

    /// Starts `pynomaly stream` on this broker with `args`.
    fn start(&self, data_dir: &Path, args: &[&str]) -> StreamProcess {
        let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        all.extend(self.process_args());
        harness::start(data_dir, &all)
    }
}

//! Kafka tests: added with the Kafka source and sink.

//! Kafka (rdkafka): added in the next step.

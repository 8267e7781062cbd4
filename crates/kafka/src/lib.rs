//! Everything that speaks Kafka, through librdkafka (built from source by `rdkafka-sys`).
//!
//! * [`KafkaSink`]: the producer sink of capture. Idempotent producer, `acks=all`, no
//!   message timeout (a broker that is down is waited for); a message's delivery report is
//!   what makes it durable, and reports are consumed in production order, so the LSN
//!   handed back to the engine always covers a delivered prefix.
//! * [`read_bounded`]: `tfio.IODataset.from_kafka(topic, partition, offset)`: from an offset
//!   to the high watermark seen at start, then end.
//! * [`GroupReader`]: `KafkaGroupIODataset(topics, group_id, stream_timeout, configuration)`:
//!   a consumer group that ends after `stream_timeout` without a record (or never), with
//!   offsets stored only after the caller has used a batch.
//! * [`settings`]: librdkafka `key=value` settings passed through.
//! * [`testing`]: a noida-db broker for tests (a real Kafka-protocol broker).

mod logging;
mod reader;
mod sink;
pub mod testing;
mod wait;

pub use logging::LogContext;
pub use reader::{read_bounded, GroupReader, Record};
pub use sink::{KafkaSink, Publisher};

/// Errors talking to Kafka.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    #[error("kafka setting {0:?}: expected key=value")]
    Setting(String),
    #[error("kafka ({context}): {source}")]
    Client {
        context: String,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    #[error("topic {topic:?} did not appear within {secs} s (is capture running and producing to {brokers}?)")]
    NoTopic { topic: String, secs: u64, brokers: String },
    #[error("no Kafka broker answered at {brokers} within {secs} s ({error}); is it running, and is the address right?")]
    Unreachable { brokers: String, secs: u64, error: String },
    #[error("{topic}/{partition}: offset {asked} is no longer in the topic (it starts at {first}; {missing} records were deleted by retention); read from {first} without --strict")]
    Gap { topic: String, partition: i32, asked: i64, first: i64, missing: i64 },
}

pub(crate) fn client_err(context: &str) -> impl Fn(rdkafka::error::KafkaError) -> KafkaError + '_ {
    move |source| KafkaError::Client { context: context.into(), source }
}

/// Parses librdkafka `key=value` settings.
pub fn settings(list: &[String]) -> Result<Vec<(String, String)>, KafkaError> {
    list.iter().map(|kv| kv.split_once('=').map(|(k, v)| (k.trim().to_string(), v.trim().to_string())).ok_or_else(|| KafkaError::Setting(kv.clone()))).collect()
}

/// A client config for `brokers`: our `defaults`, then the user's `extra` settings (which win).
pub fn client_config(brokers: &str, defaults: &[(&str, &str)], extra: &[(String, String)]) -> rdkafka::ClientConfig {
    let mut c = rdkafka::ClientConfig::new();
    c.set("bootstrap.servers", brokers);
    for (k, v) in defaults {
        c.set(*k, *v);
    }
    for (k, v) in extra {
        c.set(k, v);
    }
    c
}

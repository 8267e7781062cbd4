//! What a reader says while it waits for a topic: no broker answers at the address, or the
//! topic does not exist and which do (with the nearest name), within seconds and again every
//! 10 s or when that changes, until a deadline.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::{KafkaError, LogContext};

/// What a wait for a topic has seen: no broker answered, or the broker answered without it.
#[derive(Debug, Clone, PartialEq)]
enum TopicWait {
    Unreachable(String),
    Missing(Vec<String>),
}

impl TopicWait {
    /// One line saying why the wait goes on, naming the address or the topics that exist.
    fn say(&self, topic: &str, brokers: &str, left: Duration) -> String {
        let until = format!("still trying for {} s", left.as_secs());
        match self {
            TopicWait::Unreachable(e) => format!("waiting for topic {topic}: no broker answers at {brokers} ({e}); is Kafka running there? {until}"),
            TopicWait::Missing(have) => {
                let near = tensorcdc_change::names::nearest(topic, have.iter().map(String::as_str)).map(|n| format!("; did you mean {n}?")).unwrap_or_default();
                // A broker with many topics: the first 20, and how many more.
                let list = match have.len() {
                    0 => "none".to_string(),
                    n if n > 20 => format!("{} and {} more", have[..20].join(", "), n - 20),
                    _ => have.join(", "),
                };
                format!(
                    "waiting for topic {topic} on {brokers}: it does not exist (yet); topics there: {list}{near} \
                     (a capture creates it with its first event); {until}"
                )
            }
        }
    }
}

/// Waits until `topic` has partitions; returns their ids. Says within a few seconds why it
/// waits (no broker answers at the address, or the topic is missing, with the topics that
/// exist), and again when that changes or every 10 s; gives up after `wait`.
pub(crate) fn wait_topic(consumer: &BaseConsumer<LogContext>, brokers: &str, topic: &str, wait: Duration) -> Result<Vec<i32>, KafkaError> {
    let start = Instant::now();
    let mut said: Option<(TopicWait, Instant)> = None;
    loop {
        let seen = match consumer.fetch_metadata(None, Duration::from_secs(3)) {
            Ok(md) => {
                if let Some(t) = md.topics().iter().find(|t| t.name() == topic) {
                    if t.error().is_none() && !t.partitions().is_empty() {
                        return Ok(t.partitions().iter().map(|p| p.id()).collect());
                    }
                }
                let mut have: Vec<String> = md.topics().iter().map(|t| t.name().to_string()).filter(|n| !n.starts_with("__")).collect();
                have.sort();
                TopicWait::Missing(have)
            }
            Err(e) => TopicWait::Unreachable(e.to_string()),
        };
        if start.elapsed() >= wait {
            return Err(match seen {
                TopicWait::Unreachable(e) => KafkaError::Unreachable { brokers: brokers.into(), secs: wait.as_secs(), error: e },
                TopicWait::Missing(_) => KafkaError::NoTopic { topic: topic.into(), secs: wait.as_secs(), brokers: brokers.into() },
            });
        }
        if said.as_ref().is_none_or(|(s, at)| *s != seen || at.elapsed() >= Duration::from_secs(10)) {
            eprintln!("{}", seen.say(topic, brokers, wait.saturating_sub(start.elapsed())));
            said = Some((seen, Instant::now()));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

//! librdkafka's own log and error callbacks, through `tracing` at sensible levels and
//! rate-limited: the same message (by facility and text, digits ignored) is written at most
//! once every 10 s, with the number of repeats suppressed meanwhile. A broker that is down
//! gives one warning line per 10 s instead of several ERROR lines a second; a topic that does
//! not exist yet (which readers wait for) is a debug message.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

const EVERY: Duration = Duration::from_secs(10);

/// The client context of every tensorcdc Kafka client.
#[derive(Default)]
pub struct LogContext {
    seen: Mutex<HashMap<String, (Instant, u64)>>,
}

impl LogContext {
    /// `Some(suppressed)` when this message may be written now.
    fn allow(&self, key: &str) -> Option<u64> {
        let key: String = key.chars().filter(|c| !c.is_ascii_digit()).collect();
        let mut seen = self.seen.lock().expect("not poisoned");
        let now = Instant::now();
        match seen.get_mut(&key) {
            Some((at, n)) if now.duration_since(*at) < EVERY => {
                *n += 1;
                None
            }
            Some((at, n)) => {
                let s = *n;
                *at = now;
                *n = 0;
                Some(s)
            }
            None => {
                if seen.len() > 1000 {
                    seen.clear();
                }
                seen.insert(key, (now, 0));
                Some(0)
            }
        }
    }
}

fn repeats(n: u64) -> String {
    if n > 0 {
        format!(" ({n} more like it in the last {}s)", EVERY.as_secs())
    } else {
        String::new()
    }
}

impl ClientContext for LogContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, msg: &str) {
        let Some(n) = self.allow(&format!("{fac}{msg}")) else { return };
        let r = repeats(n);
        match level {
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical | RDKafkaLogLevel::Error => {
                tracing::warn!(target: "librdkafka", "{fac}: {msg}{r}")
            }
            RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", "{fac}: {msg}{r}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => tracing::info!(target: "librdkafka", "{fac}: {msg}{r}"),
            RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", "{fac}: {msg}{r}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let unknown_topic = matches!(error.rdkafka_error_code(), Some(RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic));
        if unknown_topic {
            tracing::debug!(target: "librdkafka", "{error}: {reason}");
            return;
        }
        let Some(n) = self.allow(reason) else { return };
        tracing::warn!(target: "librdkafka", "{error}: {reason}{}", repeats(n));
    }
}

impl ConsumerContext for LogContext {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_message_passes_once_per_period() {
        let c = LogContext::default();
        assert_eq!(c.allow("broker 127.0.0.1:9092 down"), Some(0));
        assert_eq!(c.allow("broker 127.0.0.1:9092 down"), None);
        // Only the digits differ: the same message.
        assert_eq!(c.allow("broker 127.0.0.1:9093 down"), None);
        assert_eq!(c.allow("another message"), Some(0));
    }
}

//! The Kafka producer sink. Durability rule: an event is durable when its delivery report
//! says so. Reports are awaited in production order; the engine is told the `ack_lsn` of a
//! message only after it and every message before it were delivered.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::error::{KafkaError as RdError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use tensorcdc_change::json::{ConverterConfig, JsonWriter};
use tensorcdc_change::{BatchAck, Message, Sink, SinkError, SOURCE_KEY_HEADER};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::{client_config, client_err, KafkaError, LogContext};

/// Produces each message to its topic (`<prefix>.<schema>.<table>`).
pub struct KafkaSink {
    producer: FutureProducer<LogContext>,
    /// What built the producer, to build a new one after a fatal error.
    brokers: String,
    extra: Vec<(String, String)>,
    /// Records produced by this producer (for the `kafka.fatal` failpoint).
    produced: u64,
    failpoint: Option<(u64, bool)>,
    admin: AdminClient<LogContext>,
    writer: JsonWriter,
    known_topics: HashSet<String>,
    pending: Option<mpsc::Sender<(DeliveryFuture, Option<BatchAck>)>>,
    outstanding: Arc<AtomicUsize>,
    failure: Arc<Mutex<Option<String>>>,
    /// Partitions for topics the sink creates.
    pub partitions: i32,
}

impl KafkaSink {
    /// A sink for `brokers`; `extra` librdkafka settings are applied last.
    pub fn new(brokers: &str, extra: &[(String, String)], conv: ConverterConfig) -> Result<Self, KafkaError> {
        let producer = Self::producer(brokers, extra)?;
        let admin: AdminClient<LogContext> =
            client_config(brokers, &[], extra).create_with_context(LogContext::default()).map_err(client_err("create admin client"))?;
        Ok(KafkaSink {
            producer,
            brokers: brokers.to_string(),
            extra: extra.to_vec(),
            produced: 0,
            failpoint: failpoint(),
            admin,
            writer: JsonWriter::new(conv),
            known_topics: HashSet::new(),
            pending: None,
            outstanding: Arc::new(AtomicUsize::new(0)),
            failure: Arc::new(Mutex::new(None)),
            partitions: 1,
        })
    }

    fn producer(brokers: &str, extra: &[(String, String)]) -> Result<FutureProducer<LogContext>, KafkaError> {
        let defaults = [
            ("enable.idempotence", "true"),
            ("acks", "all"),
            // Never give up on a message: a broker that is down is waited for.
            ("message.timeout.ms", "0"),
            ("linger.ms", "1"),
            ("compression.type", "lz4"),
            ("queue.buffering.max.kbytes", "262144"),
        ];
        client_config(brokers, &defaults, extra).create_with_context(LogContext::default()).map_err(client_err("create producer"))
    }

    async fn ensure_topic(&mut self, topic: &str) {
        if self.known_topics.contains(topic) {
            return;
        }
        let exists = self
            .producer
            .client()
            .fetch_metadata(Some(topic), Duration::from_secs(5))
            .ok()
            .and_then(|md| md.topics().iter().find(|t| t.name() == topic).map(|t| t.error().is_none() && !t.partitions().is_empty()))
            .unwrap_or(false);
        if exists {
            self.known_topics.insert(topic.to_string());
            return;
        }
        let t = NewTopic::new(topic, self.partitions, TopicReplication::Fixed(1));
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(5))).request_timeout(Some(Duration::from_secs(5)));
        match self.admin.create_topics(&[t], &opts).await {
            Ok(results) => {
                for r in results {
                    match r {
                        Ok(name) => debug!("created topic {name}"),
                        Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => debug!("topic {name} exists"),
                        // Brokers that refuse the admin API (librdkafka's mock cluster) create topics on first produce.
                        Err((name, code)) => debug!("create topic {name}: {code}; relying on auto-creation"),
                    }
                }
            }
            Err(e) => warn!("create topic {topic}: {e}; relying on auto-creation"),
        }
        self.known_topics.insert(topic.to_string());
    }

    /// The delivery-report task: it awaits each record's report in produce order; a batch's
    /// completion handle rides on its last record, so it is completed once every record of
    /// the batch (and every one before) was delivered. A failed delivery fails its batch's
    /// handle and stops the task: the handles still queued are dropped, which reports their
    /// batches lost to the session that sent them.
    fn start_reporter(&mut self) -> mpsc::Sender<(DeliveryFuture, Option<BatchAck>)> {
        if let Some(p) = &self.pending {
            return p.clone();
        }
        let (tx, mut rx) = mpsc::channel::<(DeliveryFuture, Option<BatchAck>)>(1 << 16);
        let outstanding = self.outstanding.clone();
        let failure = self.failure.clone();
        tokio::spawn(async move {
            while let Some((fut, ack)) = rx.recv().await {
                let failed = match fut.await {
                    Ok(Ok(_)) => None,
                    Ok(Err((e, _))) => Some(e.to_string()),
                    Err(_) => Some("producer dropped a delivery report".to_string()),
                };
                outstanding.fetch_sub(1, Ordering::SeqCst);
                match failed {
                    None => {
                        if let Some(a) = ack {
                            a.done();
                        }
                    }
                    Some(e) => {
                        *failure.lock().expect("not poisoned") = Some(e.clone());
                        if let Some(a) = ack {
                            a.failed(SinkError::Fatal(format!("Kafka delivery failed: {e}")));
                        }
                        return;
                    }
                }
            }
        });
        self.pending = Some(tx.clone());
        tx
    }

    fn check_failure(&self) -> Result<(), SinkError> {
        // A fatal error (the idempotent producer's sequence broken, fenced, ...): this producer
        // delivers nothing more, so the capture ends, naming it, instead of waiting for ever.
        if let Some((code, reason)) = self.producer.client().fatal_error() {
            return Err(SinkError::Fatal(format!("Kafka producer fatal error {code:?}: {reason}")));
        }
        match self.failure.lock().expect("not poisoned").as_ref() {
            Some(e) => Err(SinkError::Fatal(format!("Kafka delivery failed: {e}"))),
            None => Ok(()),
        }
    }
}

#[async_trait::async_trait]
impl Sink for KafkaSink {
    async fn send(&mut self, batch: Vec<Message>, ack: BatchAck) -> Result<(), SinkError> {
        self.check_failure()?;
        let pending = self.start_reporter();
        if batch.is_empty() {
            ack.done();
            return Ok(());
        }
        let (n, mut ack) = (batch.len(), Some(ack));
        for (i, m) in batch.into_iter().enumerate() {
            self.ensure_topic(&m.topic).await;
            let (key, value) = self.writer.serialize(&m);
            let source_key = matches!(m.key, tensorcdc_change::Key::Derived { .. }).then(|| m.key.to_text()).flatten();
            loop {
                let mut rec: FutureRecord<'_, Vec<u8>, Vec<u8>> = FutureRecord::to(&m.topic).timestamp(m.commit_ts_ms);
                if let Some(k) = key.as_ref() {
                    rec = rec.key(k);
                }
                if let Some(source) = source_key.as_ref() {
                    rec = rec.headers(OwnedHeaders::new().insert(Header { key: SOURCE_KEY_HEADER, value: Some(source.as_bytes()) }));
                }
                if let Some(v) = value.as_ref() {
                    rec = rec.payload(v);
                }
                match self.producer.send_result(rec) {
                    Ok(fut) => {
                        self.produced += 1;
                        self.inject_fatal();
                        self.outstanding.fetch_add(1, Ordering::SeqCst);
                        let with = if i + 1 == n { ack.take() } else { None };
                        pending.send((fut, with)).await.map_err(|_| SinkError::Fatal("the delivery reporter stopped after a failed delivery".into()))?;
                        break;
                    }
                    Err((RdError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                        // librdkafka's queue is full (a slow or absent broker): wait, then retry.
                        self.check_failure()?;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Err((e, _)) => {
                        // The producer's fatal error shows here first when it came between batches.
                        self.check_failure()?;
                        return Err(SinkError::Permanent(format!("produce to {}: {e}", m.topic)));
                    }
                }
            }
        }
        Ok(())
    }

    fn health(&self) -> Result<(), SinkError> {
        self.check_failure()
    }

    async fn reset(&mut self) -> Result<(), SinkError> {
        // The old producer and its reporter task are dropped with their counters: reports
        // they still give go nowhere (the records are sent again from the confirmed LSN).
        self.producer = Self::producer(&self.brokers, &self.extra).map_err(|e| SinkError::Permanent(format!("a new Kafka producer: {e}")))?;
        self.pending = None;
        self.outstanding = Arc::new(AtomicUsize::new(0));
        self.failure = Arc::new(Mutex::new(None));
        self.produced = 0;
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), SinkError> {
        while self.outstanding.load(Ordering::SeqCst) > 0 {
            self.check_failure()?;
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        self.check_failure()?;
        let _ = self.producer.flush(Duration::from_secs(1));
        Ok(())
    }
}

/// Test support, a named fault instead of a timed one: `TENSORCDC_FAILPOINTS=kafka.fatal=N`
/// raises librdkafka's own fatal error (`rd_kafka_test_fatal_error`, as a broken idempotence
/// sequence would) after N records of the first producer; `kafka.fatal_every=N` after N
/// records of every producer (one that can never recover).
fn failpoint() -> Option<(u64, bool)> {
    let v = std::env::var("TENSORCDC_FAILPOINTS").ok()?;
    v.split(',').find_map(|f| {
        let (k, n) = f.split_once('=')?;
        let n = n.trim().parse().ok()?;
        match k.trim() {
            "kafka.fatal" => Some((n, false)),
            "kafka.fatal_every" => Some((n, true)),
            _ => None,
        }
    })
}

impl KafkaSink {
    #[allow(unsafe_code)]
    fn inject_fatal(&mut self) {
        if let Some((n, every)) = self.failpoint {
            if self.produced == n {
                if !every {
                    self.failpoint = None;
                }
                let reason = std::ffi::CString::new("failpoint kafka.fatal").expect("no NUL");
                // SAFETY: the pointer is this live producer's handle; the call only records an error.
                unsafe {
                    rdkafka::bindings::rd_kafka_test_fatal_error(
                        self.producer.client().native_ptr(),
                        rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
                        reason.as_ptr(),
                    );
                }
            }
        }
    }
}

/// A plain JSON publisher (predictions to a topic).
pub struct Publisher {
    producer: FutureProducer<LogContext>,
}

impl Publisher {
    pub fn new(brokers: &str, extra: &[(String, String)]) -> Result<Self, KafkaError> {
        let cfg = client_config(brokers, &[("enable.idempotence", "true"), ("linger.ms", "0")], extra);
        Ok(Publisher { producer: cfg.create_with_context(LogContext::default()).map_err(client_err("create producer"))? })
    }

    /// Sends one record and waits for its delivery; a `None` value is a tombstone.
    pub async fn send(&self, topic: &str, key: &str, value: Option<&[u8]>) -> Result<(), KafkaError> {
        let rec = FutureRecord::<str, [u8]>::to(topic).key(key);
        let rec = match value {
            Some(v) => rec.payload(v),
            None => rec,
        };
        self.producer
            .send(rec, Duration::from_secs(30))
            .await
            .map(|_| ())
            .map_err(|(e, _)| KafkaError::Client { context: format!("produce to {topic}"), source: e })
    }
}

//! Reading topics: bounded (to the high watermark) and consumer-group streaming.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, StreamConsumer};

use crate::LogContext;
use rdkafka::message::{Headers as _, Message as _};
use rdkafka::{Offset, TopicPartitionList};
use tensorcdc_change::SOURCE_KEY_HEADER;
use tracing::info;

use crate::wait::wait_topic;
use crate::{client_config, client_err, KafkaError};

/// One Kafka record.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    /// Record timestamp (capture sets it to the transaction's commit time), ms.
    pub timestamp_ms: Option<i64>,
    /// The source row's key from the `tensorcdc.key` header, when a transform replaced the
    /// record key (the blog's MnistToCsv keys records by label).
    pub source_key: Option<String>,
}

fn record(m: &rdkafka::message::BorrowedMessage<'_>) -> Record {
    Record {
        topic: m.topic().to_string(),
        partition: m.partition(),
        offset: m.offset(),
        key: m.key().map(<[u8]>::to_vec),
        value: m.payload().map(<[u8]>::to_vec),
        timestamp_ms: m.timestamp().to_millis(),
        source_key: m
            .headers()
            .and_then(|h| h.iter().find(|x| x.key == SOURCE_KEY_HEADER).and_then(|x| x.value).map(|v| String::from_utf8_lossy(v).into_owned())),
    }
}

/// Reads `topic` (one partition, or all) from `offset` up to the high watermark seen at
/// start, calling `each` per record in partition order. Waits up to `wait` for the topic.
/// Returns the number of records read. Blocking: call from a blocking thread.
///
/// When `offset` is below a partition's first offset (records deleted by retention or
/// compaction), a warning names the records missing; with `strict` it is an error
/// ([`KafkaError::Gap`]) and nothing is read.
#[allow(clippy::too_many_arguments)]
pub fn read_bounded(
    brokers: &str,
    topic: &str,
    partition: Option<i32>,
    offset: i64,
    strict: bool,
    extra: &[(String, String)],
    wait: Duration,
    mut each: impl FnMut(Record) -> Result<(), KafkaError>,
) -> Result<u64, KafkaError> {
    let defaults = [
        ("group.id", "tensorcdc-bounded"),
        ("enable.auto.commit", "false"),
        ("enable.partition.eof", "false"),
        // Large fetches: a bounded read wants everything up to the high watermark at once.
        ("fetch.max.bytes", "104857600"),
        ("max.partition.fetch.bytes", "52428800"),
        // Data up to the high watermark exists: never let the broker wait for more.
        ("fetch.wait.max.ms", "0"),
    ];
    let cfg = client_config(brokers, &defaults, extra);
    let t0 = Instant::now();
    let consumer: BaseConsumer<LogContext> = cfg.create_with_context(LogContext::default()).map_err(client_err("create consumer"))?;
    let parts = wait_topic(&consumer, brokers, topic, wait)?;
    tracing::debug!("bounded read of {topic}: metadata after {:?}", t0.elapsed());
    let parts: Vec<i32> = match partition {
        Some(p) => parts.into_iter().filter(|x| *x == p).collect(),
        None => parts,
    };
    let mut tpl = TopicPartitionList::new();
    let mut ends = Vec::new();
    for p in &parts {
        let (low, high) = consumer.fetch_watermarks(topic, *p, Duration::from_secs(10)).map_err(client_err("fetch watermarks"))?;
        if offset < low && offset < high {
            let missing = low - offset;
            if strict {
                return Err(KafkaError::Gap { topic: topic.into(), partition: *p, asked: offset, first: low, missing });
            }
            tracing::warn!(
                "{topic}/{p}: offset {offset} is no longer in the topic; reading from {low}, {missing} records missing (--strict makes this an error)"
            );
        }
        let start = offset.max(low);
        if start < high {
            tpl.add_partition_offset(topic, *p, Offset::Offset(start)).map_err(client_err("assign"))?;
            ends.push((*p, high));
        }
    }
    if ends.is_empty() {
        return Ok(0);
    }
    consumer.assign(&tpl).map_err(client_err("assign"))?;
    tracing::debug!("bounded read of {topic}: assigned after {:?}", t0.elapsed());
    let mut n = 0u64;
    while !ends.is_empty() {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                let (p, o) = (m.partition(), m.offset());
                if let Some(i) = ends.iter().position(|(ep, eh)| *ep == p && o < *eh) {
                    n += 1;
                    if n == 1 {
                        tracing::debug!("bounded read of {topic}: first record after {:?}", t0.elapsed());
                    }
                    each(record(&m))?;
                    if o + 1 >= ends[i].1 {
                        ends.swap_remove(i);
                    }
                }
            }
            Some(Err(e)) => return Err(KafkaError::Client { context: format!("read {topic}"), source: e }),
            None => {
                // A transactional topic ends in a commit marker that no record stands for:
                // the position passes the high watermark without a last record.
                if let Ok(pos) = consumer.position() {
                    ends.retain(|(p, h)| {
                        let at = pos.find_partition(topic, *p).and_then(|e| match e.offset() {
                            Offset::Offset(o) => Some(o),
                            _ => None,
                        });
                        at.is_none_or(|o| o < *h)
                    });
                }
            }
        }
    }
    // Closing a consumer takes ~100 ms (it leaves the broker politely); nobody waits for it.
    std::thread::spawn(move || drop(consumer));
    Ok(n)
}

/// Low and high watermarks by (topic, partition); `None` while being asked.
type Watermarks = BTreeMap<(String, i32), Option<(i64, i64)>>;

/// A consumer-group stream (`KafkaGroupIODataset`).
pub struct GroupReader {
    consumer: Arc<StreamConsumer<LogContext>>,
    /// Stop after this long without a record (`None`: never).
    pub stream_timeout: Option<Duration>,
    topics: Vec<String>,
    brokers: String,
    group: String,
    last: Instant,
    started: bool,
    /// The partitions last reported as this member's.
    assignment: Vec<String>,
    /// Records received and not yet returned (kept across a cancelled `next_batch`).
    pending: Vec<Record>,
    /// Per assigned partition, its low and high watermarks when first assigned (`None`: asked).
    targets: Arc<Mutex<Watermarks>>,
    /// Once true, stays: see [`GroupReader::caught_up`].
    caught_up: bool,
    /// Admin settings for creating missing topics, until that was tried once.
    create_topics: Option<rdkafka::ClientConfig>,
    /// Next offset to commit per (topic, partition): one past the last record used.
    used: BTreeMap<(String, i32), i64>,
    last_commit: Instant,
    /// When this member began to wait for partitions, and when it last said so.
    joined: Instant,
    said_waiting: Instant,
}

/// A member with no partitions yet says so this often.
const ASSIGNMENT_SAY_EVERY: Duration = Duration::from_secs(5);
/// With a stream timeout, the wait for a first assignment ends after the larger of it and this
/// (a group forms within seconds; one that does not is held by a member that is gone).
const ASSIGNMENT_WAIT_MIN: Duration = Duration::from_secs(30);

impl GroupReader {
    /// Joins `group` on `topics`. `auto_offset_reset`: earliest or latest. `extra`:
    /// librdkafka settings. `stream_timeout_ms < 0` streams forever.
    pub fn new(
        brokers: &str,
        topics: &[String],
        group: &str,
        auto_offset_reset: &str,
        stream_timeout_ms: i64,
        extra: &[(String, String)],
    ) -> Result<Self, KafkaError> {
        let defaults = [
            ("group.id", group),
            ("auto.offset.reset", auto_offset_reset),
            // Only offsets of records the caller used are committed (`done_with`, `commit`):
            // librdkafka's auto-commit and close would commit its position, which can be ahead.
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("session.timeout.ms", "6000"),
            ("enable.partition.eof", "false"),
            ("topic.metadata.refresh.interval.ms", "500"),
            // A topic that does not exist yet is created now (see `create_missing_topics`);
            // `-X allow.auto.create.topics=false` turns that off.
            ("allow.auto.create.topics", "true"),
            // Low latency for live rows: brokers that do not answer a fetch as soon as data
            // arrives (librdkafka's mock cluster) would otherwise hold it for 500 ms.
            ("fetch.wait.max.ms", "10"),
        ];
        let cfg = client_config(brokers, &defaults, extra);
        let consumer: StreamConsumer<LogContext> = cfg.create_with_context(LogContext::default()).map_err(client_err("create consumer"))?;
        let create = (cfg.get("allow.auto.create.topics") == Some("true")).then(|| {
            let mut admin_cfg = client_config(brokers, &[], extra);
            for k in [
                "group.id",
                "auto.offset.reset",
                "enable.auto.commit",
                "enable.auto.offset.store",
                "session.timeout.ms",
                "enable.partition.eof",
                "fetch.wait.max.ms",
                "allow.auto.create.topics",
            ] {
                admin_cfg.remove(k);
            }
            admin_cfg
        });
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer.subscribe(&names).map_err(client_err("subscribe"))?;
        Ok(GroupReader {
            consumer: Arc::new(consumer),
            stream_timeout: (stream_timeout_ms >= 0).then(|| Duration::from_millis(stream_timeout_ms as u64)),
            topics: topics.to_vec(),
            brokers: brokers.into(),
            group: group.into(),
            last: Instant::now(),
            started: false,
            assignment: Vec::new(),
            pending: Vec::new(),
            targets: Default::default(),
            caught_up: false,
            create_topics: create,
            used: Default::default(),
            last_commit: Instant::now(),
            joined: Instant::now(),
            said_waiting: Instant::now(),
        })
    }

    /// Before the first assignment: says every few seconds that the member waits and why it may
    /// not end; `true` once the wait has passed its deadline (the stream then ends).
    fn waited_too_long(&mut self) -> bool {
        let group = self.group.clone();
        let waited = self.joined.elapsed();
        let deadline = self.stream_timeout.map(|t| t.max(ASSIGNMENT_WAIT_MIN));
        if let Some(d) = deadline.filter(|d| waited >= *d) {
            eprintln!(
                "no partition of {} was assigned to this member of group {group} on {} within {} s: the stream ends. \
                 Another member may still hold them (one killed with kill -9 keeps them until the broker expires its session)",
                self.topics.join(", "),
                self.brokers,
                d.as_secs()
            );
            return true;
        }
        if self.said_waiting.elapsed() >= ASSIGNMENT_SAY_EVERY {
            self.said_waiting = Instant::now();
            let until = deadline.map(|d| format!("; giving up after {} s", d.as_secs())).unwrap_or_default();
            eprintln!(
                "waiting {} s for the group {group} on {} to assign this member partitions of {}: the group is rebalancing, \
                 or another member (perhaps one that was killed) still holds them{until}",
                waited.as_secs(),
                self.brokers,
                self.topics.join(", ")
            );
        }
        false
    }

    /// Creates the subscribed topics that do not exist yet, with one partition as capture
    /// would, so the group forms now. A group that joins only when the first row creates
    /// its topic waits for the broker's initial rebalance delay (Kafka's
    /// `group.initial.rebalance.delay.ms`, 3 s by default) before reading that row.
    async fn create_missing_topics(&self, cfg: rdkafka::ClientConfig) {
        let admin: rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> = match cfg.create() {
            Ok(a) => a,
            Err(e) => return tracing::debug!("admin client for missing topics: {e}"),
        };
        let topics: Vec<rdkafka::admin::NewTopic<'_>> =
            self.topics.iter().map(|t| rdkafka::admin::NewTopic::new(t, 1, rdkafka::admin::TopicReplication::Fixed(1))).collect();
        let opts = rdkafka::admin::AdminOptions::new().operation_timeout(Some(Duration::from_secs(5))).request_timeout(Some(Duration::from_secs(5)));
        match admin.create_topics(topics.iter(), &opts).await {
            Ok(results) => {
                for r in results {
                    match r {
                        Ok(name) => info!("created topic {name} (1 partition) so the group forms before its first rows"),
                        Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
                        Err((name, code)) => tracing::debug!("create topic {name}: {code}; waiting for it"),
                    }
                }
            }
            Err(e) => tracing::debug!("create topics {:?}: {e}; waiting for them", self.topics),
        }
    }

    fn assigned(&self) -> bool {
        self.consumer.assignment().map(|a| a.count() > 0).unwrap_or(false)
    }

    /// Says on stderr when the group changes this member's partitions (a member joined or
    /// left), as `group assignment: topic/0, topic/1`.
    fn report_assignment(&mut self) {
        let now: Vec<String> = match self.consumer.assignment() {
            Ok(a) => a.elements().iter().map(|e| format!("{}/{}", e.topic(), e.partition())).collect(),
            Err(_) => return,
        };
        if now != self.assignment {
            eprintln!("group assignment: {}", if now.is_empty() { "none".to_string() } else { now.join(", ") });
            self.assignment = now;
        }
    }

    /// Up to `max` records: returns early when no record arrives for `linger`. `None` when
    /// the stream ended (no record for `stream_timeout`). The stream timeout starts once the
    /// group has been assigned partitions (a topic that does not exist yet is waited for).
    pub async fn next_batch(&mut self, max: usize, linger: Duration) -> Result<Option<Vec<Record>>, KafkaError> {
        if let Some(cfg) = self.create_topics.take() {
            self.create_missing_topics(cfg).await;
        }
        // Records gathered so far live in `self.pending`, not in this future: a caller that
        // drops the future (a `select!` whose other branch won) loses none of them; the next
        // call returns them.
        loop {
            if !self.started {
                if self.assigned() {
                    self.started = true;
                    self.last = Instant::now();
                    // Said on stderr, as capture says "streaming from": the reader is live.
                    eprintln!("group assigned partitions of {}; reading", self.topics.join(", "));
                    self.report_assignment();
                } else {
                    if self.waited_too_long() {
                        return Ok(None);
                    }
                }
            }
            let wait = if self.pending.is_empty() { Duration::from_millis(100) } else { linger };
            match tokio::time::timeout(wait, self.consumer.recv()).await {
                Ok(Ok(m)) => {
                    self.started = true;
                    self.last = Instant::now();
                    self.pending.push(record(&m));
                    if self.pending.len() >= max {
                        return Ok(Some(std::mem::take(&mut self.pending)));
                    }
                }
                // Unknown topic (not created yet) and transient errors: keep waiting.
                Ok(Err(e)) => tracing::debug!("consumer: {e} (waiting for {:?} on {})", self.topics, self.brokers),
                Err(_) => {
                    if self.started {
                        self.report_assignment();
                    }
                    if !self.pending.is_empty() {
                        return Ok(Some(std::mem::take(&mut self.pending)));
                    }
                    if let (true, Some(t)) = (self.started, self.stream_timeout) {
                        if self.last.elapsed() >= t {
                            return Ok(None);
                        }
                    }
                }
            }
        }
    }

    /// Whether this member has handed out every record its partitions held when it joined (the
    /// high watermark of each assigned partition, asked once), as a capture's snapshot is read
    /// whole before it streams; or nothing arrived for 2 s after the assignment. Once true,
    /// stays true: `tensorcdc run` trains its first version on what the topic held.
    pub fn caught_up(&mut self) -> bool {
        if self.caught_up {
            return true;
        }
        if !self.started || !self.pending.is_empty() {
            return false;
        }
        if self.last.elapsed() >= Duration::from_secs(2) {
            self.caught_up = true;
            return true;
        }
        let (Ok(assigned), Ok(position)) = (self.consumer.assignment(), self.consumer.position()) else { return false };
        if assigned.count() == 0 {
            return false;
        }
        let mut targets = self.targets.lock().expect("targets");
        let mut all = true;
        for e in assigned.elements() {
            let key = (e.topic().to_string(), e.partition());
            let Some(&Some((low, high))) = targets.get(&key) else {
                if !targets.contains_key(&key) {
                    // Asked once, off this thread: a metadata round trip to the broker.
                    targets.insert(key.clone(), None);
                    let (consumer, targets) = (self.consumer.clone(), self.targets.clone());
                    std::thread::spawn(move || match consumer.fetch_watermarks(&key.0, key.1, Duration::from_secs(5)) {
                        Ok(w) => drop(targets.lock().map(|mut t| t.insert(key, Some(w)))),
                        Err(err) => tracing::debug!("watermarks of {}/{}: {err}", key.0, key.1),
                    });
                }
                all = false;
                continue;
            };
            let at = match position.find_partition(e.topic(), e.partition()).map(|p| p.offset()) {
                Some(Offset::Offset(o)) => o,
                // Nothing handed out from it yet: caught up when it holds nothing.
                _ => low,
            };
            all &= at >= high;
        }
        self.caught_up = all;
        all
    }

    /// Stores the offsets of a batch the caller has used; they are committed (auto-commit,
    /// and on [`GroupReader::commit`]). Records not marked used are read again by the group.
    pub fn done_with(&mut self, batch: &[Record]) -> Result<(), KafkaError> {
        for r in batch {
            self.consumer.store_offset(&r.topic, r.partition, r.offset + 1).map_err(client_err("store offset"))?;
            let e = self.used.entry((r.topic.clone(), r.partition)).or_insert(0);
            *e = (*e).max(r.offset + 1);
        }
        if self.last_commit.elapsed() >= Duration::from_secs(1) {
            self.commit_mode(CommitMode::Async)?;
        }
        Ok(())
    }

    /// Commits the offsets of the records used so far (not the consumer's position, which
    /// can be ahead of what the caller used).
    pub fn commit(&mut self) -> Result<(), KafkaError> {
        self.commit_mode(CommitMode::Sync)
    }

    fn commit_mode(&mut self, mode: CommitMode) -> Result<(), KafkaError> {
        self.last_commit = Instant::now();
        if self.used.is_empty() {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::new();
        for ((t, p), o) in &self.used {
            tpl.add_partition_offset(t, *p, Offset::Offset(*o)).map_err(client_err("commit"))?;
        }
        self.consumer.commit(&tpl, mode).map_err(client_err("commit"))
    }
}

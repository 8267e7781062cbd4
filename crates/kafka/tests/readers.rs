//! The readers against librdkafka's mock cluster (a real Kafka-protocol peer on loopback).

use std::time::Duration;

use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use tensorcdc_kafka::{read_bounded, GroupReader, KafkaError};

fn produce(brokers: &str, topic: &str, n: usize) {
    let p: BaseProducer = rdkafka::ClientConfig::new().set("bootstrap.servers", brokers).create().unwrap();
    for i in 0..n {
        let (k, v) = (format!("k{i}"), format!("v{i}"));
        p.send(BaseRecord::to(topic).key(&k).payload(&v).partition((i % 2) as i32)).unwrap();
        p.poll(Duration::ZERO);
    }
    p.flush(Duration::from_secs(10)).unwrap();
}

#[test]
fn bounded_reads_to_the_high_watermark() {
    let mock = MockCluster::new(1).unwrap();
    let b = mock.bootstrap_servers();
    mock.create_topic("t", 2, 1).unwrap();
    produce(&b, "t", 100);
    let mut all = Vec::new();
    let n = read_bounded(&b, "t", None, 0, false, &[], Duration::from_secs(10), |r| {
        all.push(String::from_utf8(r.value.unwrap()).unwrap());
        Ok(())
    })
    .unwrap();
    assert_eq!(n, 100);
    all.sort();
    let mut want: Vec<String> = (0..100).map(|i| format!("v{i}")).collect();
    want.sort();
    assert_eq!(all, want);
    // One partition from an offset: partition 0 holds the 50 even records.
    let mut offsets = Vec::new();
    read_bounded(&b, "t", Some(0), 45, false, &[], Duration::from_secs(10), |r| {
        offsets.push(r.offset);
        Ok(())
    })
    .unwrap();
    assert_eq!(offsets, (45..50).collect::<Vec<i64>>());
    // Settings are passed through to librdkafka, and a bad one is an error, not a panic.
    let e = read_bounded(&b, "t", None, 0, false, &[("no.such.setting".into(), "1".into())], Duration::from_secs(1), |_| Ok(())).unwrap_err();
    assert!(e.to_string().contains("no.such.setting"), "{e}");
}

#[test]
fn missing_topic_is_waited_for_then_reported() {
    let mock = MockCluster::new(1).unwrap();
    let e = read_bounded(&mock.bootstrap_servers(), "nope", None, 0, false, &[], Duration::from_secs(1), |_| Ok(())).unwrap_err();
    assert!(matches!(e, KafkaError::NoTopic { .. }), "{e}");
    assert!(e.to_string().contains("\"nope\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_resumes_after_used_offsets_and_ends_on_timeout() {
    let mock = MockCluster::new(1).unwrap();
    let b = mock.bootstrap_servers();
    mock.create_topic("g", 2, 1).unwrap();
    produce(&b, "g", 100);
    let topics = vec!["g".to_string()];
    let fast = [("session.timeout.ms".to_string(), "6000".to_string()), ("heartbeat.interval.ms".to_string(), "500".to_string())];
    // First member: uses 30 records, then leaves.
    let mut used = Vec::new();
    {
        let mut r = GroupReader::new(&b, &topics, "grp", "earliest", 1000, &fast).unwrap();
        while used.len() < 30 {
            let batch = r.next_batch(30 - used.len(), Duration::from_millis(5)).await.unwrap().expect("records");
            r.done_with(&batch).unwrap();
            used.extend(batch.into_iter().map(|x| String::from_utf8(x.value.unwrap()).unwrap()));
        }
        r.commit().unwrap();
    }
    // The same group resumes after them and ends after its stream timeout.
    let mut r = GroupReader::new(&b, &topics, "grp", "earliest", 1000, &fast).unwrap();
    let mut rest = Vec::new();
    while let Some(batch) = r.next_batch(64, Duration::from_millis(5)).await.unwrap() {
        r.done_with(&batch).unwrap();
        rest.extend(batch.into_iter().map(|x| String::from_utf8(x.value.unwrap()).unwrap()));
    }
    let missing: Vec<String> = (0..100).map(|i| format!("v{i}")).filter(|v| !used.contains(v) && !rest.contains(v)).collect();
    assert_eq!(used.len() + rest.len(), 100, "no record read twice or lost by the group: used {used:?}, missing {missing:?}");
    let mut all: Vec<String> = used.into_iter().chain(rest).collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 100);
    // Another group reads everything again.
    let mut other = GroupReader::new(&b, &topics, "grp2", "earliest", 1000, &fast).unwrap();
    let mut n = 0;
    while let Some(batch) = other.next_batch(64, Duration::from_millis(5)).await.unwrap() {
        n += batch.len();
    }
    assert_eq!(n, 100);
}

/// Records written and read back over SASL PLAIN (`security.protocol=SASL_PLAINTEXT`).
fn sasl_round_trip(brokers: &str, extra: &[(String, String)]) -> Result<u64, String> {
    let mut cfg = rdkafka::ClientConfig::new();
    cfg.set("bootstrap.servers", brokers);
    for (k, v) in extra {
        cfg.set(k, v);
    }
    let p: BaseProducer = cfg.create().map_err(|e| e.to_string())?;
    for i in 0..10 {
        p.send(BaseRecord::to("sasl").key(&format!("k{i}")).payload(&format!("v{i}"))).map_err(|(e, _)| e.to_string())?;
    }
    p.flush(Duration::from_secs(10)).map_err(|e| e.to_string())?;
    read_bounded(brokers, "sasl", None, 0, false, extra, Duration::from_secs(10), |_| Ok(())).map_err(|e| e.to_string())
}

/// SASL PLAIN against noida-db (librdkafka's mock cluster has no SASL): librdkafka is built
/// with SSL and SASL, so `security.protocol=SASL_PLAINTEXT|SASL_SSL` works.
#[test]
fn sasl_plain_against_a_real_broker() {
    let sasl: Vec<(String, String)> = [("security.protocol", "SASL_PLAINTEXT"), ("sasl.mechanism", "PLAIN"), ("sasl.username", "u"), ("sasl.password", "p")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let noida = tensorcdc_kafka::testing::Noida::start().unwrap();
    assert_eq!(sasl_round_trip(&noida.bootstrap(), &sasl), Ok(10));
    // SCRAM is compiled in too (it needs OpenSSL): the client accepts the mechanism.
    let scram = [("security.protocol", "SASL_SSL"), ("sasl.mechanism", "SCRAM-SHA-512"), ("sasl.username", "u"), ("sasl.password", "p")];
    let mut cfg = rdkafka::ClientConfig::new();
    cfg.set("bootstrap.servers", noida.bootstrap());
    for (k, v) in scram {
        cfg.set(k, v);
    }
    cfg.create::<BaseProducer>().expect("librdkafka built with SSL and SCRAM");
}

/// A bounded read from an offset that retention removed warns and reads what is left, or
/// with `strict` fails naming the partition, the offsets and the count missing. Neither
/// broker here implements DeleteRecords; librdkafka's mock cluster keeps about 5 MiB per
/// partition and drops older segments, which moves the partition's first offset as
/// retention does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounded_read_from_deleted_offsets_warns_or_fails() {
    let mock = MockCluster::new(1).unwrap();
    let brokers = mock.bootstrap_servers();
    mock.create_topic("t", 1, 1).unwrap();
    let p: BaseProducer = rdkafka::ClientConfig::new().set("bootstrap.servers", &brokers).create().unwrap();
    let value = vec![7u8; 100_000];
    for i in 0..150 {
        p.send(BaseRecord::to("t").key(&format!("k{i}")).payload(&value).partition(0)).unwrap();
        p.poll(Duration::ZERO);
    }
    p.flush(Duration::from_secs(10)).unwrap();
    let c: rdkafka::consumer::BaseConsumer = rdkafka::ClientConfig::new().set("bootstrap.servers", &brokers).create().unwrap();
    let (low, high) = rdkafka::consumer::Consumer::fetch_watermarks(&c, "t", 0, Duration::from_secs(5)).unwrap();
    assert!(low > 0 && high == 150, "the mock cluster kept every record ({low}..{high})");
    let b = brokers.clone();
    let n = tokio::task::spawn_blocking(move || read_bounded(&b, "t", None, 0, false, &[], Duration::from_secs(10), |_| Ok(())).unwrap()).await.unwrap();
    assert_eq!(n as i64, high - low);
    let b = brokers.clone();
    let e = tokio::task::spawn_blocking(move || read_bounded(&b, "t", None, 0, true, &[], Duration::from_secs(10), |_| Ok(())).unwrap_err()).await.unwrap();
    assert!(matches!(e, KafkaError::Gap { partition: 0, asked: 0, first, missing, .. } if first == low && missing == low), "{e}");
    assert!(e.to_string().contains(&format!("t/0: offset 0 is no longer in the topic (it starts at {low}; {low} records")), "{e}");
}

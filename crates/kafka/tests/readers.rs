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
    let n = read_bounded(&b, "t", None, 0, &[], Duration::from_secs(10), |r| {
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
    read_bounded(&b, "t", Some(0), 45, &[], Duration::from_secs(10), |r| {
        offsets.push(r.offset);
        Ok(())
    })
    .unwrap();
    assert_eq!(offsets, (45..50).collect::<Vec<i64>>());
    // Settings are passed through to librdkafka, and a bad one is an error, not a panic.
    let e = read_bounded(&b, "t", None, 0, &[("no.such.setting".into(), "1".into())], Duration::from_secs(1), |_| Ok(())).unwrap_err();
    assert!(e.to_string().contains("no.such.setting"), "{e}");
}

#[test]
fn missing_topic_is_waited_for_then_reported() {
    let mock = MockCluster::new(1).unwrap();
    let e = read_bounded(&mock.bootstrap_servers(), "nope", None, 0, &[], Duration::from_secs(1), |_| Ok(())).unwrap_err();
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

//! Test support: librdkafka's mock cluster (a real Kafka-protocol peer on a loopback port)
//! for separate processes. Prints `bootstrap.servers` on the first line of stdout, creates
//! the topics named as `NAME[:PARTITIONS]` arguments, and runs until stdin closes.
//!
//! Usage: tensorcdc-mock-kafka [--brokers N] [TOPIC[:PARTITIONS] ...]

use std::io::{BufRead, Write};

use rdkafka::mocking::MockCluster;

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut brokers = 1;
    if args.first().map(String::as_str) == Some("--brokers") {
        brokers = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(1);
        args.drain(..2.min(args.len()));
    }
    let cluster = match MockCluster::new(brokers) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: cannot start the mock cluster: {e}");
            std::process::exit(1);
        }
    };
    for t in &args {
        let (name, parts) = t.split_once(':').map(|(n, p)| (n, p.parse().unwrap_or(1))).unwrap_or((t.as_str(), 1));
        if let Err(e) = cluster.create_topic(name, parts, 1) {
            eprintln!("error: create topic {name}: {e}");
            std::process::exit(1);
        }
    }
    println!("{}", cluster.bootstrap_servers());
    let _ = std::io::stdout().flush();
    // Run until stdin closes (the parent exits or closes the pipe).
    for line in std::io::stdin().lock().lines() {
        if line.is_err() {
            break;
        }
    }
}

"""Reference: TF-IO reading a CSV topic into batches, as the blog's training cell does
(tfio.IODataset.from_kafka + tf.io.decode_csv + batch(64)). Prints one JSON line."""
import json, sys, time

import tensorflow as tf
import tensorflow_io as tfio


def decode_kafka_item(item):
    # tensorflow-io 0.37's from_kafka yields a KafkaIODataset item with message and key.
    message = tf.io.decode_csv(item.message, [[0.0] for _ in range(784)])
    key = tf.strings.to_number(item.key)
    return (message, key)


def main():
    servers, topic, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
    rates = []
    for _ in range(runs):
        t = time.perf_counter()
        ds = tfio.IODataset.from_kafka(topic, partition=0, start=0, servers=servers,
                                       configuration=["session.timeout.ms=7000", "max.poll.interval.ms=8000"])
        print(ds.element_spec, file=sys.stderr)
        ds = ds.map(decode_kafka_item).batch(64)
        n = 0
        for message, key in ds:
            n += int(key.shape[0])
        rates.append(n / (time.perf_counter() - t))
    print(json.dumps({"records": n, "rates": rates}))


if __name__ == "__main__":
    main()

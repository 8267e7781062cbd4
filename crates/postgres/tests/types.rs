//! Every type from the snapshot and from the stream (binary and text tuples) against golden
//! Debezium events (`tests/golden/types.json`, each case citing Debezium's source): the
//! field schema and the value must equal the golden ones, so snapshot and stream agree.

mod common;

use std::collections::BTreeMap;

use common::*;
use serde_json::Value as J;
use tensorcdc_change::json::{Converter, ConverterConfig, JsonWriter};
use tensorcdc_change::{Message, Op, Payload};
use tensorcdc_postgres::CaptureConfig;

const SETUP: &str = "CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
    CREATE DOMAIN posint AS integer CHECK (VALUE > 0);
    CREATE DOMAIN price AS numeric(4,2);";

fn golden() -> J {
    serde_json::from_str(include_str!("golden/types.json")).expect("golden/types.json is JSON")
}

/// A capture config from connector properties, as a registration file gives them.
fn props_config(pg: &tensorcdc_localpg::LocalPg, table: &str, slot: &str, binary_tuples: bool, settings: &J) -> CaptureConfig {
    let mut props = BTreeMap::from([
        ("database.url".to_string(), pg.url("postgres")),
        ("table.include.list".to_string(), format!("public.{table}")),
        ("slot.name".to_string(), slot.to_string()),
        ("binary.tuples".to_string(), binary_tuples.to_string()),
        ("offset.storage.file.filename".to_string(), offsets_file(pg, slot).display().to_string()),
    ]);
    for (k, v) in settings.as_object().unwrap() {
        props.insert(k.clone(), v.as_str().unwrap().to_string());
    }
    let (cfg, unknown) = CaptureConfig::from_properties(&props).unwrap();
    assert!(unknown.is_empty(), "unknown keys {unknown:?}");
    cfg
}

/// The `after` field schemas (by name) and values of a message, as the JSON converter writes them.
fn after_json(m: &Message, cfg: &ConverterConfig) -> (BTreeMap<String, J>, J) {
    let mut w = JsonWriter::new(ConverterConfig { value: Converter::Json { schemas: true }, ..*cfg });
    let v: J = serde_json::from_slice(&w.serialize(m).1.unwrap()).unwrap();
    let fields = v["schema"]["fields"].as_array().unwrap().iter().find(|f| f["field"] == "after").unwrap()["fields"].clone();
    let schemas = fields.as_array().unwrap().iter().map(|f| (f["field"].as_str().unwrap().to_string(), f.clone())).collect();
    (schemas, v["payload"]["after"].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_as_debezium_writes_it_from_snapshot_and_stream() {
    let pg = start_pg(&[]);
    let c = client(&pg).await;
    c.batch_execute(SETUP).await.unwrap();
    let g = golden();
    let mut failures = Vec::new();
    let mut checked = 0;
    for group in g["groups"].as_array().unwrap() {
        let name = group["name"].as_str().unwrap();
        let cases = group["cases"].as_array().unwrap();
        let cols: Vec<String> = cases.iter().enumerate().map(|(i, k)| format!("c{i} {}", k["type"].as_str().unwrap())).collect();
        let values: Vec<&str> = cases.iter().map(|k| k["literal"].as_str().unwrap()).collect();
        for binary in [true, false] {
            let table = format!("t_{name}_{binary}");
            c.batch_execute(&format!("CREATE TABLE {table}(id integer PRIMARY KEY, {})", cols.join(", "))).await.unwrap();
            let insert = |id: i32| format!("INSERT INTO {table} VALUES ({id}, {})", values.join(", "));
            c.batch_execute(&insert(1)).await.unwrap();
            let cfg = props_config(&pg, &table, &format!("slot_{name}_{binary}"), binary, &group["settings"]);
            let conv = cfg.converter;
            let mut run = spawn(cfg, identity());
            let snap = run.take(1, 60).await.remove(0);
            run.wait_streaming().await;
            c.batch_execute(&insert(2)).await.unwrap();
            let streamed = run.take(1, 60).await.remove(0);
            run.stop().await;
            for (m, op, path) in [(&snap, Op::Read, "snapshot"), (&streamed, Op::Create, if binary { "binary stream" } else { "text stream" })] {
                let Payload::Envelope(e) = &m.payload else { panic!("{name}: expected an envelope") };
                assert_eq!(e.op, op);
                let (schemas, after) = after_json(m, &conv);
                for (i, case) in cases.iter().enumerate() {
                    let col = format!("c{i}");
                    let mut want_schema = case["schema"].clone();
                    if !want_schema.is_null() {
                        want_schema["field"] = J::from(col.clone());
                    }
                    let what = format!("{name} / {path}: {} {}", case["type"].as_str().unwrap(), case["literal"].as_str().unwrap());
                    // A null golden schema: Debezium leaves the column out.
                    let left_out_as_debezium_does = want_schema.is_null() && !schemas.contains_key(&col);
                    if !left_out_as_debezium_does && schemas.get(&col) != Some(&want_schema) {
                        failures.push(format!("{what}: schema {} != golden {}", schemas.get(&col).map_or("none".into(), |s| s.to_string()), want_schema));
                    }
                    if after[&col] != case["value"] {
                        failures.push(format!("{what}: value {} != golden {}", after[&col], case["value"]));
                    }
                    checked += 1;
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} of {checked} checks differ from the golden events:\n{}", failures.len(), failures.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn types_without_a_binary_decoder_arrive_as_their_text() {
    let pg = start_pg(&[]);
    let c = client(&pg).await;
    // pg_lsn has no binary decoder here: present at start, the stream asks for text tuples.
    c.batch_execute("CREATE TABLE mnist_lsn(id int PRIMARY KEY, l pg_lsn, n numeric(5,1)); INSERT INTO mnist_lsn VALUES (1, '16/B374D848', 1.5)")
        .await
        .unwrap();
    let mut run = spawn(config(&pg, "nobin1"), identity());
    let snap = run.take(1, 60).await;
    run.wait_streaming().await;
    // A table with such a type created while binary tuples stream: capture restarts in text.
    c.batch_execute("INSERT INTO mnist_lsn VALUES (2, '0/10', 2.5)").await.unwrap();
    let streamed = run.take(1, 60).await;
    run.stop().await;
    let get = |m: &Message, f: &str| match &m.payload {
        Payload::Envelope(e) => e.after.as_ref().unwrap().get(f).cloned().unwrap(),
        p => panic!("{p:?}"),
    };
    assert_eq!(get(&snap[0], "l"), tensorcdc_change::Value::String("16/B374D848".into()));
    assert_eq!(get(&streamed[0], "l"), tensorcdc_change::Value::String("0/10".into()));

    let mut cfg = config(&pg, "nobin2");
    cfg.include = tensorcdc_postgres::config::parse_table_list("table.include.list", "public.mnist_(vec|ok)").unwrap();
    c.batch_execute("CREATE TABLE mnist_ok(id int PRIMARY KEY, x float8[])").await.unwrap();
    let mut run = spawn(cfg, identity());
    run.wait_streaming().await;
    c.batch_execute("CREATE TABLE mnist_vec(id int PRIMARY KEY, v tsvector, x float8[]); INSERT INTO mnist_vec VALUES (1, 'b a', '{1.5,NaN}')").await.unwrap();
    c.batch_execute("INSERT INTO mnist_ok VALUES (7, '{2}')").await.unwrap();
    let msgs = run.take(2, 60).await;
    run.stop().await;
    assert_eq!(get(&msgs[0], "v"), tensorcdc_change::Value::String("'a' 'b'".into()));
    assert_eq!(format!("{:?}", get(&msgs[0], "x")), "Array([Float64(1.5), Float64(NaN)])");
    assert_eq!(get(&msgs[1], "id"), tensorcdc_change::Value::Int32(7));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numeric_nan_in_precise_mode_stops_with_the_column_named() {
    let pg = start_pg(&[]);
    let c = client(&pg).await;
    c.batch_execute("CREATE TABLE mnist_nan(id int PRIMARY KEY, amount numeric)").await.unwrap();
    let run = spawn(config(&pg, "nan"), identity());
    run.wait_streaming().await;
    c.batch_execute("INSERT INTO mnist_nan VALUES (1, 'NaN')").await.unwrap();
    let r = tokio::time::timeout(std::time::Duration::from_secs(30), run.handle).await.expect("capture stops").unwrap();
    let e = r.unwrap_err().to_string();
    assert!(e.contains("amount") && e.contains("decimal.handling.mode") && e.contains("mnist_nan"), "{e}");
}

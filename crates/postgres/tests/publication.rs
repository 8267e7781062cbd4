//! Publications as Debezium handles them (`publication.autocreate.mode`), and the one a user
//! who moves from Debezium already has: `dbz_publication` left by a `filtered` Debezium
//! connector on another table. In `filtered` mode the included tables it lacks are added and
//! every change of them is streamed; in `all_tables` and `disabled` mode the capture fails,
//! naming the tables the publication lacks, instead of streaming nothing of them in silence.

mod common;

use common::*;
use tensorcdc_postgres::config::PublicationMode;

async fn publication_tables(c: &tokio_postgres::Client, name: &str) -> Vec<String> {
    c.query("SELECT schemaname || '.' || tablename FROM pg_publication_tables WHERE pubname = $1 ORDER BY 1", &[&name])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publication_left_on_another_table() {
    let pg = start_pg(&[]);
    let c = client(&pg).await;
    c.batch_execute(CREATE).await.unwrap();
    // What a Debezium connector with publication.autocreate.mode=filtered on `other` leaves.
    c.batch_execute("CREATE TABLE other(id serial PRIMARY KEY, v int); CREATE PUBLICATION dbz_publication FOR TABLE public.other").await.unwrap();
    insert_rows(&c, "mnist_train", 0, 3).await;

    for mode in [PublicationMode::AllTables, PublicationMode::Disabled] {
        let mut cfg = config(&pg, "p");
        cfg.publication_mode = mode;
        let e = run_once(cfg).await.unwrap_err().to_string();
        assert!(
            e.contains("publication.autocreate.mode")
                && e.contains("\"dbz_publication\" exists for other tables (public.other) and lacks public.mnist_train")
                && e.contains("ALTER PUBLICATION \"dbz_publication\" ADD TABLE public.mnist_train"),
            "{mode:?}: {e}"
        );
        assert_eq!(publication_tables(&c, "dbz_publication").await, ["public.other"], "{mode:?} changes nothing");
    }
    let slots: i64 = c.query_one("SELECT count(*) FROM pg_replication_slots", &[]).await.unwrap().get(0);
    assert_eq!(slots, 0, "no slot is made by a capture that refuses its publication");

    // filtered: the table is added, the snapshot and every change after it arrive.
    let mut cfg = config(&pg, "p");
    cfg.publication_mode = PublicationMode::Filtered;
    let mut run = spawn(cfg, identity());
    let snapshot = run.take(3, 30).await;
    assert_eq!(snapshot.iter().filter_map(id_of).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(publication_tables(&c, "dbz_publication").await, ["public.mnist_train", "public.other"]);
    run.wait_streaming().await;
    insert_rows(&c, "mnist_train", 3, 300).await;
    c.batch_execute("INSERT INTO other(v) VALUES (1)").await.unwrap();
    let streamed = run.take(300, 60).await;
    assert_eq!(streamed.iter().filter_map(id_of).collect::<Vec<_>>(), (4..=303).collect::<Vec<_>>(), "every change of the captured table");
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_mode_makes_or_takes_its_publication() {
    let pg = start_pg(&[]);
    let c = client(&pg).await;
    c.batch_execute(CREATE).await.unwrap();
    c.batch_execute("CREATE TABLE other(id serial PRIMARY KEY, v int)").await.unwrap();
    // filtered, none yet: FOR TABLE the included tables only.
    let mut cfg = config(&pg, "f");
    cfg.publication_name = "pub_filtered".into();
    cfg.publication_mode = PublicationMode::Filtered;
    cfg.snapshot_mode = tensorcdc_postgres::SnapshotMode::InitialOnly;
    run_once(cfg).await.unwrap();
    assert_eq!(publication_tables(&c, "pub_filtered").await, ["public.mnist_train"]);
    // all_tables, none yet: FOR ALL TABLES.
    let mut cfg = config(&pg, "a");
    cfg.publication_name = "pub_all".into();
    cfg.snapshot_mode = tensorcdc_postgres::SnapshotMode::InitialOnly;
    run_once(cfg).await.unwrap();
    let all: bool = c.query_one("SELECT puballtables FROM pg_publication WHERE pubname = 'pub_all'", &[]).await.unwrap().get(0);
    assert!(all);
    // disabled: the publication must exist; one that has the tables is used as it is.
    let mut cfg = config(&pg, "d");
    cfg.publication_name = "pub_missing".into();
    cfg.publication_mode = PublicationMode::Disabled;
    cfg.snapshot_mode = tensorcdc_postgres::SnapshotMode::InitialOnly;
    let e = run_once(cfg.clone()).await.unwrap_err().to_string();
    assert!(e.contains("disabled, and publication \"pub_missing\" does not exist"), "{e}");
    cfg.publication_name = "pub_filtered".into();
    run_once(cfg.clone()).await.unwrap();
    assert_eq!(publication_tables(&c, "pub_filtered").await, ["public.mnist_train"]);
    // A partitioned table published by its parent: its partition is in it too (the catalog's
    // view lists only the leaves), in every mode, again and again.
    c.batch_execute(
        "CREATE TABLE parts(id int PRIMARY KEY, v int) PARTITION BY RANGE (id); CREATE TABLE parts_1 PARTITION OF parts FOR VALUES FROM (0) TO (100);
         CREATE PUBLICATION pub_parts FOR TABLE parts",
    )
    .await
    .unwrap();
    for mode in [PublicationMode::Disabled, PublicationMode::Filtered, PublicationMode::Filtered] {
        let mut cfg = cfg.clone();
        cfg.publication_name = "pub_parts".into();
        cfg.publication_mode = mode;
        cfg.include = tensorcdc_postgres::config::parse_table_list("table.include.list", "public.parts.*").unwrap();
        run_once(cfg).await.unwrap_or_else(|e| panic!("{mode:?}: {e}"));
    }
}

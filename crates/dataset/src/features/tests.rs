//! The feature spec's unit tests: fitting, encoding every kind, labels it refuses, notes.

use super::*;

fn rec(key: &str, cells: &[(&str, Cell)]) -> Record {
    Record { key: Some(key.into()), cells: cells.iter().map(|(n, c)| (n.to_string(), c.clone())).collect() }
}

fn rows() -> Vec<Record> {
    vec![
        rec(
            "1",
            &[
                ("id", Cell::Int(1)),
                ("income", Cell::Number(10.0)),
                ("owner", Cell::Bool(true)),
                ("color", Cell::Text("E".into())),
                ("v", Cell::Array(vec![Some(1.0), Some(2.0)])),
                ("defaulted", Cell::Bool(false)),
            ],
        ),
        rec(
            "2",
            &[
                ("id", Cell::Int(2)),
                ("income", Cell::Number(30.0)),
                ("owner", Cell::Bool(false)),
                ("color", Cell::Text("D".into())),
                ("v", Cell::Array(vec![Some(3.0), None])),
                ("defaulted", Cell::Bool(true)),
            ],
        ),
        rec(
            "3",
            &[
                ("id", Cell::Int(3)),
                ("income", Cell::Null),
                ("owner", Cell::Bool(true)),
                ("color", Cell::Text("E".into())),
                ("v", Cell::Array(vec![Some(5.0), Some(4.0)])),
                ("defaulted", Cell::Bool(false)),
            ],
        ),
    ]
}

#[test]
fn fits_and_encodes_every_kind() {
    let rows = rows();
    let opts = SpecOptions { label: "defaulted".into(), exclude: vec!["id".into()], ..Default::default() };
    let spec = FeatureSpec::fit(rows.iter(), &opts).unwrap();
    assert_eq!(spec.task, Task::Classification);
    assert_eq!(spec.classes, ["false", "true"]);
    let kinds: Vec<(&str, Kind, usize)> = spec.columns.iter().map(|c| (c.name.as_str(), c.kind, c.width)).collect();
    assert_eq!(kinds, [("income", Kind::Number, 1), ("owner", Kind::Boolean, 1), ("color", Kind::Category, 3), ("v", Kind::Array, 2)]);
    assert_eq!(spec.width(), 7);
    // income: mean 20, population deviation 10.
    let mut out = Vec::new();
    spec.encode(&rows[1], &mut out).unwrap_err();
    assert!(out.is_empty(), "nothing appended for a skipped row");
    spec.encode(&rows[0], &mut out).unwrap();
    assert_eq!(out, [-1.0, 1.0, 0.0, 1.0, 0.0, 1.0, 2.0]);
    assert_eq!(spec.target(&rows[1]), Ok(Target::Class(1)));
    // NULLs are skipped by default, named; an unseen category takes the last slot.
    assert_eq!(spec.encode(&rows[2], &mut out), Err(EncodeError::Null("income".into())));
    let mut unseen = rows[0].clone();
    unseen.cells[3].1 = Cell::Text("J".into());
    out.clear();
    spec.encode(&unseen, &mut out).unwrap();
    assert_eq!(&out[2..5], [0.0, 0.0, 1.0]);
    // ... and is said, as is a number that came as text.
    assert!(spec.notes(&rows[0]).is_empty());
    unseen.cells[1].1 = Cell::Text("0.31".into());
    assert_eq!(
        spec.notes(&unseen),
        ["column \"income\": the number came as text \"0.31\"", "column \"color\": \"J\" was never seen in training (known: D, E)"]
    );
    // Imputed: the mean (0 after scaling), the training mean of each array element.
    let spec = FeatureSpec::fit(rows.iter(), &SpecOptions { nulls: Nulls::Impute, ..opts.clone() }).unwrap();
    out.clear();
    spec.encode(&rows[2], &mut out).unwrap();
    assert_eq!(out[0], 0.0);
    out.clear();
    spec.encode(&rows[1], &mut out).unwrap();
    assert_eq!(out[6], 3.0);
}

#[test]
fn labels_that_cannot_be_classes_are_refused() {
    // An array or bytes label: refused at once (more rows will not help).
    let opts = SpecOptions { label: "v".into(), exclude: vec!["id".into()], ..Default::default() };
    let e = FeatureSpec::fit(rows().iter(), &opts).unwrap_err();
    assert!(matches!(&e, FitError::Invalid(m) if m.contains("label \"v\" holds an array of 2")), "{e}");
    // 20 rows, each with its own text label (a timestamp as Debezium's string): refused;
    // 19 such rows are still taken (a small table may have that many classes).
    let many = |n: usize| -> Vec<Record> {
        (0..n).map(|i| rec(&i.to_string(), &[("x", Cell::Number(i as f64)), ("at", Cell::Text(format!("2026-12-04T10:00:{i:02}Z")))])).collect()
    };
    let opts = SpecOptions { label: "at".into(), ..Default::default() };
    let e = FeatureSpec::fit(many(20).iter(), &opts).unwrap_err();
    assert!(matches!(&e, FitError::Invalid(m) if m.contains("different value in each of the 20 rows")), "{e}");
    assert_eq!(FeatureSpec::fit(many(19).iter(), &opts).unwrap().classes.len(), 19);
}

#[test]
fn regression_scaling_and_errors() {
    let rows = rows();
    let opts = SpecOptions { label: "income".into(), features: Some(vec!["v".into(), "owner".into()]), nulls: Nulls::Impute, ..Default::default() };
    let spec = FeatureSpec::fit(rows.iter(), &opts).unwrap();
    assert_eq!((spec.task, spec.outputs()), (Task::Regression, 1));
    assert_eq!(spec.target(&rows[1]), Ok(Target::Value(30.0)));
    assert_eq!(spec.target(&rows[2]), Err(EncodeError::Null("income".into())));
    let spec = FeatureSpec::fit(
        rows.iter(),
        &SpecOptions { label: "defaulted".into(), features: Some(vec!["income".into()]), scaling: Scaling::MinMax, ..Default::default() },
    )
    .unwrap();
    let mut out = Vec::new();
    spec.encode(&rows[1], &mut out).unwrap();
    assert_eq!(out, [1.0]);
    let e = FeatureSpec::fit(rows.iter(), &SpecOptions { label: "nope".into(), ..Default::default() }).unwrap_err();
    assert!(!e.needs_more_rows());
    let e = e.to_string();
    assert!(e.contains("no label column \"nope\"") && e.contains("income"), "{e}");
    // One class so far: a stream waits for more rows.
    let e = FeatureSpec::fit(rows[..1].iter(), &SpecOptions { label: "defaulted".into(), ..Default::default() }).unwrap_err();
    assert!(e.needs_more_rows() && e.to_string().contains("1 class(es)"), "{e}");
    // A feature column no row has is a typo, not a wait.
    let e = FeatureSpec::fit(rows.iter(), &SpecOptions { label: "defaulted".into(), features: Some(vec!["incme".into()]), ..Default::default() }).unwrap_err();
    assert!(!e.needs_more_rows() && e.to_string().contains("no feature column \"incme\""), "{e}");
    let mut wrong = rows[0].clone();
    wrong.cells[1].1 = Cell::Text("lots".into());
    assert!(matches!(spec.encode(&wrong, &mut out), Err(EncodeError::Kind { column, .. }) if column == "income"));
}

#[test]
fn mnist_is_a_preset() {
    let spec = FeatureSpec::mnist();
    let r = rec("7", &[("id", Cell::Int(7)), ("label", Cell::Int(3)), ("pixels", Cell::Bytes(vec![255; 784]))]);
    let mut out = Vec::new();
    spec.encode(&r, &mut out).unwrap();
    assert_eq!((out.len(), out[0]), (784, 1.0));
    assert_eq!(spec.target(&r), Ok(Target::Class(3)));
    // The same spec round-trips through JSON (checkpoints keep it).
    let back: FeatureSpec = serde_json::from_str(&serde_json::to_string(&spec).unwrap()).unwrap();
    assert_eq!(back, spec);
}

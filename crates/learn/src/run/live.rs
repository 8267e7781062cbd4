//! `tensorcdc run`'s live page: `GET /` (live.html) polls `GET /api/state` every second and
//! draws the held-out score of each version over time (version changes marked, refused
//! versions hollow), the commit-to-prediction latency histogram, and the latest predictions,
//! with their images when the features are 28x28 pixels.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use crate::VersionMeta;
use serde::Serialize;

/// Upper bounds of the latency histogram's buckets, ms (the last one catches the rest).
const BUCKETS_MS: [f64; 12] = [1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 5000.0, f64::INFINITY];
/// Predictions kept for the page.
const RECENT: usize = 16;

#[derive(Serialize, Clone)]
struct Point {
    version: u64,
    published_ms: i64,
    accuracy: Option<f64>,
    loss: f64,
    rows: usize,
    serving: bool,
    examples_seen: u64,
}

#[derive(Serialize, Clone)]
pub struct Recent {
    pub key: String,
    pub prediction: String,
    pub probability: Option<f32>,
    pub version: u64,
    pub latency_ms: Option<f64>,
    /// 784 grey levels when the row's features are a 28x28 image.
    pub pixels: Option<Vec<u8>>,
}

#[derive(Serialize, Default)]
struct State {
    table: String,
    label: String,
    versions: Vec<Point>,
    recent: VecDeque<Recent>,
    latency_le_ms: Vec<f64>,
    latency_counts: Vec<u64>,
    predictions: u64,
}

/// The page's state, shared with the loop.
#[derive(Clone, Default)]
pub struct Live(Arc<Mutex<State>>);

impl Live {
    pub fn new(table: &str, label: &str) -> Self {
        let s = State {
            table: table.into(),
            label: label.into(),
            latency_le_ms: BUCKETS_MS.iter().map(|b| if b.is_finite() { *b } else { -1.0 }).collect(),
            latency_counts: vec![0; BUCKETS_MS.len()],
            ..Default::default()
        };
        Live(Arc::new(Mutex::new(s)))
    }

    pub fn version(&self, m: &VersionMeta) {
        let p = Point {
            version: m.version,
            published_ms: m.published_ms,
            accuracy: m.score.accuracy,
            loss: m.score.loss,
            rows: m.score.rows,
            serving: m.serving,
            examples_seen: m.examples_seen,
        };
        self.0.lock().expect("live").versions.push(p);
    }

    /// A prediction counted (and its latency), not shown among the latest.
    pub fn counted(&self, latency_ms: Option<f64>) {
        let mut s = self.0.lock().expect("live");
        s.predictions += 1;
        if let Some(l) = latency_ms {
            let i = BUCKETS_MS.iter().position(|b| l <= *b).unwrap_or(BUCKETS_MS.len() - 1);
            s.latency_counts[i] += 1;
        }
    }

    /// How many of a batch's predictions the page shows (the last ones).
    pub const SHOWN: usize = RECENT;

    pub fn prediction(&self, r: Recent) {
        let mut s = self.0.lock().expect("live");
        s.predictions += 1;
        if let Some(l) = r.latency_ms {
            let i = BUCKETS_MS.iter().position(|b| l <= *b).unwrap_or(BUCKETS_MS.len() - 1);
            s.latency_counts[i] += 1;
        }
        if s.recent.len() == RECENT {
            s.recent.pop_back();
        }
        s.recent.push_front(r);
    }

    fn json(&self) -> String {
        serde_json::to_string(&*self.0.lock().expect("live")).expect("state serialises")
    }

    /// `/` and `/api/state` on `app`.
    pub fn routes(&self, app: axum::Router) -> axum::Router {
        let me = self.clone();
        app.route("/", axum::routing::get(|| async { axum::response::Html(include_str!("live.html")) })).route(
            "/api/state",
            axum::routing::get(move || {
                let me = me.clone();
                async move { ([(axum::http::header::CONTENT_TYPE, "application/json")], me.json()) }
            }),
        )
    }
}

/// The grey levels of a 784-feature row, stretched to 0..255, for the page's image.
pub fn pixels(x: &[f32]) -> Option<Vec<u8>> {
    if x.len() != 784 {
        return None;
    }
    let (lo, hi) = x.iter().fold((f32::MAX, f32::MIN), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
    let span = if hi > lo { hi - lo } else { 1.0 };
    Some(x.iter().map(|v| (((v - lo) / span) * 255.0).round() as u8).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_predictions_are_bounded_and_latency_lands_in_its_bucket() {
        let live = Live::new("t", "y");
        for i in 0..40 {
            live.prediction(Recent { key: i.to_string(), prediction: "1".into(), probability: None, version: 1, latency_ms: Some(3.0), pixels: None });
        }
        let v: serde_json::Value = serde_json::from_str(&live.json()).unwrap();
        assert_eq!(v["recent"].as_array().unwrap().len(), RECENT);
        assert_eq!(v["recent"][0]["key"], "39", "newest first");
        assert_eq!(v["latency_counts"][2], 40, "3 ms is in the 5 ms bucket");
        assert_eq!(v["predictions"], 40);
        assert_eq!(pixels(&[0.5; 784]).unwrap()[0], 0);
        assert_eq!(pixels(&(0..784).map(|i| i as f32).collect::<Vec<_>>()).unwrap()[783], 255);
        assert!(pixels(&[1.0; 10]).is_none());
    }
}

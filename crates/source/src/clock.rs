//! The process's clock and stop signal, shared by every long-running reader (`predict
//! --follow`, `capture`, the run loop): wall-clock milliseconds, the one meaning of latency
//! (commit to prediction, for changes committed while the process ran), and SIGINT/SIGTERM
//! as a watch channel.

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs_f64() * 1e3
}

/// Whole milliseconds since the Unix epoch.
pub fn unix_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

static STARTED_MS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();

/// Marks the process's start (called first thing in `main`): the latency rule below needs it.
pub fn mark_start() {
    STARTED_MS.get_or_init(now_ms);
}

/// Seconds since [`mark_start`].
pub fn since_start_s() -> f64 {
    (now_ms() - *STARTED_MS.get_or_init(now_ms)) / 1e3
}

/// The one meaning of latency: commit-to-prediction time of a change that committed while this
/// process ran. A snapshot row, or a row of the backlog that committed before the process
/// started, has none (it is counted apart: `/metrics`, the summaries).
pub fn live_latency_ms(commit_ts_ms: Option<i64>, snapshot: bool, done_ms: f64) -> Option<f64> {
    let started = *STARTED_MS.get_or_init(now_ms);
    match commit_ts_ms {
        Some(c) if !snapshot && c as f64 >= started => Some((done_ms - c as f64).max(0.0)),
        _ => None,
    }
}

/// True once SIGINT (Ctrl-C) or SIGTERM arrives. Call inside a Tokio runtime.
pub fn shutdown_signal() -> tokio::sync::watch::Receiver<bool> {
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        let _ = tx.send(true);
    });
    rx
}

/// Resolves once the watch says true (never, when its sender is gone).
pub async fn wait_true(mut rx: tokio::sync::watch::Receiver<bool>) {
    while !*rx.borrow() {
        if rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

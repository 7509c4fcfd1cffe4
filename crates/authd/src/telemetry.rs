//! Logs (tracing) and metrics (the Prometheus recorder).

use std::ffi::OsStr;
use std::io::IsTerminal as _;
use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

use crate::settings::LogFormat;

/// Installs the global tracing subscriber: filter from `RUST_LOG` (default `info`), output
/// as text or JSON lines on stderr. Does nothing when a subscriber is already installed.
///
/// Text is coloured only when stderr (where the logs go) is a terminal and `NO_COLOR` is
/// not set ([`use_colour`]): colour codes in a file, a pipe or a journal are noise that
/// every reader has to strip. JSON never has any.
pub fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Text => builder
            .with_ansi(use_colour(
                std::io::stderr().is_terminal(),
                std::env::var_os("NO_COLOR").as_deref(),
            ))
            .try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    // An error only means a subscriber exists already (tests, embedding apps).
    drop(result);
}

/// Whether text logs are coloured: only when their stream is a terminal, and never when
/// `NO_COLOR` is set to anything but the empty string (<https://no-color.org>).
pub fn use_colour(writer_is_terminal: bool, no_color: Option<&OsStr>) -> bool {
    writer_is_terminal && no_color.is_none_or(OsStr::is_empty)
}

static RECORDER: OnceLock<PrometheusHandle> = OnceLock::new();

/// Buckets (seconds) of every `*_seconds` histogram: from a memory hit (tens of
/// microseconds) through a Redis or SQL round trip to a stalled request. Buckets, unlike
/// the exporter's default summaries, add up across instances in `histogram_quantile`.
pub const LATENCY_BUCKETS: [f64; 16] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 10.0,
];

/// The process-wide Prometheus recorder, installed on first use.
///
/// Call it before building any store: the tiers create their counters and histograms when
/// they are constructed, and metrics created before a recorder exists go nowhere. When
/// another recorder was installed first (an embedding app), the handle renders an empty
/// registry and a warning says so.
pub fn metrics_handle() -> PrometheusHandle {
    RECORDER
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), &LATENCY_BUCKETS)
                .unwrap_or_else(|_| PrometheusBuilder::new());
            match builder.install_recorder() {
                Ok(handle) => handle,
                Err(e) => {
                    tracing::warn!(error = %e, "a metrics recorder is already installed; /metrics will be empty");
                    PrometheusBuilder::new().build_recorder().handle()
                }
            }
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(use_colour(true, None));
        // The standard: an empty NO_COLOR does not count as set.
        assert!(use_colour(true, Some(OsStr::new(""))));
        assert!(!use_colour(true, Some(OsStr::new("1"))));
        assert!(!use_colour(true, Some(OsStr::new("false"))));
        // A file, a pipe, the journal: never.
        assert!(!use_colour(false, None));
        assert!(!use_colour(false, Some(OsStr::new(""))));
        assert!(!use_colour(false, Some(OsStr::new("1"))));
    }
}

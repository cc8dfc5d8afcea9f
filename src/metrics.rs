//! Prometheus metrics, rendered in the text exposition format by hand (a handful of
//! counters, one histogram and a gauge family do not need a library).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Mutex, OnceLock};

use tokio::sync::watch;

use crate::chain::sync::SyncState;

/// Upper bounds (seconds) of the latency histogram's buckets.
const LATENCY_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Default)]
struct State {
    requests: BTreeMap<String, u64>,
    responses: BTreeMap<String, u64>,
    latency_counts: [u64; LATENCY_BUCKETS.len()],
    latency_sum: f64,
    latency_count: u64,
    proofs_verified: u64,
    proofs_failed: u64,
    weights: BTreeMap<String, f64>,
    rounds: u64,
    weight_submissions: BTreeMap<&'static str, u64>,
    /// Set once a release manifest has been polled: (a newer release exists, its serial).
    update: Option<(bool, u64)>,
    update_refusals: u64,
    /// Connections and requests turned away, by reason.
    refused: BTreeMap<&'static str, u64>,
    /// The minute of the refusals logged, and how many were logged in it.
    refusals_logged: (u64, u32),
}

/// Refusals logged per minute; past this they are only counted (and summed up once).
const REFUSALS_LOGGED_PER_MINUTE: u32 = 10;

#[derive(Default)]
pub struct Metrics {
    state: Mutex<State>,
    /// The metagraph sync, read while rendering: the page is never behind it.
    chain: OnceLock<watch::Receiver<SyncState>>,
}

/// Writes one metric with a single value, with its HELP and TYPE lines.
fn single(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
    );
}

impl Metrics {
    pub fn request(&self, transport: &str) {
        *self
            .state
            .lock()
            .expect("not poisoned")
            .requests
            .entry(transport.into())
            .or_default() += 1;
    }

    /// A query's outcome: `ok`, or the failure's kind (`timeout`, `refused`, ...).
    pub fn response(&self, status: &str, latency_seconds: Option<f64>) {
        let mut state = self.state.lock().expect("not poisoned");
        *state.responses.entry(status.into()).or_default() += 1;
        if let Some(latency) = latency_seconds {
            for (count, bound) in state.latency_counts.iter_mut().zip(LATENCY_BUCKETS) {
                if latency <= bound {
                    *count += 1;
                }
            }
            state.latency_sum += latency;
            state.latency_count += 1;
        }
    }

    /// A connection or request turned away: counted by `reason`, and logged with
    /// `detail` at most ten times a minute, so that an attack shows without flooding the
    /// log.
    pub fn refused(&self, reason: &'static str, detail: &dyn std::fmt::Display) {
        let minute = crate::wire::now_ms() / 60_000;
        let mut state = self.state.lock().expect("not poisoned");
        *state.refused.entry(reason).or_default() += 1;
        let (logged_minute, logged) = &mut state.refusals_logged;
        if *logged_minute != minute {
            *logged_minute = minute;
            *logged = 0;
        }
        *logged += 1;
        match (*logged).cmp(&REFUSALS_LOGGED_PER_MINUTE) {
            std::cmp::Ordering::Less => tracing::info!(reason, %detail, "refused"),
            std::cmp::Ordering::Equal => tracing::warn!(
                reason,
                %detail,
                "refused; further refusals this minute are only counted (sn2_refused_total)"
            ),
            std::cmp::Ordering::Greater => {}
        }
    }

    pub fn proof(&self, verified: bool) {
        let mut state = self.state.lock().expect("not poisoned");
        if verified {
            state.proofs_verified += 1;
        } else {
            state.proofs_failed += 1;
        }
    }

    pub fn set_weights(&self, weights: BTreeMap<String, f64>) {
        self.state.lock().expect("not poisoned").weights = weights;
    }

    pub fn round(&self) {
        self.state.lock().expect("not poisoned").rounds += 1;
    }

    /// Shows the sync's state (`sn2_chain_up`, `sn2_metagraph_*`) from now on.
    pub fn follow_chain(&self, sync: watch::Receiver<SyncState>) {
        let _ = self.chain.set(sync);
    }

    pub fn weights(&self, outcome: &crate::chain::WeightsOutcome) {
        use crate::chain::WeightsOutcome::*;
        let kind = match outcome {
            Set { .. } => "set",
            Committed { .. } => "committed",
            Timelocked { .. } => "timelocked",
            NotDue { .. } => "not_due",
            Recorded => "recorded",
        };
        *self
            .state
            .lock()
            .expect("not poisoned")
            .weight_submissions
            .entry(kind)
            .or_default() += 1;
    }

    pub fn weights_failed(&self) {
        *self
            .state
            .lock()
            .expect("not poisoned")
            .weight_submissions
            .entry("failed")
            .or_default() += 1;
    }

    /// Serves `/metrics` and `/health` (the JSON `health` returns) on `address`; the
    /// returned future serves until `shutdown`. The validator serves more (its proving
    /// keys) on its own listener.
    pub async fn listen(
        self: std::sync::Arc<Self>,
        address: std::net::SocketAddr,
        shutdown: crate::shutdown::Shutdown,
        health: impl Fn() -> String + Send + Sync + 'static,
    ) -> anyhow::Result<impl std::future::Future<Output = ()> + Send + 'static> {
        use crate::wire::http::text_response;
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen for metrics on tcp/{address}: {e}"))?;
        tracing::info!(%address, "serving metrics and health");
        let health = std::sync::Arc::new(health);
        let refusals = self.clone();
        Ok(crate::wire::http::serve(
            listener,
            crate::wire::http::Limits::new(0),
            std::sync::Arc::new(move |reason, peer| refusals.refused(reason, &peer)),
            move |parts, _body| {
                let (metrics, health) = (self.clone(), health.clone());
                async move {
                    if parts.method != hyper::Method::GET {
                        return text_response(405, "text/plain", "GET only\n");
                    }
                    match parts.uri.path() {
                        "/metrics" => {
                            text_response(200, "text/plain; version=0.0.4", metrics.render())
                        }
                        "/health" => text_response(200, "application/json", health()),
                        _ => text_response(404, "text/plain", "not found\n"),
                    }
                }
            },
            shutdown,
        ))
    }

    /// What the last poll of the release manifest found.
    pub fn update_event(&self, event: &crate::update::watch::Event) {
        use crate::update::watch::Event;
        let mut s = self.state.lock().expect("not poisoned");
        match event {
            Event::Current { serial } => s.update = Some((false, *serial)),
            Event::Available { serial, .. }
            | Event::Installed { serial, .. }
            | Event::HandedOver { serial, .. } => s.update = Some((true, *serial)),
            Event::Refused(_) => s.update_refusals += 1,
            Event::Unreachable(_) => {}
        }
    }

    pub fn render(&self) -> String {
        let s = self.state.lock().expect("not poisoned");
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP sn2_requests_total Requests sent to miners, by transport.\n# TYPE sn2_requests_total counter"
        );
        for (transport, n) in &s.requests {
            let _ = writeln!(out, "sn2_requests_total{{transport=\"{transport}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "# HELP sn2_responses_total Query outcomes, by status.\n# TYPE sn2_responses_total counter"
        );
        for (status, n) in &s.responses {
            let _ = writeln!(out, "sn2_responses_total{{status=\"{status}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "# HELP sn2_response_seconds Round-trip time of answered queries.\n# TYPE sn2_response_seconds histogram"
        );
        for (bound, n) in LATENCY_BUCKETS.iter().zip(s.latency_counts) {
            let _ = writeln!(out, "sn2_response_seconds_bucket{{le=\"{bound}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "sn2_response_seconds_bucket{{le=\"+Inf\"}} {}",
            s.latency_count
        );
        let _ = writeln!(
            out,
            "sn2_response_seconds_sum {}\nsn2_response_seconds_count {}",
            s.latency_sum, s.latency_count
        );
        single(
            &mut out,
            "sn2_proofs_verified_total",
            "counter",
            "Proofs that verified.",
            s.proofs_verified,
        );
        single(
            &mut out,
            "sn2_proofs_failed_total",
            "counter",
            "Answers whose proof or output did not verify.",
            s.proofs_failed,
        );
        single(
            &mut out,
            "sn2_rounds_total",
            "counter",
            "Query rounds completed.",
            s.rounds,
        );
        let _ = writeln!(
            out,
            "# HELP sn2_refused_total Connections and requests turned away, by reason.\n# TYPE sn2_refused_total counter"
        );
        for (reason, n) in &s.refused {
            let _ = writeln!(out, "sn2_refused_total{{reason=\"{reason}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "# HELP sn2_weight Current normalised weight per miner hotkey.\n# TYPE sn2_weight gauge"
        );
        for (hotkey, weight) in &s.weights {
            let _ = writeln!(out, "sn2_weight{{hotkey=\"{hotkey}\"}} {weight}");
        }
        if let Some(chain) = self.chain.get() {
            let chain = chain.borrow();
            let metagraph = chain.metagraph.as_deref();
            single(
                &mut out,
                "sn2_chain_up",
                "gauge",
                "Whether the last metagraph sync succeeded.",
                u8::from(chain.up),
            );
            single(
                &mut out,
                "sn2_chain_sync_failures_total",
                "counter",
                "Metagraph syncs that failed.",
                chain.total_failures,
            );
            single(
                &mut out,
                "sn2_metagraph_block",
                "gauge",
                "Block of the metagraph in use.",
                metagraph.map_or(0, |m| m.block),
            );
            single(
                &mut out,
                "sn2_metagraph_neurons",
                "gauge",
                "Neurons in the metagraph in use.",
                metagraph.map_or(0, |m| m.neurons.len()),
            );
        }
        if let Some((available, serial)) = s.update {
            single(
                &mut out,
                "sn2_update_available",
                "gauge",
                "Whether a newer verified release than the one running exists.",
                u8::from(available),
            );
            single(
                &mut out,
                "sn2_update_release_serial",
                "gauge",
                "Serial of the newest verified release.",
                serial,
            );
        }
        if s.update.is_some() || s.update_refusals > 0 {
            single(
                &mut out,
                "sn2_update_refusals_total",
                "counter",
                "Release manifests refused.",
                s.update_refusals,
            );
        }
        if !s.weight_submissions.is_empty() {
            let _ = writeln!(
                out,
                "# HELP sn2_weight_submissions_total Weight submissions, by outcome.\n# TYPE sn2_weight_submissions_total counter"
            );
            for (outcome, n) in &s.weight_submissions {
                let _ = writeln!(
                    out,
                    "sn2_weight_submissions_total{{outcome=\"{outcome}\"}} {n}"
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::chain::Metagraph;

    #[test]
    fn the_chain_gauges_show_the_sync_state_the_moment_it_changes() {
        let metrics = Metrics::default();
        assert!(!metrics.render().contains("sn2_chain_up"));
        let (sync, followed) = watch::channel(SyncState::default());
        metrics.follow_chain(followed);
        assert!(metrics.render().contains("sn2_chain_up 0\n"));

        sync.send_modify(|state| {
            state.up = true;
            state.metagraph = Some(Arc::new(Metagraph {
                netuid: 2,
                block: 77,
                neurons: Vec::new(),
            }));
        });
        let page = metrics.render();
        assert!(page.contains("sn2_chain_up 1\n"), "{page}");
        assert!(page.contains("sn2_metagraph_block 77\n"), "{page}");

        // A failed sync keeps the last metagraph in use.
        sync.send_modify(|state| {
            state.up = false;
            state.total_failures += 1;
        });
        let page = metrics.render();
        assert!(page.contains("sn2_chain_up 0\n"), "{page}");
        assert!(page.contains("sn2_chain_sync_failures_total 1\n"), "{page}");
        assert!(page.contains("sn2_metagraph_block 77\n"), "{page}");
    }
}

//! `sn2 bench --api`: what the validator's user API costs beyond the miner's work — a
//! devnet of three honest miners on digits-mlp, its open API asked over loopback HTTP.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use serde::Serialize;

use crate::devnet::{Devnet, DevnetOptions};
use crate::wire::http::HttpClient;

#[derive(Debug, Clone, Serialize)]
pub struct ApiBench {
    pub requests: usize,
    /// A user's round trip, one request at a time.
    pub round_trip_p50_ms: f64,
    /// The round trip minus the validator's query (sending, proving, verifying): what the
    /// API itself adds.
    pub overhead_p50_ms: f64,
    pub overhead_p99_ms: f64,
    /// With six users asking at once for `seconds`.
    pub requests_per_second: f64,
    /// The process's resident memory (devnet included) under that load, in MiB.
    pub memory_under_load_mib: Option<f64>,
}

fn percentile(mut values: Vec<f64>, p: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    values[((values.len() - 1) as f64 * p).round() as usize]
}

async fn infer(client: &HttpClient, url: &str, body: &[u8]) -> anyhow::Result<(f64, f64)> {
    let request = hyper::Request::builder()
        .method("POST")
        .uri(url)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::copy_from_slice(body)))?;
    let started = Instant::now();
    let (status, bytes) = client.raw(request, 1 << 20).await?;
    let round_trip = started.elapsed().as_secs_f64() * 1000.0;
    anyhow::ensure!(
        status == 200,
        "status {status}: {}",
        String::from_utf8_lossy(&bytes)
    );
    let answer: serde_json::Value = serde_json::from_slice(&bytes)?;
    let query = answer["latency_ms"].as_f64().unwrap_or(0.0);
    Ok((round_trip, query))
}

pub fn bench_api(requests: usize, seconds: u64) -> anyhow::Result<ApiBench> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let devnet = Devnet::start(&DevnetOptions {
            miners: 3,
            dishonest: 0,
            models: vec!["digits-mlp".into()],
            ..Default::default()
        })
        .await?;
        let model = devnet.validator.model_summaries()[0].clone();
        let body = serde_json::json!({ "model": model.id, "input": vec![1; model.input_len] })
            .to_string()
            .into_bytes();
        let url = format!("http://{}/v1/inference", devnet.api);
        let client = HttpClient::default();
        // Warm up: the miners fetch the model and the key.
        for _ in 0..3 {
            infer(&client, &url, &body).await?;
        }
        let mut round_trips = Vec::new();
        let mut overheads = Vec::new();
        for _ in 0..requests {
            let (round_trip, query) = infer(&client, &url, &body).await?;
            round_trips.push(round_trip);
            overheads.push(round_trip - query);
        }
        // Six users at once.
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let mut users = tokio::task::JoinSet::new();
        for _ in 0..6 {
            let (client, url, body) = (client.clone(), url.clone(), body.clone());
            users.spawn(async move {
                let mut done = 0usize;
                while Instant::now() < deadline {
                    if infer(&client, &url, &body).await.is_ok() {
                        done += 1;
                    }
                }
                done
            });
        }
        let mut done = 0;
        let mut memory = None;
        while let Some(count) = users.join_next().await {
            memory = memory.or_else(|| super::status_mib("/proc/self/status", "VmRSS:"));
            done += count?;
        }
        devnet.stop().await;
        Ok(ApiBench {
            requests,
            round_trip_p50_ms: percentile(round_trips, 0.5),
            overhead_p50_ms: percentile(overheads.clone(), 0.5),
            overhead_p99_ms: percentile(overheads, 0.99),
            requests_per_second: done as f64 / seconds.max(1) as f64,
            memory_under_load_mib: memory,
        })
    })
}

pub fn api_table(result: &ApiBench) -> String {
    format!(
        "| round trip p50 | API overhead p50 | p99 | requests/s (6 users) | memory |\n\
         | --- | --- | --- | --- | --- |\n\
         | {:.1} ms | {:.2} ms | {:.2} ms | {:.1} | {} |\n\
         ({} sequential requests; a devnet of 3 miners on digits-mlp, in this process)\n",
        result.round_trip_p50_ms,
        result.overhead_p50_ms,
        result.overhead_p99_ms,
        result.requests_per_second,
        result
            .memory_under_load_mib
            .map_or("n/a".into(), |m| format!("{m:.0} MiB")),
        result.requests,
    )
}

//! `sn2 bench --attack`: what an outsider's connections cost a miner. A miner with the
//! default limits serves digits-mlp on loopback, on threads of its own, while this process
//! holds connections against it from many loopback addresses, or sends it requests it
//! must refuse. Reported per scenario: the process's resident memory while the connections
//! are held, how long the miner took to close them all, and the miner threads' CPU time per
//! refused request. (The client shares the process; its own share of the memory is a few
//! kilobytes per socket.)

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use super::wire::{LoopbackMiner, MINER_THREADS};
use crate::keys::Hotkey;
use crate::wire::auth::{epistula_message, uuid_v4};
use crate::wire::http::{Limits, REQUEST_PATH};

#[derive(Debug, Clone, Serialize)]
pub struct AttackBench {
    pub scenario: &'static str,
    /// Connections held at once, or requests sent one after another.
    pub count: usize,
    /// Resident memory of the whole process before, and at its peak while the connections
    /// were held, in MiB.
    pub rss_before_mib: f64,
    pub rss_held_mib: f64,
    /// From the last connection opened to the miner closing all of them.
    pub closed_after_s: Option<f64>,
    /// The miner threads' CPU time per request (user and system).
    pub miner_cpu_us_per_request: Option<f64>,
}

/// What a held connection sends before it stalls.
#[derive(Clone, Copy)]
enum Stall {
    Nothing,
    Http2Preface,
    /// POST headers without a signature for a 4 MiB body, and its first MiB.
    UnsignedBody,
    /// POST headers in a permitted validator's name for a 4 MiB body, and all of it but
    /// the last byte.
    BodyInAValidatorsName,
}

const LARGE_BODY: usize = 4 << 20;

pub fn bench_attack() -> anyhow::Result<Vec<AttackBench>> {
    let loopback = LoopbackMiner::start(Limits::new(LARGE_BODY))?;
    let client = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let results = client.block_on(async {
        let mut results = Vec::new();
        for (scenario, stall, count) in [
            ("idle connections", Stall::Nothing, 1000),
            ("HTTP/2 prefaces", Stall::Http2Preface, 1000),
            ("unsigned 4 MiB bodies", Stall::UnsignedBody, 100),
            (
                "4 MiB bodies in a validator's name",
                Stall::BodyInAValidatorsName,
                100,
            ),
        ] {
            results.push(hold(&loopback, scenario, stall, count).await?);
        }
        let unknown = Hotkey::from_seed(&[99; 32]);
        results.push(
            refused_requests(
                &loopback,
                "requests from an unknown hotkey",
                &unknown,
                10_000,
            )
            .await?,
        );
        let validator = Hotkey::from_seed(&[12; 32]);
        results.push(
            refused_requests(
                &loopback,
                "requests in a validator's name, bad signature",
                &validator,
                2_000,
            )
            .await?,
        );
        anyhow::Ok(results)
    });
    drop(client);
    drop(loopback);
    results
}

/// The source address of the `n`th connection: 60 per loopback address, within the cap of
/// 64 per address.
fn source(n: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, (2 + n / 60) as u8)
}

async fn connect_from(source: Ipv4Addr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((source, 0)))?;
    socket.connect(to).await
}

/// Epistula headers for a POST of `body_len` bytes in `signer`'s name, with a signature
/// that is well formed but not over the body that follows.
fn head(signer: &Hotkey, miner: &str, body_len: usize) -> String {
    let (timestamp, uuid) = (crate::wire::now_ms(), uuid_v4());
    let signature =
        signer.sign(epistula_message(b"another body", &uuid, timestamp, miner).as_bytes());
    format!(
        "POST {REQUEST_PATH} HTTP/1.1\r\nhost: miner\r\ncontent-type: application/json\r\n\
         content-length: {body_len}\r\nepistula-version: 2\r\nepistula-timestamp: {timestamp}\r\n\
         epistula-uuid: {uuid}\r\nepistula-signed-by: {}\r\nepistula-signed-for: {miner}\r\n\
         epistula-request-signature: 0x{}\r\n\r\n",
        signer.ss58(),
        signature.to_hex()
    )
}

async fn hold(
    loopback: &LoopbackMiner,
    scenario: &'static str,
    stall: Stall,
    count: usize,
) -> anyhow::Result<AttackBench> {
    let miner = loopback.miner.hotkey().ss58();
    let body = vec![b' '; LARGE_BODY];
    let rss_before_mib = rss_mib();
    let mut held = Vec::with_capacity(count);
    for n in 0..count {
        let mut stream = connect_from(source(n), loopback.address).await?;
        match stall {
            Stall::Nothing => {}
            Stall::Http2Preface => {
                stream
                    .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
                    .await?
            }
            Stall::UnsignedBody => {
                let head = format!(
                    "POST {REQUEST_PATH} HTTP/1.1\r\nhost: miner\r\ncontent-length: {LARGE_BODY}\r\n\r\n"
                );
                stream.write_all(head.as_bytes()).await?;
                // The miner answers and closes at once; what it never reads is dropped.
                let _ = stream.write_all(&body[..1 << 20]).await;
            }
            Stall::BodyInAValidatorsName => {
                let head = head(&loopback.validator, &miner, LARGE_BODY);
                stream.write_all(head.as_bytes()).await?;
                let _ = tokio::time::timeout(
                    Duration::from_millis(50),
                    stream.write_all(&body[..LARGE_BODY - 1]),
                )
                .await;
            }
        }
        held.push(stream);
    }
    let opened = Instant::now();
    let mut rss_held_mib = rss_mib();
    let mut closing = tokio::task::JoinSet::new();
    for mut stream in held {
        closing.spawn(async move {
            let mut sink = vec![0; 4096];
            let limit = Duration::from_secs(120);
            let _ = tokio::time::timeout(limit, async {
                while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
            })
            .await;
        });
    }
    let mut sampling = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            done = closing.join_next() => if done.is_none() { break },
            _ = sampling.tick() => rss_held_mib = rss_held_mib.max(rss_mib()),
        }
    }
    let elapsed = opened.elapsed();
    Ok(AttackBench {
        scenario,
        count,
        rss_before_mib,
        rss_held_mib,
        closed_after_s: (elapsed < Duration::from_secs(120)).then_some(elapsed.as_secs_f64()),
        miner_cpu_us_per_request: None,
    })
}

/// `count` requests, on four keep-alive connections, that the miner must refuse; the
/// miner threads' CPU time per request.
async fn refused_requests(
    loopback: &LoopbackMiner,
    scenario: &'static str,
    signer: &Hotkey,
    count: usize,
) -> anyhow::Result<AttackBench> {
    let miner = loopback.miner.hotkey().ss58();
    let rss_before_mib = rss_mib();
    let cpu_before = miner_cpu_seconds();
    let mut clients = tokio::task::JoinSet::new();
    for client in 0..4 {
        let address = loopback.address;
        let (signer, miner) = (signer.clone(), miner.clone());
        clients.spawn(async move {
            let mut stream = connect_from(source(client * 60), address).await?;
            let body = vec![b' '; 1024];
            for _ in 0..count / 4 {
                let mut request = head(&signer, &miner, body.len()).into_bytes();
                request.extend_from_slice(&body);
                stream.write_all(&request).await?;
                if !read_response(&mut stream).await? {
                    stream = connect_from(source(client * 60), address).await?;
                }
            }
            anyhow::Ok(())
        });
    }
    while let Some(done) = clients.join_next().await {
        done??;
    }
    let cpu = miner_cpu_seconds() - cpu_before;
    Ok(AttackBench {
        scenario,
        count,
        rss_before_mib,
        rss_held_mib: rss_mib(),
        closed_after_s: None,
        miner_cpu_us_per_request: Some(cpu * 1e6 / count as f64),
    })
}

/// Reads one HTTP/1.1 response; whether the connection stays open.
async fn read_response(stream: &mut TcpStream) -> anyhow::Result<bool> {
    let mut seen = Vec::new();
    let mut byte = [0u8; 1];
    while !seen.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await? == 0 {
            anyhow::bail!("the miner closed the connection mid-response");
        }
        seen.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&seen).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    stream.read_exact(&mut body).await?;
    Ok(!head.contains("connection: close"))
}

fn rss_mib() -> f64 {
    super::status_mib("/proc/self/status", "VmRSS:").unwrap_or(0.0)
}

/// User and system CPU time of the miner's threads.
fn miner_cpu_seconds() -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    tasks
        .flatten()
        .filter(|task| {
            std::fs::read_to_string(task.path().join("comm"))
                .is_ok_and(|comm| comm.trim() == MINER_THREADS)
        })
        .map(|task| super::stat_cpu_seconds(&task.path().join("stat")))
        .sum()
}

pub fn attack_table(results: &[AttackBench]) -> String {
    let mut table = String::from(
        "| scenario | count | RSS before | RSS held | closed after | miner CPU per request |\n| --- | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for r in results {
        let closed = r.closed_after_s.map_or("-".into(), |s| format!("{s:.1} s"));
        let cpu = r
            .miner_cpu_us_per_request
            .map_or("-".into(), |us| format!("{us:.0} µs"));
        table.push_str(&format!(
            "| {} | {} | {:.1} MiB | {:.1} MiB | {closed} | {cpu} |\n",
            r.scenario, r.count, r.rss_before_mib, r.rss_held_mib
        ));
    }
    table
}

//! `sn2 devnet`: a validator and miners on loopback, with a live table (see `crate::devnet`).

use std::io::{IsTerminal, Write};
use std::time::Duration;

use clap::{Args, ValueEnum};

use super::Outcome;
use crate::devnet::{self, Devnet, DevnetOptions};
use crate::validator::Transport;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum TransportArg {
    /// QUIC, falling back on HTTP.
    Auto,
    Quic,
    Http,
}

#[derive(Debug, Args)]
pub struct DevnetArgs {
    /// Number of miners.
    #[arg(long, default_value_t = 3)]
    miners: usize,
    /// How many of them cheat (wrong outputs, forged proofs).
    #[arg(long, default_value_t = 0)]
    dishonest: usize,
    /// Stop after this many seconds and print the final state.
    #[arg(long, value_name = "SECONDS")]
    duration: Option<u64>,
    /// Print the final state as JSON (and no live table).
    #[arg(long)]
    json: bool,
    /// Reference models to serve, comma-separated (digits-mlp, mnist-mlp, cnn-small).
    #[arg(long, value_delimiter = ',', default_value = "digits-mlp,mnist-mlp")]
    models: Vec<String>,
    /// Transport from validator to miners.
    #[arg(long, value_enum, default_value = "auto")]
    transport: TransportArg,
    /// Seconds between query rounds.
    #[arg(long, default_value_t = 2)]
    round_interval: u64,
    /// Finish the validator's keys from a ceremony over these powers of tau (a snarkjs
    /// file prepared for phase 2), with one contribution made here, instead of its own
    /// setup; the miners take keys only from a transcript they verify against the same
    /// file, and `sn2 infer --ptau` it then verifies the ceremony too.
    #[arg(long, value_name = "FILE")]
    ceremony_ptau: Option<std::path::PathBuf>,
}

impl DevnetArgs {
    pub fn run(self) -> anyhow::Result<Outcome> {
        let logging = crate::config::LoggingConfig {
            level: "warn".into(),
            ..Default::default()
        };
        crate::logging::init(&logging)?;
        let options = DevnetOptions {
            miners: self.miners,
            dishonest: self.dishonest,
            models: self.models.clone(),
            transport: match self.transport {
                TransportArg::Auto => Transport::QuicThenHttp,
                TransportArg::Quic => Transport::QuicOnly,
                TransportArg::Http => Transport::HttpOnly,
            },
            round_interval: Duration::from_secs(self.round_interval.max(1)),
            request_timeout: Duration::from_secs(30),
            ceremony_ptau: self.ceremony_ptau.clone(),
            miner_ptau: self.ceremony_ptau.clone(),
            ..Default::default()
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        runtime.block_on(self.run_devnet(options))
    }

    async fn run_devnet(self, options: DevnetOptions) -> anyhow::Result<Outcome> {
        if !self.json {
            eprintln!(
                "starting a devnet: 1 validator, {} miners ({} dishonest), models {} ...",
                options.miners,
                options.dishonest,
                options.models.join(", ")
            );
        }
        let devnet = Devnet::start(&options).await?;
        if !self.json {
            let model = &devnet.validator.model_summaries()[0];
            let zeros = vec!["0"; model.input_len].join(",");
            eprintln!(
                "the validator's user API is at http://{api}; for a verified answer:\n  curl -s http://{api}/v1/inference -H 'content-type: application/json' -d '{{\"model\":\"{name}\",\"input\":[{zeros}]}}'\n  sn2 infer --validator http://{api} --model {name} --input input.json   # input.json: {{\"input_data\": [[...]]}}",
                api = devnet.api,
                name = model.name,
            );
        }
        let (stop, shutdown) = crate::shutdown::channel();
        let live = !self.json;
        let clear = std::io::stdout().is_terminal();
        let reporter = devnet.reporter();
        let validator_ss58 = devnet.validator.hotkey().ss58();
        let rounds = tokio::spawn(devnet.validator.clone().run(shutdown, move |round, _| {
            if live {
                let mut out = std::io::stdout().lock();
                if clear {
                    let _ = write!(out, "\x1b[2J\x1b[H");
                }
                let _ = writeln!(
                    out,
                    "sn2 devnet  validator {validator_ss58}  round {}  (Ctrl-C stops)\n",
                    round + 1
                );
                let _ = write!(out, "{}", devnet::table(&reporter.report()));
                let _ = out.flush();
            }
        }));
        let stop_after = async {
            match self.duration {
                Some(seconds) => tokio::time::sleep(Duration::from_secs(seconds)).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = stop_after => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        let _ = stop.send(true);
        let _ = rounds.await;
        let report = devnet.report();
        devnet.stop().await;
        if self.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            println!("\nfinal state:");
            print!("{}", devnet::table(&report));
        }
        Ok(Outcome::Success)
    }
}

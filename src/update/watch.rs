//! The daemons' side of signed releases. Every `poll_interval_secs` the manifest is read
//! (from a file or over https), verified, compared with the binary that is running, and
//! acted on by mode: `notify` says so; `profile` has Nix realise the store path, checks its
//! NAR hash here, switches the profile and asks the daemon to exit so that systemd restarts
//! it from the profile; `nixos` hands the verified manifest to the NixOS module's upgrade
//! unit. The daemon never writes a binary itself.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use super::manifest::MAX_MANIFEST_BYTES;
use super::nar::{NarDigest, nar_digest};
use super::nixkey::parse_public;
use super::state::AcceptedReleases;
use super::verify::{Policy, Verified, check_store_path, verify};
use crate::config::{UpdateConfig, UpdateMode};
use crate::shutdown::{Shutdown, stopped};

/// The exit code of a daemon that switched its profile to a new release: the unit restarts
/// on it (`RestartForceExitStatus=75`, EX_TEMPFAIL).
pub const RESTART_EXIT_CODE: u8 = 75;

/// The file in `state_dir` where mode `nixos` hands the verified manifest over.
pub const HANDOVER_FILE: &str = "verified-release.manifest";

const FETCH_TIMEOUT: Duration = Duration::from_secs(30);

/// What one poll found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The release running is the newest verified one.
    Current { serial: u64 },
    /// A newer verified release exists (mode `notify`, or a profile already switched).
    Available {
        serial: u64,
        rev: String,
        store_path: String,
    },
    /// The profile now holds the release: the daemon should exit to be restarted.
    Installed { serial: u64, store_path: String },
    /// Mode `nixos`: the manifest was handed to the upgrade unit.
    HandedOver { serial: u64, file: PathBuf },
    /// The manifest was refused; the reason is the operator's to fix (or an attack).
    Refused(String),
    /// The manifest could not be read; tried again at the next poll.
    Unreachable(String),
}

impl Event {
    /// The service status line this event calls for (systemd's `STATUS=`), if any: the
    /// daemon that runs the watcher shows it, so that `systemctl status` says what is due.
    pub fn status(&self) -> Option<String> {
        match self {
            Event::Available { serial, rev, .. } => Some(format!(
                "a newer verified release is available: serial {serial}, rev {rev}"
            )),
            Event::HandedOver { serial, .. } => {
                Some(format!("release {serial} handed to the upgrade unit"))
            }
            Event::Installed { serial, .. } => Some(format!("restarting into release {serial}")),
            _ => None,
        }
    }
}

/// The running binary: its store path and (computed once) its NAR digest.
#[derive(Debug, Clone)]
struct Running {
    store_path: PathBuf,
    digest: Option<NarDigest>,
}

pub struct Watcher {
    source: String,
    mode: UpdateMode,
    policy: Policy,
    accepted: AcceptedReleases,
    state_dir: PathBuf,
    profile: PathBuf,
    interval: Duration,
    running: Option<Running>,
}

impl Watcher {
    /// The watcher the config asks for; `None` when updates are off.
    pub fn from_config(config: &UpdateConfig) -> anyhow::Result<Option<Self>> {
        if config.mode == UpdateMode::Off {
            return Ok(None);
        }
        let trusted_keys = config
            .trusted_keys
            .iter()
            .map(|k| parse_public(k))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(Self::new(
            config,
            Policy {
                trusted_keys,
                channel: config.channel.clone(),
                system: super::current_system(),
            },
            super::running_store_path(),
        )))
    }

    /// A watcher with an explicit policy and running store path, whose NAR digest is
    /// computed here, once.
    pub fn new(config: &UpdateConfig, policy: Policy, running: Option<PathBuf>) -> Self {
        Self {
            source: config.manifest.clone().unwrap_or_default(),
            mode: config.mode,
            policy,
            accepted: AcceptedReleases::new(config.state_dir.join("accepted-releases.json")),
            state_dir: config.state_dir.clone(),
            profile: config.profile.clone(),
            interval: config.poll_interval_secs.duration(),
            running: running.map(|store_path| Running {
                digest: nar_digest(&store_path).ok(),
                store_path,
            }),
        }
    }

    /// Polls until shutdown, reporting each event; returns `true` when the daemon should
    /// exit to restart into an installed release.
    pub async fn run(mut self, mut shutdown: Shutdown, report: impl Fn(&Event)) -> bool {
        loop {
            let event = self.poll_once().await;
            // Metrics before the log line: whoever reads the log then scrapes sees the event.
            report(&event);
            log(&event);
            if matches!(event, Event::Installed { .. }) {
                return true;
            }
            tokio::select! {
                _ = tokio::time::sleep(self.interval) => {}
                _ = stopped(&mut shutdown) => return false,
            }
        }
    }

    /// One poll: read, verify, compare, act.
    pub async fn poll_once(&mut self) -> Event {
        let bytes = match fetch(&self.source).await {
            Ok(bytes) => bytes,
            Err(reason) => return Event::Unreachable(reason),
        };
        let last = match self.accepted.last(&self.policy.channel) {
            Ok(last) => last,
            Err(error) => return Event::Refused(error.to_string()),
        };
        let now = super::unix_now();
        let verified = match verify(&bytes, &self.policy, now, last) {
            Ok(verified) => verified,
            Err(refusal) => return Event::Refused(refusal.to_string()),
        };
        let serial = verified.manifest.body.serial;
        let release_path = PathBuf::from(verified.output.store_path.to_absolute_path());
        if let Some(running) = &self.running
            && running.store_path == release_path
        {
            let same = running.digest.as_ref().is_some_and(|d| {
                d.hash == verified.output.nar_hash && d.size == verified.output.nar_size
            });
            if !same {
                return Event::Refused(format!(
                    "this binary runs from {}, the release's store path, but its NAR hash is not the manifest's: the store is damaged or the release is wrong",
                    release_path.display()
                ));
            }
            return self.record(&verified, Event::Current { serial });
        }
        let available = Event::Available {
            serial,
            rev: verified.manifest.body.flake.rev.clone(),
            store_path: release_path.display().to_string(),
        };
        match self.mode {
            UpdateMode::Off | UpdateMode::Notify => self.record(&verified, available),
            UpdateMode::Nixos => {
                let file = self.state_dir.join(HANDOVER_FILE);
                if !verified.is_new && file.exists() {
                    return available;
                }
                let written = crate::fs::create_private_dir(&self.state_dir)
                    .and_then(|()| crate::fs::write_atomic(&file, &bytes, 0o644));
                match written {
                    Ok(()) => self.record(&verified, Event::HandedOver { serial, file }),
                    Err(error) => Event::Refused(format!(
                        "cannot hand the release to the upgrade unit: {}: {error}",
                        file.display()
                    )),
                }
            }
            UpdateMode::Profile => {
                if profile_target(&self.profile).as_deref() == Some(release_path.as_path()) {
                    tracing::warn!(
                        profile = %self.profile.display(),
                        "the profile holds the new release but this daemon does not run from it: start the daemon from the profile's bin/"
                    );
                    return self.record(&verified, available);
                }
                let profile = self.profile.clone();
                let output = verified.output.clone();
                let installed = tokio::task::spawn_blocking(move || {
                    install_into_profile(&output, &release_path, &profile)
                })
                .await
                .unwrap_or_else(|e| Err(format!("the install task failed: {e}")));
                match installed {
                    Ok(()) => self.record(
                        &verified,
                        Event::Installed {
                            serial,
                            store_path: verified.output.store_path.to_absolute_path(),
                        },
                    ),
                    Err(reason) => Event::Refused(reason),
                }
            }
        }
    }

    /// Records the release as accepted (so older ones are refused from now on).
    fn record(&self, verified: &Verified, event: Event) -> Event {
        match self
            .accepted
            .record(&self.policy.channel, verified.accepted())
        {
            Ok(()) => event,
            Err(error) => Event::Refused(error.to_string()),
        }
    }
}

fn log(event: &Event) {
    match event {
        Event::Current { serial } => tracing::debug!(serial, "running the newest release"),
        Event::Available {
            serial,
            rev,
            store_path,
        } => tracing::warn!(
            serial,
            rev,
            store_path,
            "a newer verified release is available"
        ),
        Event::Installed { serial, store_path } => tracing::warn!(
            serial,
            store_path,
            "release installed into the profile; exiting to restart into it"
        ),
        Event::HandedOver { serial, file } => tracing::warn!(
            serial,
            file = %file.display(),
            "a newer verified release was handed to the NixOS upgrade unit"
        ),
        Event::Refused(reason) => tracing::error!(%reason, "release manifest refused"),
        Event::Unreachable(reason) => {
            tracing::warn!(%reason, "cannot read the release manifest; trying again later")
        }
    }
}

/// Where a profile symlink points, resolved to its store path.
fn profile_target(profile: &Path) -> Option<PathBuf> {
    std::fs::canonicalize(profile).ok()
}

/// Realises the store path with Nix (substituters and their signatures are Nix's business),
/// checks its NAR hash here (the manifest's word is what counts), then switches the profile
/// to it in one step.
fn install_into_profile(
    output: &super::Output,
    store_path: &Path,
    profile: &Path,
) -> Result<(), String> {
    run_nix(Command::new("nix-store").arg("--realise").arg(store_path))?;
    check_store_path(output, store_path).map_err(|refusal| refusal.to_string())?;
    if let Some(dir) = profile.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    run_nix(
        Command::new("nix-env")
            .arg("--profile")
            .arg(profile)
            .arg("--set")
            .arg(store_path),
    )
}

fn run_nix(command: &mut Command) -> Result<(), String> {
    let output = command.output().map_err(|e| {
        format!(
            "cannot run {:?}: {e} (is Nix installed?)",
            command.get_program()
        )
    })?;
    if !output.status.success() {
        return Err(format!(
            "{:?} failed: {}",
            command,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(())
}

/// Reads the manifest: `https://…` over TLS (the platform's roots), anything else as a file.
async fn fetch(source: &str) -> Result<Vec<u8>, String> {
    let bytes = if source.starts_with("https://") {
        tokio::time::timeout(FETCH_TIMEOUT, fetch_https(source))
            .await
            .map_err(|_| {
                format!(
                    "{} did not answer within {} s",
                    crate::config::redact_url(source),
                    FETCH_TIMEOUT.as_secs()
                )
            })??
    } else {
        let path = source.to_string();
        tokio::task::spawn_blocking(move || std::fs::read(&path))
            .await
            .map_err(|e| format!("cannot read {source}: {e}"))?
            .map_err(|e| format!("cannot read {source}: {e}"))?
    };
    if bytes.len() > MAX_MANIFEST_BYTES {
        return Err(format!(
            "the manifest is {} bytes; at most {MAX_MANIFEST_BYTES} are accepted",
            bytes.len()
        ));
    }
    Ok(bytes)
}

async fn fetch_https(url: &str) -> Result<Vec<u8>, String> {
    use base64::Engine as _;
    use http_body_util::BodyExt as _;
    use rustls_platform_verifier::BuilderVerifierExt as _;

    let shown = crate::config::redact_url(url);
    let error = |what: &str, e: &dyn std::fmt::Display| format!("{shown}: {what}: {e}");
    let uri: hyper::Uri = url.parse().map_err(|e| error("not a URL", &e))?;
    let authority = uri
        .authority()
        .ok_or_else(|| format!("{shown}: no host"))?
        .clone();
    let host = authority.host().to_string();
    let port = authority.port_u16().unwrap_or(443);
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| error("cannot connect", &e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls_config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| error("TLS", &e))?
        .with_platform_verifier()
        .with_no_client_auth();
    let server_name = rustls::pki_types::ServerName::try_from(host.clone())
        .map_err(|e| error("not a TLS server name", &e))?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(tls_config))
        .connect(server_name, tcp)
        .await
        .map_err(|e| error("TLS handshake failed", &e))?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .map_err(|e| error("HTTP", &e))?;
    tokio::spawn(connection);
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let host_header = match authority.port_u16() {
        Some(port) => format!("{host}:{port}"),
        None => host.clone(),
    };
    let mut request = hyper::Request::get(path)
        .header(hyper::header::HOST, host_header)
        .header(
            hyper::header::USER_AGENT,
            concat!("sn2/", env!("CARGO_PKG_VERSION")),
        );
    if let Some((userinfo, _)) = authority.as_str().rsplit_once('@') {
        let credentials = base64::engine::general_purpose::STANDARD.encode(userinfo);
        request = request.header(hyper::header::AUTHORIZATION, format!("Basic {credentials}"));
    }
    let request = request
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .map_err(|e| error("request", &e))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| error("HTTP", &e))?;
    if !response.status().is_success() {
        return Err(format!("{shown}: HTTP {}", response.status()));
    }
    let body = http_body_util::Limited::new(response.into_body(), MAX_MANIFEST_BYTES + 1)
        .collect()
        .await
        .map_err(|e| error("reading the body", &e))?;
    Ok(body.to_bytes().to_vec())
}

//! The `sn2` tool and the daemons as an operator meets them: exit codes, messages, files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

mod common;
use common::daemon::Daemon;

fn sn2(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sn2"))
        .args(args)
        .env_remove("SN2_CONFIG")
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.toml")
}

/// A config for a wallet in `dir`, with a hotkey made by `sn2 keys new`, a static (empty)
/// metagraph and free loopback ports.
fn config_with_wallet(dir: &Path, logging_format: &str) -> PathBuf {
    let config = dir.join("sn2.toml");
    std::fs::write(
        &config,
        format!(
            "[chain]\nbackend = \"local\"\n\
             [wallet]\npath = \"wallets\"\nname = \"ops\"\nhotkey = \"m1\"\n\
             [miner]\nlisten = \"127.0.0.1:{}\"\n\
             [metrics]\nlisten = \"127.0.0.1:{}\"\n\
             [models]\ndir = \"models\"\n\
             [validator]\nstate_dir = \"state\"\n\
             [logging]\nformat = \"{logging_format}\"\n",
            sn2::devnet::free_port().unwrap(),
            sn2::devnet::free_port().unwrap()
        ),
    )
    .unwrap();
    let created = sn2(&["keys", "new", "--config", config.to_str().unwrap()]);
    assert!(created.status.success(), "{}", stderr(&created));
    config
}

/// Imports the digits-mlp reference model into the config's models directory.
fn import_digits(config: &Path) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/digits-mlp");
    let imported = sn2(&[
        "model",
        "import",
        root.join("model.onnx").to_str().unwrap(),
        "--calibration",
        root.join("calibration.json").to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ]);
    assert!(imported.status.success(), "{}", stderr(&imported));
}

#[test]
fn config_check_prints_the_resolved_config() {
    let output = sn2(&["config", "check", example().to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr(&output));
    let shown = stdout(&output);
    assert!(shown.contains("netuid = 2"), "{shown}");
    assert!(shown.contains("listen = \"0.0.0.0:8091\""), "{shown}");
}

#[test]
fn config_check_names_the_place_of_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "[miner]\nlisten = \"0.0.0.0:0\"\n").unwrap();
    let output = sn2(&["config", "check", file.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert!(
        message.contains(&format!("{}:2:10: `miner.listen`: port 0", file.display())),
        "{message}"
    );
    assert!(stdout(&output).is_empty());
}

#[test]
fn config_check_of_a_missing_file_fails() {
    let output = sn2(&["config", "check", "/nonexistent/sn2.toml"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("cannot read config file /nonexistent/sn2.toml"));
}

#[test]
fn keys_new_shows_the_phrase_once_and_keys_show_the_address() {
    let dir = tempfile::tempdir().unwrap();
    let wallets = dir.path().to_str().unwrap();
    let created = sn2(&[
        "keys",
        "new",
        "--wallet-path",
        wallets,
        "--wallet-name",
        "w",
    ]);
    assert!(created.status.success(), "{}", stderr(&created));
    let text = stdout(&created);
    let file = dir.path().join("w/hotkeys/default");
    let stored: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let phrase = stored["secretPhrase"].as_str().unwrap();
    let seed = stored["secretSeed"].as_str().unwrap();
    assert_eq!(text.matches(phrase).count(), 1, "{text}");
    assert!(!text.contains(&seed[2..]), "the seed is never printed");
    assert!(stderr(&created).is_empty());

    let shown = sn2(&[
        "keys",
        "show",
        "--wallet-path",
        wallets,
        "--wallet-name",
        "w",
    ]);
    assert!(shown.status.success(), "{}", stderr(&shown));
    assert_eq!(
        stdout(&shown).trim(),
        stored["ss58Address"].as_str().unwrap()
    );

    let again = sn2(&[
        "keys",
        "new",
        "--wallet-path",
        wallets,
        "--wallet-name",
        "w",
    ]);
    assert_eq!(again.status.code(), Some(1));
    assert!(stderr(&again).contains("--overwrite"), "{}", stderr(&again));
}

#[test]
fn keys_take_the_wallet_from_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_with_wallet(dir.path(), "text");
    let shown = sn2(&[
        "keys",
        "show",
        "--json",
        "--config",
        config.to_str().unwrap(),
    ]);
    assert!(shown.status.success(), "{}", stderr(&shown));
    let json: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(json["wallet"], "ops");
    assert_eq!(json["hotkey"], "m1");
    assert!(dir.path().join("wallets/ops/hotkeys/m1").exists());
}

#[test]
fn keys_show_refuses_a_world_readable_hotkey() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let config = config_with_wallet(dir.path(), "text");
    let file = dir.path().join("wallets/ops/hotkeys/m1");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let shown = sn2(&["keys", "show", "--config", config.to_str().unwrap()]);
    assert_eq!(shown.status.code(), Some(1));
    assert!(stderr(&shown).contains("chmod 600"), "{}", stderr(&shown));
}

#[test]
fn daemons_start_from_the_config_and_stop_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_with_wallet(dir.path(), "text");
    import_digits(&config);
    for binary in [
        env!("CARGO_BIN_EXE_sn2-miner"),
        env!("CARGO_BIN_EXE_sn2-validator"),
    ] {
        let mut daemon = Daemon::start(binary, &config);
        daemon.wait_for_ready();
        daemon.signal("TERM");
        let (status, lines) = daemon.finish();
        assert!(status.success(), "{binary}: {status:?} {lines:#?}");
        assert!(lines.iter().any(|l| l.contains("SIGTERM")), "{lines:#?}");
        assert!(lines.last().unwrap().contains("stopped"), "{lines:#?}");
    }
}

#[test]
fn daemons_stop_on_ctrl_c_and_log_json_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_with_wallet(dir.path(), "json");
    let stored: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("wallets/ops/hotkeys/m1")).unwrap())
            .unwrap();
    let mut daemon = Daemon::start(env!("CARGO_BIN_EXE_sn2-miner"), &config);
    let ready = daemon.wait_for_ready();
    let event: serde_json::Value = serde_json::from_str(&ready).expect("a JSON log line");
    assert_eq!(event["hotkey"], stored["ss58Address"]);
    daemon.signal("INT");
    let (status, lines) = daemon.finish();
    assert!(status.success(), "{lines:#?}");
    let seed = &stored["secretSeed"].as_str().unwrap()[2..];
    let phrase = stored["secretPhrase"].as_str().unwrap();
    for line in &lines {
        serde_json::from_str::<serde_json::Value>(line).expect("every line is JSON");
        assert!(
            !line.contains(seed) && !line.contains(phrase),
            "secret in log: {line}"
        );
    }
}

#[test]
fn a_daemon_without_config_says_how_to_give_one() {
    let output = Command::new(env!("CARGO_BIN_EXE_sn2-miner"))
        .env_remove("SN2_CONFIG")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("--config <FILE>"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn a_daemon_without_its_hotkey_fails_with_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sn2.toml");
    std::fs::write(
        &config,
        "[chain]\nbackend = \"local\"\n[wallet]\npath = \"nowhere\"\n",
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_sn2-validator"))
        .env("SN2_CONFIG", &config)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert!(message.contains("no hotkey file at"), "{message}");
    assert!(
        message.contains("nowhere/default/hotkeys/default"),
        "{message}"
    );
}

#[test]
fn a_daemon_with_a_bad_config_names_the_place() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sn2.toml");
    std::fs::write(&config, "[validator]\nsample_size = 0\n").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_sn2-validator"))
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains(":2:15: `validator.sample_size`: must be at least 1"),
        "{}",
        stderr(&output)
    );
}

/// `config` switched to the subtensor backend at `endpoint`.
fn on_subtensor(config: &Path, endpoint: &str) {
    let text = std::fs::read_to_string(config).unwrap().replace(
        "backend = \"local\"",
        &format!("backend = \"subtensor\"\nnetwork = \"{endpoint}\"\nnetuid = 1"),
    );
    std::fs::write(config, text).unwrap();
}

#[test]
fn a_dead_chain_endpoint_is_retried_and_does_not_take_the_daemon_down() {
    use std::os::unix::net::UnixDatagram;
    let dir = tempfile::tempdir().unwrap();
    let config = config_with_wallet(dir.path(), "text");
    import_digits(&config);
    // Nothing listens there.
    on_subtensor(
        &config,
        &format!("ws://127.0.0.1:{}", sn2::devnet::free_port().unwrap()),
    );
    let metrics = sn2::config::Config::load(&config).unwrap().metrics.listen.0;
    for binary in [
        env!("CARGO_BIN_EXE_sn2-miner"),
        env!("CARGO_BIN_EXE_sn2-validator"),
    ] {
        let socket_path = dir.path().join("notify.sock");
        let _ = std::fs::remove_file(&socket_path);
        let socket = UnixDatagram::bind(&socket_path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let mut daemon = Daemon::start_with(binary, &config, &[("NOTIFY_SOCKET", &socket_path)]);
        let first = daemon.wait_for("cannot sync the metagraph");
        assert!(
            first.contains("cannot reach the chain at ws://127.0.0.1:"),
            "{first}"
        );
        assert!(first.contains("retry_in_secs=1"), "{first}");
        let second = daemon.wait_for("cannot sync the metagraph");
        assert!(second.contains("failures=2"), "{second}");
        let mut buffer = [0u8; 1024];
        let n = socket.recv(&mut buffer).unwrap();
        let status = String::from_utf8_lossy(&buffer[..n]).into_owned();
        assert!(status.contains("STATUS=chain unreachable"), "{status}");
        if binary.ends_with("sn2-miner") {
            let response = http_get(metrics, "/metrics");
            assert!(response.contains("sn2_chain_up 0"), "{response}");
            assert!(
                response.contains("sn2_chain_sync_failures_total"),
                "{response}"
            );
        }
        daemon.signal("TERM");
        let (status, lines) = daemon.finish();
        assert!(status.success(), "{binary}: {status:?} {lines:#?}");
    }
}

#[test]
fn a_miner_that_cannot_announce_a_reachable_address_says_what_to_set() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_with_wallet(dir.path(), "text");
    on_subtensor(&config, "ws://127.0.0.1:9");
    let text = std::fs::read_to_string(&config).unwrap();
    let text = text.replace("listen = \"127.0.0.1:", "listen = \"0.0.0.0:");
    std::fs::write(&config, text).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_sn2-miner"))
        .env("SN2_CONFIG", &config)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("set `[miner] external_ip`"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn devnet_runs_and_prints_its_final_state_as_json() {
    let output = Command::new(env!("CARGO_BIN_EXE_sn2"))
        .args([
            "devnet",
            "--miners",
            "3",
            "--dishonest",
            "1",
            "--duration",
            "8",
            "--json",
            "--round-interval",
            "1",
        ])
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let miners: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let miners = miners.as_array().unwrap();
    assert_eq!(miners.len(), 3);
    for miner in miners {
        for key in [
            "uid",
            "hotkey",
            "dishonest",
            "requests",
            "verified",
            "p50_ms",
            "score",
            "weight",
        ] {
            assert!(miner.get(key).is_some(), "{key} missing: {miner}");
        }
        if miner["dishonest"] == true {
            assert_eq!(miner["weight"], 0.0, "{miner}");
            assert_eq!(miner["verified"], 0, "{miner}");
        } else if miner["requests"].as_u64().unwrap() > 0 {
            assert!(miner["verified"].as_u64().unwrap() > 0, "{miner}");
        }
    }
    assert!(
        miners.iter().any(|m| m["weight"].as_f64().unwrap() > 0.0),
        "{miners:?}"
    );
}

/// A raw HTTP GET on loopback, returning the whole response.
fn http_get(address: std::net::SocketAddr, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: sn2\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

#[test]
fn the_validator_tells_systemd_and_serves_metrics_and_health() {
    use std::os::unix::net::UnixDatagram;
    let dir = tempfile::tempdir().unwrap();
    let config = config_with_wallet(dir.path(), "text");
    import_digits(&config);
    let metrics = sn2::config::Config::load(&config).unwrap().metrics.listen.0;
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sn2-validator"))
        .env("SN2_CONFIG", &config)
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "1000000")
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let mut wait_for = |needle: &str| loop {
        assert!(
            std::time::Instant::now() < deadline,
            "no {needle:?} from the daemon; saw {seen:?}"
        );
        let mut buffer = [0u8; 1024];
        let n = socket
            .recv(&mut buffer)
            .unwrap_or_else(|e| panic!("no {needle:?} from the daemon ({e}); saw {seen:?}"));
        let message = String::from_utf8_lossy(&buffer[..n]).into_owned();
        seen.push(message.clone());
        if message.contains(needle) {
            return message;
        }
    };
    wait_for("READY=1");
    wait_for("STATUS=round 1 done");
    wait_for("WATCHDOG=1");

    let metrics_page = http_get(metrics, "/metrics");
    assert!(metrics_page.starts_with("HTTP/1.1 200"), "{metrics_page}");
    assert!(metrics_page.contains("sn2_rounds_total"), "{metrics_page}");
    assert!(
        metrics_page.contains("sn2_response_seconds_bucket{le=\"+Inf\"}"),
        "{metrics_page}"
    );
    let health = http_get(metrics, "/health");
    assert!(health.contains("\"status\":\"ok\""), "{health}");

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    wait_for("STOPPING=1");
    assert!(child.wait().unwrap().success());
}

/// The NixOS VM test's scenario on loopback: a validator and a miner daemon, each reading its
/// hotkey from a file of its own (`[wallet] hotkey_file`, mode 0400, as systemd hands over a
/// credential) with its models imported before the start, twice, as the module's
/// `ExecStartPre` does on every start. The validator verifies the miner's proofs.
#[test]
fn daemons_with_credential_hotkeys_run_rounds_as_the_nixos_module_starts_them() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let wallets = dir.path().join("wallets");
    let mut addresses = Vec::new();
    for role in ["validator", "miner"] {
        let made = sn2(&[
            "keys",
            "new",
            "--wallet-path",
            wallets.to_str().unwrap(),
            "--wallet-hotkey",
            role,
        ]);
        assert!(made.status.success(), "{}", stderr(&made));
        let credential = dir.path().join(format!("{role}-credential"));
        std::fs::rename(wallets.join("default/hotkeys").join(role), &credential).unwrap();
        std::fs::set_permissions(&credential, std::fs::Permissions::from_mode(0o400)).unwrap();
        let key: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&credential).unwrap()).unwrap();
        addresses.push(key["ss58Address"].as_str().unwrap().to_string());
    }
    let miner_port = sn2::devnet::free_port().unwrap();
    let validator_metrics = sn2::devnet::free_port().unwrap();
    let neurons = format!(
        "[[chain.neurons]]\nuid = 0\nhotkey = \"{}\"\nvalidator_permit = true\nstake = 1000.0\n\
         axon = \"127.0.0.1:{validator_metrics}\"\n\
         [[chain.neurons]]\nuid = 1\nhotkey = \"{}\"\naxon = \"127.0.0.1:{miner_port}\"\n",
        addresses[0], addresses[1]
    );
    let mut configs = Vec::new();
    for (role, metrics_port) in [
        ("validator", validator_metrics),
        ("miner", sn2::devnet::free_port().unwrap()),
    ] {
        let config = dir.path().join(format!("{role}.toml"));
        std::fs::write(
            &config,
            format!(
                "[chain]\nbackend = \"local\"\n{neurons}\
                 [wallet]\nhotkey_file = \"{role}-credential\"\n\
                 [models]\ndir = \"{role}-models\"\n\
                 [miner]\nlisten = \"127.0.0.1:{miner_port}\"\n\
                 [metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n\
                 [validator]\nstate_dir = \"{role}-state\"\nround_interval_secs = 1\n\
                 sample_size = 1\n"
            ),
        )
        .unwrap();
        let shown = sn2(&["keys", "show", "--config", config.to_str().unwrap()]);
        assert!(shown.status.success(), "{}", stderr(&shown));
        assert!(stdout(&shown).contains(&addresses[configs.len()]));
        import_digits(&config);
        import_digits(&config);
        let listed = sn2(&["model", "list", "--config", config.to_str().unwrap()]);
        assert_eq!(stdout(&listed).lines().count(), 1, "{}", stdout(&listed));
        configs.push(config);
    }

    let mut validator = Daemon::start(env!("CARGO_BIN_EXE_sn2-validator"), &configs[0]);
    validator.wait_for_ready();
    let mut miner = Daemon::start(env!("CARGO_BIN_EXE_sn2-miner"), &configs[1]);
    miner.wait_for(&addresses[1]);
    miner.wait_for_ready();

    let metrics = std::net::SocketAddr::from(([127, 0, 0, 1], validator_metrics));
    let verified = |page: &str| {
        page.lines()
            .find_map(|line| line.strip_prefix("sn2_proofs_verified_total "))
            .and_then(|n| n.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let mut page = http_get(metrics, "/metrics");
    while verified(&page) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no proof verified; the validator's metrics:\n{page}"
        );
        std::thread::sleep(Duration::from_millis(200));
        page = http_get(metrics, "/metrics");
    }
    for daemon in [miner, validator] {
        daemon.signal("TERM");
        let (status, lines) = daemon.finish();
        assert!(status.success(), "{status:?} {lines:#?}");
    }
}

/// A signed manifest for this machine's system, of a made-up store path.
fn signed_manifest(key: &sn2::update::SecretKey, serial: u64) -> String {
    let output = sn2::update::Output {
        system: sn2::update::current_system(),
        store_path: nix_derivation::StorePath::from_absolute_path(
            b"/nix/store/9d2lc0cqkgx0vhdj44rmbyzy38p5k2gy-sn2-0.1.0",
        )
        .unwrap(),
        nar_hash: nix_derivation::NixHash::parse(
            "sha256:04zwf782yjwnh3q6hz5izfd6jyip8kgw6g6yj43fiqhbyhdd0dqw",
        )
        .unwrap(),
        nar_size: 120,
    };
    let body = sn2::update::testing::release(serial, sn2::update::unix_now(), vec![output]);
    sn2::update::sign(&body, key).unwrap()
}

/// Adds an `[update]` section to a config made by `config_with_wallet`.
fn with_updates(config: &Path, mode: &str, manifest: &Path, key: &sn2::update::SecretKey) {
    let mut text = std::fs::read_to_string(config).unwrap();
    text.push_str(&format!(
        "[update]\nmode = \"{mode}\"\nmanifest = \"{}\"\ntrusted_keys = [\"{}\"]\n\
         poll_interval_secs = 1\nstate_dir = \"update\"\n",
        manifest.display(),
        key.public()
    ));
    std::fs::write(config, text).unwrap();
}

/// `[update] mode = "notify"`: a newer signed release is logged and shown in the metrics;
/// a manifest by an unknown key, or older than the release accepted, is refused with its
/// reason, also after a restart, and the daemon keeps serving.
#[test]
fn a_daemon_notifies_of_a_newer_signed_release_and_refuses_bad_manifests() {
    use std::os::unix::net::UnixDatagram;
    let dir = tempfile::tempdir().unwrap();
    let config = config_with_wallet(dir.path(), "text");
    let publisher = sn2::update::SecretKey::generate("sn2-release-test").unwrap();
    let manifest = dir.path().join("stable.manifest");
    std::fs::write(&manifest, signed_manifest(&publisher, 5)).unwrap();
    with_updates(&config, "notify", &manifest, &publisher);
    let metrics = sn2::config::Config::load(&config).unwrap().metrics.listen.0;

    // systemd hears of it too, in the service's status line.
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut miner = Daemon::start_with(
        env!("CARGO_BIN_EXE_sn2-miner"),
        &config,
        &[("NOTIFY_SOCKET", &socket_path)],
    );
    let line = miner.wait_for("a newer verified release is available");
    assert!(line.contains("serial=5"), "{line}");
    let mut said = Vec::new();
    let status = loop {
        let mut buffer = [0u8; 1024];
        let n = socket.recv(&mut buffer).expect("a status from the daemon");
        let message = String::from_utf8_lossy(&buffer[..n]).into_owned();
        if message.contains("STATUS=a newer verified release is available") {
            break message;
        }
        said.push(message);
        assert!(said.len() < 50, "{said:#?}");
    };
    assert!(status.contains("serial 5"), "{status}");
    let page = http_get(metrics, "/metrics");
    assert!(page.contains("sn2_update_available 1"), "{page}");
    assert!(page.contains("sn2_update_release_serial 5"), "{page}");

    let stranger = sn2::update::SecretKey::generate("someone-else").unwrap();
    std::fs::write(&manifest, signed_manifest(&stranger, 6)).unwrap();
    let line = miner.wait_for("release manifest refused");
    assert!(line.contains("no signature by a trusted key"), "{line}");
    std::fs::write(&manifest, signed_manifest(&publisher, 4)).unwrap();
    let line = miner.wait_for("is not above 5");
    assert!(line.contains("release manifest refused"), "{line}");
    let page = http_get(metrics, "/metrics");
    assert!(!page.contains("sn2_update_refusals_total 0"), "{page}");
    miner.signal("TERM");
    assert!(miner.finish().0.success());

    // The accepted serial outlives the process: the old manifest is still refused.
    let mut restarted = Daemon::start(env!("CARGO_BIN_EXE_sn2-miner"), &config);
    restarted.wait_for("is not above 5");
    restarted.signal("TERM");
    assert!(restarted.finish().0.success());
}

/// `[update] mode = "nixos"`: the verified manifest is handed to the upgrade unit, byte for
/// byte, in the update state directory.
#[test]
fn a_daemon_hands_a_verified_release_to_the_nixos_upgrade_unit() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_with_wallet(dir.path(), "text");
    let publisher = sn2::update::SecretKey::generate("sn2-release-test").unwrap();
    let manifest = dir.path().join("stable.manifest");
    let text = signed_manifest(&publisher, 9);
    std::fs::write(&manifest, &text).unwrap();
    with_updates(&config, "nixos", &manifest, &publisher);
    let mut miner = Daemon::start(env!("CARGO_BIN_EXE_sn2-miner"), &config);
    miner.wait_for("handed to the NixOS upgrade unit");
    let handed = dir.path().join("update/verified-release.manifest");
    assert_eq!(std::fs::read_to_string(handed).unwrap(), text);
    miner.signal("TERM");
    assert!(miner.finish().0.success());
}

/// A certificate authority and a `localhost` certificate it signed, for an https server
/// that the daemon trusts through SSL_CERT_FILE: (CA in PEM, leaf in DER, leaf key in DER).
fn localhost_tls() -> (String, Vec<u8>, Vec<u8>) {
    use base64::Engine as _;
    use rcgen::{
        BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
        KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let mut leaf_params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let leaf = leaf_params.signed_by(&leaf_key, &issuer).unwrap();
    let encoded = base64::engine::general_purpose::STANDARD.encode(ca.der());
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in encoded.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).unwrap());
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    (pem, leaf.der().to_vec(), leaf_key.serialize_der())
}

/// Serves `file` over https on a loopback port (a fresh read per request), in a thread.
fn serve_https(file: PathBuf, cert: Vec<u8>, key: Vec<u8>) -> u16 {
    use std::io::{Read, Write};
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.into()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.into()),
        )
        .unwrap();
    let config = std::sync::Arc::new(config);
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            let connection = rustls::ServerConnection::new(config.clone()).unwrap();
            let mut tls = rustls::StreamOwned::new(connection, stream);
            let mut request = Vec::new();
            let mut byte = [0u8; 1];
            while !request.ends_with(b"\r\n\r\n") {
                match tls.read(&mut byte) {
                    Ok(1) => request.push(byte[0]),
                    _ => break,
                }
            }
            let body = std::fs::read(&file).unwrap_or_default();
            let _ = write!(
                tls,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = tls.write_all(&body);
            tls.conn.send_close_notify();
            let _ = tls.flush();
        }
    });
    port
}

/// The manifest over https, with the server's certificate checked against the system's
/// roots (here a test CA given by SSL_CERT_FILE); an untrusted server is not read.
#[test]
fn a_daemon_reads_the_manifest_over_https_from_a_trusted_server_only() {
    let dir = tempfile::tempdir().unwrap();
    let (ca_pem, cert, key) = localhost_tls();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca_pem).unwrap();
    let publisher = sn2::update::SecretKey::generate("sn2-release-test").unwrap();
    let manifest = dir.path().join("stable.manifest");
    std::fs::write(&manifest, signed_manifest(&publisher, 3)).unwrap();
    let port = serve_https(manifest, cert, key);

    let config = config_with_wallet(dir.path(), "text");
    let url = PathBuf::from(format!("https://localhost:{port}/sn2/stable.manifest"));
    with_updates(&config, "notify", &url, &publisher);
    let mut trusting = Daemon::start_with(
        env!("CARGO_BIN_EXE_sn2-miner"),
        &config,
        &[("SSL_CERT_FILE", &ca_file)],
    );
    let line = trusting.wait_for("a newer verified release is available");
    assert!(line.contains("serial=3"), "{line}");
    trusting.signal("TERM");
    assert!(trusting.finish().0.success());

    let other_ca = dir.path().join("other-ca.pem");
    std::fs::write(&other_ca, localhost_tls().0).unwrap();
    let mut distrusting = Daemon::start_with(
        env!("CARGO_BIN_EXE_sn2-miner"),
        &config,
        &[("SSL_CERT_FILE", &other_ca)],
    );
    let line = distrusting.wait_for("cannot read the release manifest");
    assert!(line.contains("TLS handshake failed"), "{line}");
    distrusting.signal("TERM");
    assert!(distrusting.finish().0.success());
}

#[test]
fn config_check_for_a_role_refuses_what_that_daemon_refuses() {
    let example = example();
    // The example's defaults: a miner on 0.0.0.0 on subtensor with no external_ip.
    let miner = sn2(&[
        "config",
        "check",
        "--role",
        "miner",
        example.to_str().unwrap(),
    ]);
    assert_eq!(miner.status.code(), Some(1));
    assert!(
        stderr(&miner).contains("`miner.listen`: the miner listens on 0.0.0.0:8091"),
        "{}",
        stderr(&miner)
    );
    assert!(stderr(&miner).contains("set `[miner] external_ip`"));
    let validator = sn2(&[
        "config",
        "check",
        "--role",
        "validator",
        example.to_str().unwrap(),
    ]);
    assert!(validator.status.success(), "{}", stderr(&validator));
    // Without a role, what one daemon alone refuses is a warning naming it.
    let any = sn2(&["config", "check", example.to_str().unwrap()]);
    assert!(any.status.success());
    assert!(
        stderr(&any).contains("warning: sn2-miner would refuse this file"),
        "{}",
        stderr(&any)
    );
    assert!(!stderr(&any).contains("sn2-validator would refuse"));
}

#[test]
fn a_daemon_refuses_at_start_what_config_check_refuses_for_its_role() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_with_wallet(dir.path(), "text");
    let text = std::fs::read_to_string(&config).unwrap();
    // The metrics on the miner's own port.
    let miner_port = text
        .split("[miner]\nlisten = \"127.0.0.1:")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_string();
    let clashing = text.replace(
        "[metrics]\nlisten = \"127.0.0.1:",
        &format!("[metrics]\nlisten = \"127.0.0.1:{miner_port}\"\n# was \"127.0.0.1:"),
    );
    std::fs::write(&config, &clashing).unwrap();
    let check = sn2(&[
        "config",
        "check",
        "--role",
        "miner",
        config.to_str().unwrap(),
    ]);
    assert_eq!(check.status.code(), Some(1));
    assert!(
        stderr(&check).contains("`metrics.listen`"),
        "{}",
        stderr(&check)
    );
    let started = Command::new(env!("CARGO_BIN_EXE_sn2-miner"))
        .env("SN2_CONFIG", &config)
        .output()
        .unwrap();
    assert_eq!(started.status.code(), Some(1));
    assert!(
        stderr(&started).contains(&format!("takes TCP port {miner_port} of `[miner] listen`")),
        "{}",
        stderr(&started)
    );
    // The validator does not serve the miner's port: the same file is fine for it.
    let check = sn2(&[
        "config",
        "check",
        "--role",
        "validator",
        config.to_str().unwrap(),
    ]);
    assert!(check.status.success(), "{}", stderr(&check));
}

#[test]
fn model_names_are_unique_and_models_can_be_removed() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_with_wallet(dir.path(), "text");
    let config = config.to_str().unwrap();
    import_digits(Path::new(config));
    let list = |expect: &str| {
        let listed = sn2(&["model", "list", "--config", config]);
        assert!(listed.status.success());
        let shown = stdout(&listed);
        assert_eq!(shown.lines().count(), 1, "{shown}");
        assert!(shown.contains(expect), "{shown}");
        shown.split_whitespace().next().unwrap().to_string()
    };
    let digits_id = list("digits-mlp");
    // Importing the same model again changes nothing.
    import_digits(Path::new(config));
    assert_eq!(list("digits-mlp"), digits_id);

    // Another model under the same name is refused, naming the ways out.
    let mnist = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/mnist-mlp/model.onnx");
    let import_mnist = |extra: &[&str]| {
        let mut args = vec![
            "model",
            "import",
            mnist.to_str().unwrap(),
            "--name",
            "digits-mlp",
            "--config",
            config,
        ];
        args.extend_from_slice(extra);
        sn2(&args)
    };
    let refused = import_mnist(&[]);
    assert_eq!(refused.status.code(), Some(1));
    let said = stderr(&refused);
    assert!(
        said.contains("a different model named `digits-mlp`"),
        "{said}"
    );
    assert!(
        said.contains("--replace") && said.contains("sn2 model remove"),
        "{said}"
    );
    assert_eq!(list("digits-mlp"), digits_id);
    // --replace puts the new model in the old one's place.
    let replaced = import_mnist(&["--replace"]);
    assert!(replaced.status.success(), "{}", stderr(&replaced));
    let mnist_id = list("digits-mlp");
    assert_ne!(mnist_id, digits_id);

    // An id prefix needs 8 hex digits; a shorter one is told so.
    let short = sn2(&["model", "info", &mnist_id[..5], "--config", config]);
    assert_eq!(short.status.code(), Some(1));
    assert!(
        stderr(&short).contains("too short for an id prefix: give at least 8 hex digits"),
        "{}",
        stderr(&short)
    );
    let help = sn2(&["model", "info", "--help"]);
    assert!(stdout(&help).contains("at least 8 hex digits"));

    let removed = sn2(&["model", "remove", &mnist_id[..8], "--config", config]);
    assert!(removed.status.success(), "{}", stderr(&removed));
    assert!(stdout(&removed).contains("removed `digits-mlp`"));
    let listed = sn2(&["model", "list", "--config", config]);
    assert!(
        stdout(&listed).starts_with("no models"),
        "{}",
        stdout(&listed)
    );
    let again = sn2(&["model", "remove", "digits-mlp", "--config", config]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        stderr(&again).contains("no model `digits-mlp`"),
        "{}",
        stderr(&again)
    );
    // A full id of a model that is not there is said plainly, once.
    let gone = sn2(&["model", "info", &mnist_id, "--config", config]);
    assert_eq!(gone.status.code(), Some(1));
    let said = stderr(&gone);
    assert!(said.contains(&format!("no model {mnist_id}")), "{said}");
    assert!(!said.contains("os error"), "{said}");
}

#[test]
fn inputs_come_from_data_sets_and_far_values_are_refused_unless_clamped() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_with_wallet(dir.path(), "text");
    let config = config.to_str().unwrap();
    import_digits(Path::new(config));
    let setup = sn2(&["model", "setup", "digits-mlp", "--config", config]);
    assert!(setup.status.success(), "{}", stderr(&setup));
    let prove = |input: &Path, extra: &[&str]| {
        let out = dir.path().join("proof.json");
        let mut args = vec![
            "prove",
            "--model",
            "digits-mlp",
            "--input",
            input.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--config",
            config,
        ];
        args.extend_from_slice(extra);
        sn2(&args)
    };
    // The model's own test.json, a data set: --sample picks an input.
    let test = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/digits-mlp/test.json");
    let proved = prove(&test, &["--sample", "2"]);
    assert!(proved.status.success(), "{}", stderr(&proved));
    assert!(
        stderr(&proved).contains("taking input 2"),
        "{}",
        stderr(&proved)
    );
    let past = prove(&test, &["--sample", "100000"]);
    assert_eq!(past.status.code(), Some(1));
    assert!(stderr(&past).contains("is past the data set's"));

    // digits-mlp takes pixels from 0 to 16: 1e9 is far outside.
    let mut values = vec![1.0f64; 64];
    values[5] = 1e9;
    let far = dir.path().join("far.json");
    std::fs::write(
        &far,
        serde_json::json!({ "input_data": [values] }).to_string(),
    )
    .unwrap();
    let refused = prove(&far, &[]);
    assert_eq!(refused.status.code(), Some(1));
    let said = stderr(&refused);
    assert!(
        said.contains("input value 1000000000 (index 5) lies far outside"),
        "{said}"
    );
    assert!(said.contains("--clamp"), "{said}");
    let clamped = prove(&far, &["--clamp"]);
    assert!(clamped.status.success(), "{}", stderr(&clamped));
    assert!(
        stderr(&clamped).contains("warning: 1 of 64 input values lie outside"),
        "{}",
        stderr(&clamped)
    );

    // The proving key is read as a stream: a cut, damaged or missing file is still said
    // plainly, and what it says to do is there.
    let stored = sn2::model::ModelStore::new(dir.path().join("models"))
        .open("digits-mlp")
        .unwrap();
    let proving_key =
        sn2::proof::keys::path(&stored, "groth16-bn254", sn2::proof::keys::KeyKind::Proving);
    let whole = std::fs::read(&proving_key).unwrap();
    for (damage, said) in [
        (whole[..whole.len() / 2].to_vec(), "truncated"),
        (whole[..40].to_vec(), "truncated"),
        ([&whole[..], b"x"].concat(), "goes on for 1 byte"),
        (vec![0u8; 100], "not an sn2 key file"),
    ] {
        std::fs::write(&proving_key, &damage).unwrap();
        let refused = prove(&test, &[]);
        assert_eq!(refused.status.code(), Some(1), "{said}");
        assert!(
            stderr(&refused).contains(said),
            "{said}: {}",
            stderr(&refused)
        );
    }
    std::fs::remove_file(&proving_key).unwrap();
    let missing = prove(&test, &[]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        stderr(&missing).contains("has no groth16-bn254 keys yet: make them with `sn2 model setup"),
        "{}",
        stderr(&missing)
    );
}

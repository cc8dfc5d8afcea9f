use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::*;

const EXAMPLE: &str = include_str!("../../config.example.toml");

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("/etc/sn2/sn2.toml"))
}

fn invalid(text: &str) -> (Option<(usize, usize)>, String, String) {
    let error = parse(text).expect_err("the config should be refused");
    let invalid = error.invalid().expect("an invalid-config error");
    (
        invalid.position,
        invalid.key.clone(),
        invalid.message.clone(),
    )
}

#[test]
fn example_parses_and_shows_the_defaults() {
    assert_eq!(parse(EXAMPLE).unwrap(), parse("").unwrap());
}

/// Every key of the schema, as dotted paths, from the serialised defaults (JSON keeps
/// `None` fields as `null`, so optional keys are listed too).
fn schema_keys() -> BTreeSet<String> {
    fn walk(prefix: &str, value: &serde_json::Value, keys: &mut BTreeSet<String>) {
        if let serde_json::Value::Object(map) = value {
            for (name, inner) in map {
                let path = if prefix.is_empty() {
                    name.clone()
                } else {
                    format!("{prefix}.{name}")
                };
                if inner.is_object() {
                    walk(&path, inner, keys);
                } else {
                    keys.insert(path);
                }
            }
        }
    }
    let mut keys = BTreeSet::new();
    walk(
        "",
        &serde_json::to_value(Config::default()).unwrap(),
        &mut keys,
    );
    keys
}

/// The keys the example names, set or commented out (`# key = value`).
fn example_keys() -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    let mut section = String::new();
    for line in EXAMPLE.lines() {
        let line = line.trim();
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_string();
            continue;
        }
        let body = line.strip_prefix('#').map_or(line, str::trim_start);
        if let Some((key, _)) = body.split_once(" = ")
            && !key.is_empty()
            && key.chars().all(|c| c.is_ascii_lowercase() || c == '_')
        {
            keys.insert(format!("{section}.{key}"));
        }
    }
    keys
}

#[test]
fn example_documents_every_key_of_the_schema() {
    let missing: Vec<_> = schema_keys().difference(&example_keys()).cloned().collect();
    assert!(
        missing.is_empty(),
        "keys missing from config.example.toml: {missing:?}"
    );
    let unknown: Vec<_> = example_keys().difference(&schema_keys()).cloned().collect();
    assert!(
        unknown.is_empty(),
        "keys in config.example.toml but not in the schema: {unknown:?}"
    );
}

#[test]
fn example_values_of_commented_keys_are_valid() {
    let uncommented: String = EXAMPLE
        .lines()
        .map(|line| match line.strip_prefix("# ") {
            Some(body)
                if body
                    .split_once(" = ")
                    .is_some_and(|(k, _)| !k.contains(' ')) =>
            {
                body
            }
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let config = parse(&uncommented).unwrap();
    assert_eq!(config.miner.external_port.map(|p| p.get()), Some(8091));
    assert!(config.update.manifest.is_some());
}

#[test]
fn defaults_match_subnet_2() {
    let config = parse("").unwrap();
    assert_eq!(config.netuid(), 2);
    assert_eq!(config.miner.listen.0.port(), 8091);
    assert_eq!(config.metrics.listen.0.port(), 9090);
    assert_eq!(config.wallet.name.as_str(), "default");
    assert_eq!(config.wallet.hotkey.as_str(), "default");
    assert_eq!(config.update.mode, UpdateMode::Off);
}

#[test]
fn netuid_follows_the_network_unless_set() {
    let test = parse("[chain]\nnetwork = \"test\"\n").unwrap();
    assert_eq!(test.netuid(), 118);
    assert_eq!(
        test.chain.netuid,
        Some(118),
        "resolved on load, so check shows it"
    );
    let custom = parse("[chain]\nnetwork = \"test\"\nnetuid = 7\n").unwrap();
    assert_eq!(custom.netuid(), 7);
    let local = parse("[chain]\nnetwork = \"local\"\n").unwrap();
    assert_eq!(local.chain.network.endpoint(), "ws://127.0.0.1:9944");
}

#[test]
fn relative_paths_are_relative_to_the_config_file() {
    let config =
        parse("[models]\ndir = \"models\"\n[validator]\nstate_dir = \"/var/lib/sn2\"\n").unwrap();
    assert_eq!(config.models.dir, PathBuf::from("/etc/sn2/models"));
    assert_eq!(config.validator.state_dir, PathBuf::from("/var/lib/sn2"));
    let credential = parse("[wallet]\nhotkey_file = \"keys/hot\"\n").unwrap();
    assert_eq!(
        credential.wallet_location().hotkey_file(),
        PathBuf::from("/etc/sn2/keys/hot")
    );
}

#[test]
fn unknown_keys_are_refused_with_their_place() {
    let (position, key, message) = invalid("[miner]\nlisten = \"0.0.0.0:8091\"\nport = 1\n");
    assert_eq!(position, Some((3, 1)));
    assert_eq!(key, "miner.port");
    assert!(message.contains("unknown field `port`"), "{message}");

    let (position, key, _) = invalid("[minr]\n");
    assert_eq!(position, Some((1, 2)));
    assert_eq!(key, "minr");
}

#[test]
fn wrong_types_are_refused_with_their_place() {
    let (position, key, message) = invalid("[chain]\nnetuid = \"two\"\n");
    assert_eq!(position, Some((2, 10)));
    assert_eq!(key, "chain.netuid");
    assert!(message.contains("expected u16"), "{message}");

    let (_, key, _) = invalid("[metrics]\nenabled = \"yes\"\n");
    assert_eq!(key, "metrics.enabled");
}

#[test]
fn impossible_values_are_refused_with_their_place() {
    let cases = [
        (
            "[miner]\nlisten = \"0.0.0.0:0\"\n",
            "miner.listen",
            "port 0",
        ),
        (
            "[miner]\nlisten = \"8091\"\n",
            "miner.listen",
            "not an address",
        ),
        (
            "[miner]\nexternal_port = 0\n",
            "miner.external_port",
            "nonzero",
        ),
        (
            "[miner]\nmax_concurrent_proofs = 0\n",
            "miner.max_concurrent_proofs",
            "at least 1",
        ),
        (
            "[miner]\nmodels = [\"digits-mlp\"]\n",
            "miner.models",
            "not a model id",
        ),
        (
            "[validator]\nweights_mode = \"sometimes\"\n",
            "validator.weights_mode",
            "auto",
        ),
        (
            "[wallet]\nhotkey = \"\"\n",
            "wallet.hotkey",
            "must not be empty",
        ),
        ("[wallet]\nname = \"../x\"\n", "wallet.name", "plain name"),
        (
            "[validator]\nrequest_timeout_secs = 0\n",
            "validator.request_timeout_secs",
            "at least 1: give a whole number of seconds",
        ),
        (
            "[validator]\nround_interval_secs = \"10\"\n",
            "validator.round_interval_secs",
            "expected a whole number of seconds, at least 1",
        ),
        (
            "[validator]\nround_interval_secs = -5\n",
            "validator.round_interval_secs",
            "-5 is negative",
        ),
        (
            "[miner]\nmax_request_bytes = 1.5\n",
            "miner.max_request_bytes",
            "expected a whole number, at least 1",
        ),
        (
            "[miner]\nlisten = \"0.0.0.0:70000\"\n",
            "miner.listen",
            "port 70000 is out of range: a port is a number from 1 to 65535",
        ),
        (
            "[logging]\nlevel = \"verbose\"\n",
            "logging.level",
            "`verbose` is not a log level: use one of trace, debug, info, warn, error, off",
        ),
        (
            "[logging]\nlevel = \"info,chatty\"\n",
            "logging.level",
            "`chatty` is not a log level",
        ),
        (
            "[[chain.neurons]]\nuid = 1\nhotkey = \"miner-one\"\n",
            "chain.neurons",
            "uid 1: ",
        ),
        (
            "[[chain.neurons]]\nuid = 1\nhotkey = \"5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY\"\n[[chain.neurons]]\nuid = 1\nhotkey = \"5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty\"\n",
            "chain.neurons",
            "uid 1 is given to two neurons",
        ),
        (
            "[chain]\nnetwork = \"mainnet\"\n",
            "chain.network",
            "unknown network",
        ),
        (
            "[logging]\nformat = \"xml\"\n",
            "logging.format",
            "unknown variant",
        ),
        (
            "[logging]\nlevel = \"info,=x=y\"\n",
            "logging.level",
            "not a log filter",
        ),
        (
            "[update]\nmode = \"notify\"\n",
            "update",
            "needs `manifest`",
        ),
        (
            "[update]\nmode = \"profile\"\nmanifest = \"/m\"\n",
            "update",
            "trusted_keys",
        ),
        (
            "[update]\ntrusted_keys = [\"nokey\"]\n",
            "update",
            "name:base64",
        ),
        (
            "[update]\nmanifest = \"http://user:pw@releases.example/m\"\n",
            "update",
            "https:// URL or a file path",
        ),
    ];
    for (text, expected_key, expected_words) in cases {
        let (position, key, message) = invalid(text);
        assert!(position.is_some(), "{text}: no position");
        assert_eq!(key, expected_key, "{text}");
        assert!(message.contains(expected_words), "{text}: {message}");
    }
}

#[test]
fn log_levels_and_directives_are_accepted() {
    for level in ["info", "WARN", "off", "info,sn2::wire=debug", "sn2=trace"] {
        let text = format!("[logging]\nlevel = \"{level}\"\n");
        assert!(parse(&text).is_ok(), "{level}");
    }
}

/// Each case is refused for one daemon, with the key and words given, and accepted or not
/// by the other as given (a validator does not care where a miner listens); the fixed
/// file is accepted.
#[test]
fn what_a_daemon_refuses_at_start_is_refused_for_its_role() {
    use super::Role;
    let origin = Path::new("/etc/sn2/sn2.toml");
    let check = |text: &str, role| {
        let config = Config::parse(text, origin).expect("valid values");
        config.check_for(role, text, origin)
    };
    let cases = [
        (
            "[chain]\nbackend = \"subtensor\"\n[miner]\nlisten = \"0.0.0.0:8091\"\n",
            Role::Miner,
            true,
            "miner.listen",
            "set `[miner] external_ip`",
            "[chain]\nbackend = \"subtensor\"\n[miner]\nlisten = \"0.0.0.0:8091\"\nexternal_ip = \"203.0.113.7\"\n",
        ),
        (
            "[chain]\nbackend = \"local\"\n[miner]\nlisten = \"0.0.0.0:9090\"\n[metrics]\nlisten = \"127.0.0.1:9090\"\n",
            Role::Miner,
            true,
            "metrics.listen",
            "takes TCP port 9090 of `[miner] listen`",
            "[chain]\nbackend = \"local\"\n[miner]\nlisten = \"0.0.0.0:9090\"\n[metrics]\nlisten = \"127.0.0.1:9091\"\n",
        ),
        (
            "[chain]\nbackend = \"subtensor\"\n[validator]\nkey_server = \"203.0.113.7:9090\"\n[metrics]\nenabled = false\n",
            Role::Validator,
            false,
            "validator.key_server",
            "the key server is the metrics listener",
            "[chain]\nbackend = \"subtensor\"\n[validator]\nkey_server = \"203.0.113.7:9090\"\n",
        ),
        (
            "[chain]\nbackend = \"subtensor\"\n[validator.ceremony]\nptau = \"/var/lib/sn2/pot.ptau\"\n",
            Role::Validator,
            false,
            "validator.ceremony.ptau",
            "fetch this validator's transcripts",
            "[chain]\nbackend = \"subtensor\"\n[validator]\nkey_server = \"203.0.113.7:9090\"\n[validator.ceremony]\nptau = \"/var/lib/sn2/pot.ptau\"\n",
        ),
        (
            "[chain]\nbackend = \"local\"\n[api]\nenabled = true\nlisten = \"0.0.0.0:9090\"\n",
            Role::Validator,
            true,
            "api.listen",
            "takes TCP port 9090 of `[metrics] listen`",
            "[chain]\nbackend = \"local\"\n[api]\nenabled = true\nlisten = \"0.0.0.0:8092\"\n",
        ),
    ];
    for (text, role, other_accepts, expected_key, expected_words, fixed) in cases {
        let error = check(text, role).expect_err(text);
        let invalid = error.invalid().expect("an invalid-config error");
        assert_eq!(invalid.key, expected_key, "{text}");
        assert!(invalid.message.contains(expected_words), "{text}: {error}");
        let other = match role {
            Role::Miner => Role::Validator,
            Role::Validator => Role::Miner,
        };
        assert_eq!(
            check(text, other).is_ok(),
            other_accepts,
            "{text} for {other:?}"
        );
        assert!(check(fixed, role).is_ok(), "{fixed}");
    }
    // The place of a plainly written value is shown.
    let error = check(cases[1].0, Role::Miner).unwrap_err();
    assert_eq!(error.invalid().unwrap().position, Some((6, 10)));
}

#[test]
fn syntax_errors_name_the_place() {
    let error = parse("[chain\n").unwrap_err();
    let shown = error.to_string();
    assert!(shown.starts_with("/etc/sn2/sn2.toml:1:7: "), "{shown}");
    assert!(shown.contains("1 | [chain"), "{shown}");
}

#[test]
fn errors_show_the_line_with_a_caret() {
    let error = parse("[validator]\nsample_size = 0\n").unwrap_err();
    assert_eq!(
        error.to_string(),
        "/etc/sn2/sn2.toml:2:15: `validator.sample_size`: must be at least 1: give a whole number\n  |\n2 | sample_size = 0\n  |               ^"
    );
}

#[test]
fn a_valid_update_section_is_accepted() {
    let config = parse(
        "[update]\nmode = \"notify\"\nmanifest = \"https://u:secret@releases.example/m\"\n\
         trusted_keys = [\"sn2-1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\"]\n",
    )
    .unwrap();
    assert_eq!(config.update.mode, UpdateMode::Notify);
    let shown = config.to_redacted_toml();
    assert!(!shown.contains("secret"), "{shown}");
    assert!(
        shown.contains("https://u:<redacted>@releases.example/m"),
        "{shown}"
    );
}

#[test]
fn redacted_output_is_itself_a_valid_config() {
    let config = parse("[chain]\nnetwork = \"test\"\n").unwrap();
    let again = parse(&config.to_redacted_toml()).unwrap();
    assert_eq!(again, config);
}

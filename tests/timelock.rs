//! Timelocked weight commits against their real peer, PyPI's `bittensor-drand` 2.x (the
//! library the Python SDK and upstream Subnet 2 commit with): ciphertexts go both ways and
//! open with quicknet's real pulse for round 1000 (recorded in subtensor's drand pallet
//! tests), and for a table of epoch-schedule states sn2 picks the reveal round that
//! `get_encrypted_commit_v2` picks.

mod common;

use sn2::chain::epoch::{self, EpochSchedule};
use sn2::chain::subtensor::calls;
use sn2::chain::subtensor::weights::MAX_TIMELOCKED_COMMIT_BYTES;
use sn2::timelock::{self, TimelockError};

const ROUND: u64 = 1000;
const PULSE: &str = "b44679b9a59af2ec876b1a6b1ad52ea9b1615fc3982b19576350f93447cb1125e342b73a8dd2bacbe47e4b6b63ed5e39";

/// Runs tests/py/drand.py with the real package.
fn drand(args: &[&str]) -> serde_json::Value {
    common::python_json("drand.py", args)
}

fn hotkey() -> [u8; 32] {
    *sn2::keys::Hotkey::from_seed(&[3; 32]).public().as_bytes()
}

fn payload(miners: u16) -> Vec<u8> {
    let uids: Vec<u16> = (0..miners).collect();
    let values: Vec<u16> = uids.iter().map(|u| u.wrapping_mul(257)).collect();
    calls::timelock_payload(&hotkey(), &uids, &values, 7)
}

fn pulse() -> Vec<u8> {
    hex::decode(PULSE).unwrap()
}

#[test]
fn a_commit_sealed_by_sn2_opens_in_bittensor_drand() {
    let payload = payload(256);
    let commit = timelock::encrypt(&payload, ROUND);
    let opened = drand(&["decrypt", &hex::encode(&commit), PULSE]);
    assert_eq!(opened["plaintext"], hex::encode(&payload), "{opened}");

    // Sealed for another round, it does not open with round 1000's pulse.
    let other = timelock::encrypt(&payload, ROUND + 1);
    let refused = drand(&["decrypt", &hex::encode(&other), PULSE]);
    assert!(refused.get("plaintext").is_none(), "{refused}");
}

#[test]
fn a_commit_sealed_by_bittensor_drand_opens_in_sn2() {
    let payload = payload(3);
    let sealed = drand(&["encrypt", &hex::encode(&payload), &ROUND.to_string()]);
    let commit = hex::decode(sealed["ciphertext"].as_str().unwrap()).unwrap();
    assert_eq!(timelock::decrypt(&commit, &pulse()).unwrap(), payload);

    // What the chain decodes: the hotkey, uids, values and version key.
    use subxt::ext::codec::Decode;
    let decoded = <(Vec<u8>, Vec<u16>, Vec<u16>, u64)>::decode(&mut &payload[..]).unwrap();
    assert_eq!(
        decoded,
        (hotkey().to_vec(), vec![0, 1, 2], vec![0, 257, 514], 7)
    );

    // Altered anywhere, it is refused with a reason, never opened wrongly.
    let mut tampered = commit.clone();
    let last = tampered.len() - 30;
    tampered[last] ^= 0x80;
    assert!(timelock::decrypt(&tampered, &pulse()).is_err());
    // A point of G1 that is not the round's pulse (the pulse negated: its sign bit
    // flipped) is not the key.
    let mut negated = pulse();
    negated[0] ^= 0x20;
    assert_eq!(
        timelock::decrypt(&commit, &negated),
        Err(TimelockError::WrongRound)
    );
    // A point off the curve is not a signature.
    let mut off_curve = pulse();
    off_curve[47] ^= 0x01;
    assert!(matches!(
        timelock::decrypt(&commit, &off_curve),
        Err(TimelockError::BadSignature(_))
    ));
    assert!(matches!(
        timelock::decrypt(&commit, &[]),
        Err(TimelockError::BadSignature(_))
    ));
}

/// The schedule states of the table, with what each one exercises.
fn schedules() -> Vec<(&'static str, EpochSchedule, u64)> {
    let s = |block, tempo, last, pending, index, since| EpochSchedule {
        block,
        tempo,
        last_epoch_block: last,
        pending_epoch_at: pending,
        epoch_index: index,
        blocks_since_last_step: since,
    };
    vec![
        ("mid-epoch", s(5000, 360, 4900, 0, 13, 100), 1),
        (
            "two epochs of reveal period",
            s(5000, 360, 4900, 0, 13, 100),
            2,
        ),
        (
            "commit lands in an epoch block",
            s(5259, 360, 4900, 0, 13, 359),
            1,
        ),
        (
            "commit lands just after an epoch",
            s(5260, 360, 5260, 0, 14, 0),
            1,
        ),
        (
            "owner trigger pending",
            s(5000, 360, 4900, 5010, 13, 100),
            1,
        ),
        ("trigger already due", s(5000, 360, 4900, 4990, 13, 100), 1),
        (
            "late past MAX_TEMPO",
            s(5000, 360, 4900, 0, 13, epoch::MAX_TEMPO + 1),
            1,
        ),
        ("short tempo", s(777, 10, 770, 0, 70, 7), 3),
        ("tempo 1", s(100, 1, 100, 0, 50, 0), 1),
        ("a new subnet", s(42, 99, 0, 0, 0, 42), 1),
    ]
}

#[test]
fn the_reveal_round_is_the_one_bittensor_drand_picks() {
    for (name, schedule, period) in schedules() {
        let state = serde_json::json!({
            "uids": [1, 2], "values": [3, 4], "version_key": 5,
            "last_epoch_block": schedule.last_epoch_block,
            "pending_epoch_at": schedule.pending_epoch_at,
            "epoch_index": schedule.epoch_index,
            "tempo": schedule.tempo,
            "blocks_since_last_step": schedule.blocks_since_last_step,
            "block": schedule.block,
            "reveal_period": period,
            "block_seconds": 12.0,
            "hotkey": hex::encode(hotkey()),
        });
        let theirs = drand(&["commit_v2", &state.to_string()]);
        let reveal_block = schedule.first_reveal_block(period).unwrap();
        // Their round depends on when it ran; ours at the two ends of that window.
        let ours = |key: &str| {
            epoch::reveal_round(
                reveal_block,
                schedule.block,
                12.0,
                theirs[key].as_f64().unwrap(),
                0,
            )
        };
        let round = theirs["round"].as_u64().unwrap();
        assert!(
            (ours("before")..=ours("after")).contains(&round),
            "{name}: bittensor-drand chose round {round}, sn2 {}..={} (reveal block {reveal_block})",
            ours("before"),
            ours("after")
        );
        // Their commit is a ciphertext sn2 reads, locked to another round than 1000.
        let commit = hex::decode(theirs["commit"].as_str().unwrap()).unwrap();
        assert_eq!(
            timelock::decrypt(&commit, &pulse()),
            Err(TimelockError::WrongRound),
            "{name}"
        );
    }
}

#[test]
fn a_commit_for_256_miners_fits_the_chains_limit() {
    let commit = timelock::encrypt(&payload(256), ROUND);
    assert!(
        commit.len() <= MAX_TIMELOCKED_COMMIT_BYTES,
        "{} bytes",
        commit.len()
    );
    // The largest subnet has 256 uids; even 1024 fit.
    assert!(timelock::encrypt(&payload(1024), ROUND).len() <= MAX_TIMELOCKED_COMMIT_BYTES);
}

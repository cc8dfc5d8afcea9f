//! SS58 addresses: the base58 text form of a 32-byte public key that Bittensor tools print.
//!
//! `base58(prefix || key || blake2b-512("SS58PRE" || prefix || key)[..2])`, with the
//! one-byte prefix form only, which covers Bittensor's prefix 42.

use blake2::{Blake2b512, Digest};

/// The SS58 prefix of Bittensor (and generic Substrate) addresses.
pub const BITTENSOR_PREFIX: u8 = 42;

const CHECKSUM_PREAMBLE: &[u8] = b"SS58PRE";
const CHECKSUM_LEN: usize = 2;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Ss58Error {
    #[error("not base58 text")]
    NotBase58,
    #[error("wrong length: {0} bytes decoded, an SS58 account address has 35")]
    WrongLength(usize),
    #[error("network prefix {found}, expected {expected} (Bittensor)")]
    WrongPrefix { found: u8, expected: u8 },
    #[error("checksum does not match: a character is wrong or missing")]
    BadChecksum,
}

fn checksum(prefix_and_key: &[u8]) -> [u8; CHECKSUM_LEN] {
    let mut hasher = Blake2b512::new();
    hasher.update(CHECKSUM_PREAMBLE);
    hasher.update(prefix_and_key);
    let digest = hasher.finalize();
    [digest[0], digest[1]]
}

/// Encodes a public key as a Bittensor SS58 address.
pub fn encode(public_key: &[u8; 32]) -> String {
    let mut bytes = Vec::with_capacity(1 + 32 + CHECKSUM_LEN);
    bytes.push(BITTENSOR_PREFIX);
    bytes.extend_from_slice(public_key);
    let sum = checksum(&bytes);
    bytes.extend_from_slice(&sum);
    bs58::encode(bytes).into_string()
}

/// Decodes a Bittensor SS58 address into its public key, checking prefix and checksum.
pub fn decode(address: &str) -> Result<[u8; 32], Ss58Error> {
    let bytes = bs58::decode(address)
        .into_vec()
        .map_err(|_| Ss58Error::NotBase58)?;
    if bytes.len() != 1 + 32 + CHECKSUM_LEN {
        return Err(Ss58Error::WrongLength(bytes.len()));
    }
    if bytes[0] != BITTENSOR_PREFIX {
        return Err(Ss58Error::WrongPrefix {
            found: bytes[0],
            expected: BITTENSOR_PREFIX,
        });
    }
    let (body, sum) = bytes.split_at(1 + 32);
    if checksum(body) != sum {
        return Err(Ss58Error::BadChecksum);
    }
    let mut key = [0u8; 32];
    key.copy_from_slice(&body[1..]);
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Alice's well-known development key, as every Substrate tool prints it.
    const ALICE_HEX: &str = "d43593c715fdd31c61141abd04a99fd6822c8558854ccde39a5684e7a56da27d";
    const ALICE_SS58: &str = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY";

    fn alice() -> [u8; 32] {
        hex::decode(ALICE_HEX).unwrap().try_into().unwrap()
    }

    #[test]
    fn encodes_known_address() {
        assert_eq!(encode(&alice()), ALICE_SS58);
    }

    #[test]
    fn decodes_known_address() {
        assert_eq!(decode(ALICE_SS58).unwrap(), alice());
    }

    #[test]
    fn rejects_corrupted_addresses() {
        let mut wrong = ALICE_SS58.to_string();
        wrong.replace_range(10..11, "z");
        assert_eq!(decode(&wrong), Err(Ss58Error::BadChecksum));
        assert_eq!(decode("0OIl"), Err(Ss58Error::NotBase58));
        assert_eq!(decode("5GrwvaEF"), Err(Ss58Error::WrongLength(6)));
        // Polkadot (prefix 0) address of the same key.
        assert_eq!(
            decode("15oF4uVJwmo4TdGW7VfQxNLavjCXviqxT9S1MgbjMNHr6Sp5"),
            Err(Ss58Error::WrongPrefix {
                found: 0,
                expected: 42
            })
        );
    }
}

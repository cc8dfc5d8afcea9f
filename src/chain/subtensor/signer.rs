//! Signing extrinsics with the wallet's sr25519 hotkey (the same key and signing context
//! the wire uses), so no second key type or crate is needed.

use std::sync::Arc;

use subxt::SubstrateConfig;
use subxt::utils::{AccountId32, MultiSignature};

use crate::keys::Hotkey;

#[derive(Clone)]
pub struct HotkeySigner(pub Arc<Hotkey>);

impl HotkeySigner {
    pub fn account(&self) -> AccountId32 {
        AccountId32(*self.0.public().as_bytes())
    }
}

impl subxt::tx::Signer<SubstrateConfig> for HotkeySigner {
    fn account_id(&self) -> AccountId32 {
        self.account()
    }

    fn sign(&self, signer_payload: &[u8]) -> MultiSignature {
        MultiSignature::Sr25519(self.0.sign(signer_payload).0)
    }
}

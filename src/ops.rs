//! Operator operations shared by the CLI, `ctrip dev` and the tests.

use uuid::Uuid;

use crate::domain::apikey;
use crate::domain::checkout::{Accent, TokenQr};
use crate::store::{api_keys, merchants, Store, StoreError};

/// A merchant with its first key.
pub struct CreatedMerchant {
    /// The merchant.
    pub merchant: merchants::Merchant,
    /// Key id.
    pub key_id: Uuid,
    /// The raw key: shown once, never stored or logged.
    pub api_key: String,
}

/// Creates a merchant and a first API key in one transaction.
pub async fn create_merchant(store: &Store, name: &str) -> Result<CreatedMerchant, StoreError> {
    let mut client = store.client().await?;
    let tx = client.transaction().await?;
    let merchant = merchants::create(&tx, name).await?;
    let key = apikey::generate();
    let key_id = api_keys::insert(&tx, merchant.id, &key).await?;
    tx.commit().await?;
    Ok(CreatedMerchant {
        merchant,
        key_id,
        api_key: key.raw,
    })
}

/// Changes what a merchant's payers see (see [`merchants::set_branding`]); false when there
/// is no such merchant.
pub async fn set_branding(
    store: &Store,
    merchant_id: Uuid,
    name: Option<&str>,
    accent: Option<Option<Accent>>,
    token_qr: Option<TokenQr>,
) -> Result<bool, StoreError> {
    let client = store.client().await?;
    merchants::set_branding(&client, merchant_id, name, accent, token_qr).await
}

/// Creates another key for an existing merchant; `None` when there is no such merchant.
pub async fn create_api_key(
    store: &Store,
    merchant_id: Uuid,
) -> Result<Option<(Uuid, String)>, StoreError> {
    let client = store.client().await?;
    if !merchants::exists(&client, merchant_id).await? {
        return Ok(None);
    }
    let key = apikey::generate();
    let id = api_keys::insert(&client, merchant_id, &key).await?;
    Ok(Some((id, key.raw)))
}

/// Revokes a key; false when no such active key exists.
pub async fn revoke_api_key(store: &Store, key_id: Uuid) -> Result<bool, StoreError> {
    let client = store.client().await?;
    api_keys::revoke(&client, key_id).await
}

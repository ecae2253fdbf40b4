//! Merchant authentication: `Authorization: Bearer ck_live_…`.

use uuid::Uuid;

use super::key_cache::{KeyEntry, Lookup};
use super::{ApiError, ApiRequest, AppState};
use crate::domain::apikey;
use crate::store::api_keys;

/// The merchant a request was authenticated as (the full merchant record lives in the
/// store; a request needs only its id and account).
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    /// Merchant id.
    pub id: Uuid,
    /// Its BIP-44 account.
    pub account_index: u32,
}

/// The credentials of a `Bearer` authorization header. The scheme is case-insensitive
/// (HTTP authentication schemes are).
pub fn bearer(header: &warp::http::HeaderValue) -> Option<&str> {
    let v = header.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
        .filter(|t| !t.is_empty())
}

/// Authenticates the request. Unknown, malformed and mismatching keys get the same answer,
/// so the response tells an attacker nothing about which prefixes exist.
pub async fn authenticate(state: &AppState, req: &ApiRequest) -> Result<Caller, ApiError> {
    let header =
        req.headers
            .get(warp::http::header::AUTHORIZATION)
            .ok_or(ApiError::Authentication(
                "missing API key: send Authorization: Bearer <key>",
            ))?;
    let raw = bearer(header).ok_or(ApiError::Authentication("invalid API key"))?;
    let prefix = apikey::lookup_prefix(raw).ok_or(ApiError::Authentication("invalid API key"))?;
    let lookups = &state.metrics.http.api_key_lookups;
    let key = match state.keys.get(prefix) {
        Lookup::Hit(k) => {
            lookups.with_label_values(&["memory"]).inc();
            k
        }
        Lookup::Miss(generation) => {
            lookups.with_label_values(&["database"]).inc();
            let client = state.store.client().await?;
            let stored = api_keys::find_by_prefix(&client, prefix)
                .await?
                .ok_or(ApiError::Authentication("invalid API key"))?;
            let k = KeyEntry {
                key_hash: stored.key_hash,
                merchant_id: stored.merchant_id,
                account_index: stored.account_index,
                revoked: stored.revoked_at.is_some(),
            };
            state.keys.put(prefix, k.clone(), generation);
            k
        }
    };
    // The secret part is checked on every request, cached or not: the prefix alone
    // proves nothing.
    if !apikey::verify(raw, &key.key_hash) {
        return Err(ApiError::Authentication("invalid API key"));
    }
    if key.revoked {
        return Err(ApiError::Authentication("API key has been revoked"));
    }
    Ok(Caller {
        id: key.merchant_id,
        account_index: key.account_index,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use warp::http::HeaderValue;

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        for h in ["Bearer k", "bearer k", "BEARER k", "bEaReR  k "] {
            assert_eq!(bearer(&HeaderValue::from_static(h)), Some("k"), "{h}");
        }
        for h in ["Basic k", "Bearer", "Bearer ", "Bearerk"] {
            assert_eq!(bearer(&HeaderValue::from_static(h)), None, "{h}");
        }
    }
}

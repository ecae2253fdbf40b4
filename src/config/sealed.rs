//! A mnemonic sealed at rest: encrypted with AES-256-GCM under a key derived from a
//! passphrase by scrypt, so the file alone gives nothing. The file is JSON: its version,
//! the scrypt parameters, the salt, the nonce and the ciphertext (hex). The parameters and
//! salt are authenticated with the ciphertext, so a file whose header was edited does not
//! open. The plaintext only ever lives in zeroizing memory.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// What can go wrong opening or sealing; never carries secret material.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    /// Not a sealed-mnemonic file of a version this binary reads.
    #[error("not a sealed mnemonic file")]
    Format,
    /// Scrypt parameters outside the accepted range.
    #[error("scrypt parameters out of range")]
    Params,
    /// Wrong passphrase, or a damaged or edited file.
    #[error("wrong passphrase, or a damaged file")]
    Open,
}

const VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct File {
    version: u32,
    kdf: String,
    log_n: u8,
    r: u32,
    p: u32,
    salt: String,
    nonce: String,
    ciphertext: String,
}

fn aad(f: &File) -> String {
    format!(
        "ctrip-sealed-mnemonic|{}|{}|{}|{}|{}|{}",
        f.version, f.kdf, f.log_n, f.r, f.p, f.salt
    )
}

fn key(
    passphrase: &str,
    salt: &[u8],
    log_n: u8,
    r: u32,
    p: u32,
) -> Result<Zeroizing<[u8; 32]>, SealError> {
    // 2^10 (tests) to 2^22 (4 GiB of memory) iterations.
    if !(10..=22).contains(&log_n) || r == 0 || r > 32 || p == 0 || p > 16 {
        return Err(SealError::Params);
    }
    let params = scrypt::Params::new(log_n, r, p).map_err(|_| SealError::Params)?;
    let mut key = Zeroizing::new([0u8; 32]);
    scrypt::scrypt(passphrase.as_bytes(), salt, &params, &mut key[..])
        .map_err(|_| SealError::Params)?;
    Ok(key)
}

/// Seals `mnemonic` under `passphrase`, with 2^`log_n` scrypt iterations (17 is about
/// 128 MiB and a fraction of a second).
pub fn seal(mnemonic: &str, passphrase: &str, log_n: u8) -> Result<String, SealError> {
    let mut salt = [0u8; 16];
    let mut nonce = [0u8; 12];
    rand::fill(&mut salt[..]);
    rand::fill(&mut nonce[..]);
    let mut f = File {
        version: VERSION,
        kdf: "scrypt".into(),
        log_n,
        r: 8,
        p: 1,
        salt: hex::encode(salt),
        nonce: hex::encode(nonce),
        ciphertext: String::new(),
    };
    let key = key(passphrase, &salt, f.log_n, f.r, f.p)?;
    let cipher = Aes256Gcm::new_from_slice(&key[..]).map_err(|_| SealError::Params)?;
    let aad = aad(&f);
    let sealed = cipher
        .encrypt(
            &Nonce::from(nonce),
            Payload {
                msg: mnemonic.as_bytes(),
                aad: aad.as_bytes(),
            },
        )
        .map_err(|_| SealError::Open)?;
    f.ciphertext = hex::encode(sealed);
    serde_json::to_string_pretty(&f).map_err(|_| SealError::Format)
}

/// Opens a sealed file's `text` with `passphrase`.
pub fn open(text: &str, passphrase: &str) -> Result<Zeroizing<String>, SealError> {
    let f: File = serde_json::from_str(text).map_err(|_| SealError::Format)?;
    if f.version != VERSION || f.kdf != "scrypt" {
        return Err(SealError::Format);
    }
    let salt = hex::decode(&f.salt).map_err(|_| SealError::Format)?;
    let nonce: [u8; 12] = hex::decode(&f.nonce)
        .ok()
        .and_then(|n| n.try_into().ok())
        .ok_or(SealError::Format)?;
    let ciphertext = hex::decode(&f.ciphertext).map_err(|_| SealError::Format)?;
    let key = key(passphrase, &salt, f.log_n, f.r, f.p)?;
    let cipher = Aes256Gcm::new_from_slice(&key[..]).map_err(|_| SealError::Params)?;
    let aad = aad(&f);
    let plain = Zeroizing::new(
        cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: &ciphertext,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| SealError::Open)?,
    );
    let text = std::str::from_utf8(&plain).map_err(|_| SealError::Open)?;
    Ok(Zeroizing::new(text.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const WORDS: &str = "test test test test test test test test test test test junk";

    #[test]
    fn a_sealed_mnemonic_opens_with_its_passphrase_only() {
        let text = seal(WORDS, "correct horse", 10).expect("seals");
        assert!(!text.contains("test"), "the file shows nothing");
        assert_eq!(open(&text, "correct horse").expect("opens").as_str(), WORDS);
        assert_eq!(open(&text, "wrong horse").err(), Some(SealError::Open));
        // Two seals of the same words differ (fresh salt and nonce).
        assert_ne!(seal(WORDS, "correct horse", 10).expect("seals"), text);
    }

    #[test]
    fn an_edited_or_foreign_file_does_not_open() {
        let text = seal(WORDS, "pw", 10).expect("seals");
        let mut f: serde_json::Value = serde_json::from_str(&text).expect("json");
        // Weaker parameters written into the header: the tag no longer matches.
        f["log_n"] = 11.into();
        assert_eq!(open(&f.to_string(), "pw").err(), Some(SealError::Open));
        f["log_n"] = 40.into();
        assert_eq!(open(&f.to_string(), "pw").err(), Some(SealError::Params));
        let mut f: serde_json::Value = serde_json::from_str(&text).expect("json");
        let c = f["ciphertext"].as_str().expect("hex").to_string();
        let flipped = format!("{}{}", if c.starts_with('0') { "1" } else { "0" }, &c[1..]);
        f["ciphertext"] = flipped.into();
        assert_eq!(open(&f.to_string(), "pw").err(), Some(SealError::Open));
        assert_eq!(open(WORDS, "pw").err(), Some(SealError::Format));
    }
}

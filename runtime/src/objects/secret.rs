//! The `secret` object: a password or key, given inline (`data`) or in a
//! file (`file`), as raw bytes or base64 (`format`), optionally encrypted
//! with AES-256-CBC under the key held by another secret (`keyid`) and the
//! initialization vector `iv` (base64).
//!
//! The value is loaded once, when the object is completed; changing the
//! properties afterwards (which `qom-set` allows) does not reload it, as in
//! QEMU. Other parts of the daemon read values with
//! [`Registry::secret_value`](super::Registry::secret_value).
//!
//! Decryption follows QEMU to the byte, including its padding check, which
//! only requires the last plaintext byte to be at most 16 and at most the
//! length of the data (it does not check the other padding bytes, and a
//! last byte of 0 removes nothing).

use std::any::Any;
use std::io::Read;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use aes::cipher::{BlockDecrypt, KeyInit};
use qapi::types::QCryptoSecretFormat;
use qapi::visit::{Mode, Path};
use qapi::QmpError;
use serde_json::Value;

use super::base64;
use super::types::{Prop, TypeInfo};
use super::{unhandled, Registry, UserObject};

const AES_BLOCK: usize = 16;
const AES256_KEY_LEN: usize = 32;

/// The properties of a secret, as set.
#[derive(Default)]
struct Props {
    format: Option<QCryptoSecretFormat>,
    keyid: Option<String>,
    iv: Option<String>,
    data: Option<String>,
    file: Option<String>,
}

/// A `secret` object.
pub struct Secret {
    class: &'static TypeInfo,
    props: Mutex<Props>,
    /// The value, once loaded.
    raw: Mutex<Option<Vec<u8>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The text of an I/O error without Rust's " (os error N)" suffix, as
/// `strerror` gives it.
fn strerror(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => {
            let s = std::io::Error::from_raw_os_error(code).to_string();
            match s.rfind(" (os error ") {
                Some(i) => s[..i].to_string(),
                None => s,
            }
        }
        None => e.to_string(),
    }
}

/// Reads a whole file with GLib's `g_file_get_contents` error texts.
fn read_file(path: &str) -> Result<Vec<u8>, String> {
    let shown = std::path::Path::new(path).to_string_lossy().into_owned();
    let mut f = std::fs::File::open(path).map_err(|e| {
        format!(
            "Failed to open file \u{201c}{shown}\u{201d}: {}",
            strerror(&e)
        )
    })?;
    let regular = f.metadata().map(|m| m.is_file()).map_err(|e| {
        format!(
            "Failed to get attributes of file \u{201c}{shown}\u{201d}: fstat() failed: {}",
            strerror(&e)
        )
    })?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf).map_err(|e| {
        // GLib reads regular files and everything else (pipes,
        // directories...) along different paths with different texts.
        if regular {
            format!(
                "Failed to read from file \u{201c}{shown}\u{201d}: {}",
                strerror(&e)
            )
        } else {
            format!(
                "Error reading file \u{201c}{shown}\u{201d}: {}",
                strerror(&e)
            )
        }
    })?;
    Ok(buf)
}

/// AES-256-CBC decryption without padding removal.
fn aes256_cbc_decrypt(key: &[u8], iv: &[u8], data: &[u8]) -> Result<Vec<u8>, QmpError> {
    if !data.chunks_exact(AES_BLOCK).remainder().is_empty() {
        return Err(QmpError::generic(format!(
            "Length {} must be a multiple of block size {AES_BLOCK}",
            data.len()
        )));
    }
    let cipher = aes::Aes256::new_from_slice(key)
        .map_err(|_| QmpError::generic("Key should be 32 bytes in length"))?;
    let mut prev = [0u8; AES_BLOCK];
    prev.copy_from_slice(iv);
    let mut out = Vec::with_capacity(data.len());
    for chunk in data.chunks_exact(AES_BLOCK) {
        let mut block = aes::Block::clone_from_slice(chunk);
        cipher.decrypt_block(&mut block);
        out.extend(block.iter().zip(prev.iter()).map(|(b, p)| b ^ p));
        prev.copy_from_slice(chunk);
    }
    Ok(out)
}

/// The C-string view of a property value: QEMU stops at the first NUL.
fn c_str(s: &str) -> &str {
    s.split('\0').next().unwrap_or_default()
}

impl Secret {
    pub(crate) fn new(class: &'static TypeInfo) -> Secret {
        Secret {
            class,
            props: Mutex::new(Props::default()),
            raw: Mutex::new(None),
        }
    }

    /// The loaded value; `None` until the object is complete.
    pub fn value(&self) -> Option<Vec<u8>> {
        lock(&self.raw).clone()
    }

    /// The bytes the secret is made from, before decoding.
    fn load_data(p: &Props) -> Result<Vec<u8>, QmpError> {
        match (&p.file, &p.data) {
            (Some(_), Some(_)) => Err(QmpError::generic(
                "'file' and 'data' are mutually exclusive",
            )),
            (Some(file), None) => read_file(c_str(file))
                .map_err(|e| QmpError::generic(format!("Unable to read {}: {e}", c_str(file)))),
            (None, Some(data)) => Ok(c_str(data).as_bytes().to_vec()),
            (None, None) => Err(QmpError::generic(
                "Either 'file' or 'data' must be provided",
            )),
        }
    }

    /// Decrypts `input` with the key of secret `keyid` and the IV `iv`.
    fn decrypt(
        reg: &Registry,
        keyid: &str,
        iv: Option<&str>,
        base64_input: bool,
        input: &[u8],
    ) -> Result<Vec<u8>, QmpError> {
        let key = reg.secret_value(keyid)?;
        if key.len() != AES256_KEY_LEN {
            return Err(QmpError::generic("Key should be 32 bytes in length"));
        }
        let iv = iv.ok_or_else(|| QmpError::generic("IV is required to decrypt secret"))?;
        let iv = base64::qemu_decode_str(iv)?;
        if iv.len() != AES_BLOCK {
            return Err(QmpError::generic(format!(
                "IV should be 16 bytes in length not {}",
                iv.len()
            )));
        }
        let ciphertext = if base64_input {
            base64::qemu_decode(input)?
        } else {
            input.to_vec()
        };
        let mut plain = aes256_cbc_decrypt(&key, &iv, &ciphertext)?;
        // QEMU reads the byte before an empty buffer here, which in practice
        // is 0: empty ciphertext decrypts to an empty secret.
        let pad = plain.last().copied().unwrap_or(0);
        if usize::from(pad) > AES_BLOCK || usize::from(pad) > plain.len() {
            return Err(QmpError::generic(format!(
                "Incorrect number of padding bytes ({pad}) found on decrypted data"
            )));
        }
        plain.truncate(plain.len() - usize::from(pad));
        Ok(plain)
    }

    fn string_prop(&self, name: &str) -> Option<String> {
        let p = lock(&self.props);
        match name {
            "keyid" => p.keyid.clone(),
            "iv" => p.iv.clone(),
            "data" => p.data.clone(),
            "file" => p.file.clone(),
            _ => None,
        }
    }
}

impl UserObject for Secret {
    fn class(&self) -> &'static TypeInfo {
        self.class
    }

    fn get(&self, prop: &Prop) -> Result<Value, QmpError> {
        match prop.name {
            "format" => {
                let f = lock(&self.props).format.unwrap_or(QCryptoSecretFormat::Raw);
                Ok(Value::from(f.as_str()))
            }
            // Unset strings read as "".
            "keyid" | "iv" | "data" | "file" => {
                Ok(Value::from(self.string_prop(prop.name).unwrap_or_default()))
            }
            _ => Err(unhandled(self.class, prop)),
        }
    }

    fn set(&self, prop: &Prop, value: &Value) -> Result<(), QmpError> {
        let root = Path::root(Mode::Json);
        let path = root.member(prop.name);
        let mut p = lock(&self.props);
        match prop.name {
            "format" => {
                p.format = Some(qapi::visit::enumeration(
                    value,
                    &path,
                    QCryptoSecretFormat::parse,
                )?);
            }
            "keyid" => p.keyid = Some(qapi::visit::string(value, &path)?),
            "iv" => p.iv = Some(qapi::visit::string(value, &path)?),
            "data" => p.data = Some(qapi::visit::string(value, &path)?),
            "file" => p.file = Some(qapi::visit::string(value, &path)?),
            _ => return Err(unhandled(self.class, prop)),
        }
        Ok(())
    }

    fn complete(&self, reg: &Registry, _id: &str) -> Result<(), QmpError> {
        let (input, keyid, iv, base64_format) = {
            let p = lock(&self.props);
            let input = Self::load_data(&p)?;
            let base64_format = p.format == Some(QCryptoSecretFormat::Base64);
            (input, p.keyid.clone(), p.iv.clone(), base64_format)
        };
        let value = match keyid {
            Some(keyid) => Self::decrypt(
                reg,
                c_str(&keyid),
                iv.as_deref().map(c_str),
                base64_format,
                &input,
            )?,
            None if base64_format => base64::qemu_decode(&input)?,
            None => input,
        };
        *lock(&self.raw) = Some(value);
        Ok(())
    }

    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync> {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Key 00 01 .. 1f, IV 0f 0e .. 00; ciphertext of "hello secret" made
    // with `openssl enc -aes-256-cbc -K <key> -iv <iv>` (PKCS#7 padding).
    const CIPHERTEXT_B64: &str = "7LRIVaLonXN64Oa+FCBydg==";

    fn key() -> Vec<u8> {
        (0u8..32).collect()
    }

    fn iv() -> Vec<u8> {
        (0u8..16).rev().collect()
    }

    #[test]
    fn cbc_decrypts_openssl_output() {
        let ct = base64::glib_decode(CIPHERTEXT_B64.as_bytes());
        let plain = aes256_cbc_decrypt(&key(), &iv(), &ct).unwrap();
        assert_eq!(&plain[..12], b"hello secret");
        assert_eq!(&plain[12..], &[4, 4, 4, 4]);
    }

    #[test]
    fn cbc_rejects_partial_blocks() {
        assert_eq!(
            aes256_cbc_decrypt(&key(), &iv(), &[0; 24])
                .unwrap_err()
                .desc,
            "Length 24 must be a multiple of block size 16"
        );
    }

    #[test]
    fn glib_file_errors() {
        assert_eq!(
            read_file("/nonexistent/x").unwrap_err(),
            "Failed to open file \u{201c}/nonexistent/x\u{201d}: No such file or directory"
        );
        assert_eq!(
            read_file("/").unwrap_err(),
            "Error reading file \u{201c}/\u{201d}: Is a directory"
        );
    }
}

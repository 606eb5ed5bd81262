//! The cryptography of [`super::TlsDecryptor`]: the suites it decrypts, their keys from
//! the key log's secrets, and the opening of one record.
use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use rustls::{SupportedCipherSuite, crypto::tls13::OkmBlock};

use crate::raw::tls::keylog::Secret;

pub(super) const RECORD_HEADER_LEN: usize = 5;
const TAG_LEN: usize = 16;

/// A cipher suite this decrypts.
#[derive(Clone, Copy)]
pub(super) struct Suite {
    pub(super) tls13: bool,
    pub(super) aead: &'static aead::Algorithm,
    /// TLS 1.2: the key block's IV length (4 for GCM's salt, 12 for ChaCha20).
    pub(super) fixed_iv_len: usize,
    /// TLS 1.2 AES-GCM: each record starts with its 8-byte explicit nonce.
    pub(super) explicit_nonce: bool,
    pub(super) kdf: SupportedCipherSuite,
}

impl Suite {
    /// TLS 1.3's three suites and TLS 1.2's ECDHE AEAD suites (the ones rustls offers,
    /// which are the AEAD ones browsers and curl use).
    pub(super) fn find(id: u16, version: u16) -> Option<Self> {
        let kdf = *rustls::crypto::ring::ALL_CIPHER_SUITES
            .iter()
            .find(|s| u16::from(s.suite()) == id)?;
        let tls13 = matches!(kdf, SupportedCipherSuite::Tls13(_));
        if tls13 != (version == crate::raw::tls::TLS13)
            || (!tls13 && version != crate::raw::tls::TLS12)
        {
            return None;
        }
        let (aead, fixed_iv_len, explicit_nonce) = match id {
            0x1301 | 0xc02b | 0xc02f => (&aead::AES_128_GCM, 4, true),
            0x1302 | 0xc02c | 0xc030 => (&aead::AES_256_GCM, 4, true),
            0x1303 | 0xcca8 | 0xcca9 => (&aead::CHACHA20_POLY1305, 12, false),
            _ => return None,
        };
        Some(Self {
            tls13,
            aead,
            fixed_iv_len,
            explicit_nonce: explicit_nonce && !tls13,
            kdf,
        })
    }

    /// RFC 8446 section 7.1: `HKDF-Expand-Label(secret, label, "", len)`, the HkdfLabel
    /// being `uint16 length, opaque label<7..255> = "tls13 " + label, opaque context<0..255>`.
    pub(super) fn expand_label(&self, secret: &[u8], label: &[u8], out: &mut [u8]) -> Option<()> {
        let SupportedCipherSuite::Tls13(s) = self.kdf else {
            return None;
        };
        let len = u16::try_from(out.len()).ok()?.to_be_bytes();
        let label_len = [u8::try_from(b"tls13 ".len() + label.len()).ok()?];
        let expander = s.hkdf_provider.expander_for_okm(&OkmBlock::new(secret));
        expander
            .expand_slice(&[&len, &label_len, b"tls13 ", label, &[0]], out)
            .ok()
    }

    /// TLS 1.3 record keys of a traffic secret.
    pub(super) fn keys13(&self, secret: Secret) -> Option<Keys> {
        let mut key = [0; 32];
        let key = key.get_mut(..self.aead.key_len())?;
        self.expand_label(secret.as_bytes(), b"key", key)?;
        let mut iv = [0; 12];
        self.expand_label(secret.as_bytes(), b"iv", &mut iv)?;
        Keys::new(self.aead, key, iv, Some(secret))
    }

    /// TLS 1.2 record keys of one direction, from the master secret.
    pub(super) fn keys12(
        &self,
        master: &[u8],
        randoms: (&[u8; 32], &[u8; 32]),
        server: bool,
    ) -> Option<Keys> {
        let SupportedCipherSuite::Tls12(s) = self.kdf else {
            return None;
        };
        // RFC 5246 section 6.3: client_write_key, server_write_key, client_write_IV,
        // server_write_IV (AEAD suites have no MAC keys).
        let (k, v) = (self.aead.key_len(), self.fixed_iv_len);
        let mut block = vec![0; 2 * k + 2 * v];
        let (client_random, server_random) = randoms;
        let seed = [&server_random[..], &client_random[..]].concat();
        s.prf_provider
            .for_secret(&mut block, master, b"key expansion", &seed);
        let at = usize::from(server);
        let key = block.get(at * k..(at + 1) * k)?;
        let salt = block.get(2 * k + at * v..2 * k + (at + 1) * v)?;
        let mut iv = [0; 12];
        iv.get_mut(..v)?.copy_from_slice(salt);
        Keys::new(self.aead, key, iv, None)
    }
}

/// The keys of one direction in one epoch.
pub(super) struct Keys {
    pub(super) key: LessSafeKey,
    /// TLS 1.3 and ChaCha20: the IV the sequence number is XORed into; TLS 1.2 GCM:
    /// the 4-byte salt, then zeros.
    pub(super) iv: [u8; 12],
    pub(super) seq: u64,
    /// TLS 1.3: the traffic secret, for the next one after a KeyUpdate.
    pub(super) secret: Option<Secret>,
}

impl Keys {
    pub(super) fn new(
        alg: &'static aead::Algorithm,
        key: &[u8],
        iv: [u8; 12],
        secret: Option<Secret>,
    ) -> Option<Self> {
        Some(Self {
            key: LessSafeKey::new(UnboundKey::new(alg, key).ok()?),
            iv,
            seq: 0,
            secret,
        })
    }

    /// RFC 8446 section 5.3 (and RFC 7905 section 2): the IV XOR the sequence number,
    /// left-padded to the IV's length.
    pub(super) fn xor_nonce_at(&self, seq: u64) -> [u8; 12] {
        let mut n = self.iv;
        for (b, s) in n.iter_mut().skip(4).zip(seq.to_be_bytes()) {
            *b ^= s;
        }
        n
    }
}

/// RFC 8446 section 7.2: `application_traffic_secret_N+1 = HKDF-Expand-Label(
/// application_traffic_secret_N, "traffic upd", "", Hash.length)`.
pub(super) fn next_secret(suite: Suite, s: Secret) -> Option<Secret> {
    let mut next = [0; 48];
    let next = next.get_mut(..s.as_bytes().len())?;
    suite.expand_label(s.as_bytes(), b"traffic upd", next)?;
    Secret::new(next)
}

/// A TLS 1.3 record: its real content type and plaintext, padding removed.
pub(super) fn open13(
    keys: &Keys,
    seq: u64,
    header: &[u8; RECORD_HEADER_LEN],
    body: &mut [u8],
) -> Option<(u8, Vec<u8>)> {
    let nonce = Nonce::assume_unique_for_key(keys.xor_nonce_at(seq));
    let plain = keys
        .key
        .open_in_place(nonce, Aad::from(header), body)
        .ok()?;
    // Section 5.4: zeros of padding, after the content type.
    let end = plain.iter().rposition(|&b| b != 0)?;
    let content_type = plain[end];
    Some((content_type, plain[..end].to_vec()))
}

/// A TLS 1.2 record: its content type and plaintext.
pub(super) fn open12(
    keys: &Keys,
    explicit: bool,
    content_type: u8,
    header: &[u8; RECORD_HEADER_LEN],
    body: &[u8],
    seq: u64,
) -> Option<(u8, Vec<u8>)> {
    let (nonce, ct) = if explicit {
        let (e, ct) = body.split_at_checked(8)?;
        let mut n = keys.iv;
        n[4..].copy_from_slice(e);
        (n, ct)
    } else {
        (keys.xor_nonce_at(seq), body)
    };
    let plain_len = u16::try_from(ct.len().checked_sub(TAG_LEN)?).ok()?;
    let mut aad = [0; 13];
    aad[..8].copy_from_slice(&seq.to_be_bytes());
    aad[8..11].copy_from_slice(&header[..3]);
    aad[11..].copy_from_slice(&plain_len.to_be_bytes());
    let mut buf = ct.to_vec();
    let plain = keys
        .key
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut buf,
        )
        .ok()?;
    Some((content_type, plain.to_vec()))
}

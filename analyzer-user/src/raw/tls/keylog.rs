//! The NSS key log (`SSLKEYLOGFILE`) that TLS clients write their secrets to, read while
//! they append to it: the file is read from where the last read stopped, again whenever
//! a connection asks for a client random not known yet ([`KeyLog::secret`]).
//!
//! Format (RFC 9850, "The SSLKEYLOGFILE Format for TLS", after NSS's): one `LABEL
//! <client_random> <secret>` per line, both in hex; `#` starts a comment. TLS 1.2's
//! `CLIENT_RANDOM` carries the 48-byte master secret; TLS 1.3's `CLIENT_HANDSHAKE_TRAFFIC_SECRET`, `SERVER_HANDSHAKE_TRAFFIC_SECRET`,
//! `CLIENT_TRAFFIC_SECRET_0` and `SERVER_TRAFFIC_SECRET_0` the traffic secrets (the
//! hash's length: 32 or 48 bytes). Other labels (early data, exporter, ECH) are skipped;
//! a line that does not parse is counted and named in a warning by its line number.
use std::{
    collections::{HashMap, VecDeque},
    fs::File,
    io::{Read, Seek, SeekFrom},
    path::{Path, PathBuf},
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use serde::{Deserialize, Serialize};

/// Client randoms remembered; beyond it the oldest are forgotten (and counted).
pub const MAX_CLIENT_RANDOMS: usize = 1 << 18;
/// Malformed lines named in a warning; later ones are only counted.
const MAX_WARNINGS: u64 = 16;
/// Longest line taken (the longest valid one is about 160 bytes).
const MAX_LINE_BYTES: usize = 1024;

/// The secrets a key log line can carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Label {
    /// TLS 1.2 master secret.
    ClientRandom,
    ClientHandshake,
    ServerHandshake,
    ClientTraffic0,
    ServerTraffic0,
}

impl Label {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "CLIENT_RANDOM" => Self::ClientRandom,
            "CLIENT_HANDSHAKE_TRAFFIC_SECRET" => Self::ClientHandshake,
            "SERVER_HANDSHAKE_TRAFFIC_SECRET" => Self::ServerHandshake,
            "CLIENT_TRAFFIC_SECRET_0" => Self::ClientTraffic0,
            "SERVER_TRAFFIC_SECRET_0" => Self::ServerTraffic0,
            _ => return None,
        })
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// A secret of at most 48 bytes (SHA-384's length; TLS 1.2's master secret).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Secret {
    len: u8,
    bytes: [u8; 48],
}

impl Secret {
    pub fn new(b: &[u8]) -> Option<Self> {
        let mut bytes = [0; 48];
        bytes.get_mut(..b.len())?.copy_from_slice(b);
        Some(Self {
            len: u8::try_from(b.len()).ok()?,
            bytes,
        })
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..usize::from(self.len)).unwrap_or_default()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret({} bytes)", self.len)
    }
}

/// What the key log did, for the report (`run.capture.keylog`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeylogStats {
    /// The key log file.
    pub path: String,
    /// Lines read, comments and blank lines included.
    pub lines: u64,
    /// Lines that did not parse (each named in a warning, the first few).
    pub malformed_lines: u64,
    /// Client randoms with at least one secret known.
    pub client_randoms: u64,
    /// Client randoms forgotten beyond [`MAX_CLIENT_RANDOMS`].
    pub client_randoms_evicted: u64,
    /// TLS connections of which at least one record was decrypted.
    pub connections_decrypted: u64,
    /// TLS connections with encrypted records and no secret for their client random.
    pub connections_no_key: u64,
    /// TLS connections whose version or cipher suite is not decrypted (not TLS 1.2 or
    /// 1.3, or not an AEAD suite).
    pub connections_unsupported: u64,
    /// Connections whose encrypted records outgrew the buffer before their keys came.
    pub connections_keys_too_late: u64,
    /// Records decrypted, and the plaintext bytes they held.
    pub records_decrypted: u64,
    pub plaintext_bytes: u64,
    /// Records that failed to authenticate: wrong key (or a record the capture
    /// mangled). Each stops the decryption of its direction.
    pub records_failed_auth: u64,
}

/// Per-connection outcomes, counted by the decryptors.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) connections_decrypted: AtomicU64,
    pub(crate) connections_no_key: AtomicU64,
    pub(crate) connections_unsupported: AtomicU64,
    pub(crate) connections_keys_too_late: AtomicU64,
    pub(crate) records_decrypted: AtomicU64,
    pub(crate) plaintext_bytes: AtomicU64,
    pub(crate) records_failed_auth: AtomicU64,
}

impl Counters {
    pub(crate) fn add(n: &AtomicU64, by: u64) {
        n.fetch_add(by, Ordering::Relaxed);
    }
}

/// One key log file, shared by every connection's decryptor.
#[derive(Debug)]
pub struct KeyLog {
    path: PathBuf,
    reader: Mutex<Reader>,
    pub(crate) counters: Counters,
}

#[derive(Debug)]
struct Reader {
    file: File,
    /// Bytes of the file read so far.
    offset: u64,
    /// The start of a line whose end was not written yet.
    partial: Vec<u8>,
    line_no: u64,
    malformed: u64,
    keys: HashMap<[u8; 32], [Option<Secret>; 5]>,
    order: VecDeque<[u8; 32]>,
    evicted: u64,
}

impl KeyLog {
    /// Opens the file and reads what it holds now. A missing or unreadable file is an
    /// error naming it.
    pub fn open(path: &Path) -> Result<Self, crate::error::Error> {
        let file = File::open(path).map_err(|source| crate::error::Error::Read {
            path: path.to_owned(),
            source,
        })?;
        let log = Self {
            path: path.to_owned(),
            reader: Mutex::new(Reader {
                file,
                offset: 0,
                partial: Vec::new(),
                line_no: 0,
                malformed: 0,
                keys: HashMap::new(),
                order: VecDeque::new(),
                evicted: 0,
            }),
            counters: Counters::default(),
        };
        log.refresh();
        Ok(log)
    }

    /// The secret `label` of the connection whose ClientHello carried `client_random`;
    /// when not known yet, the file is read on from where it stopped first.
    pub fn secret(&self, client_random: &[u8; 32], label: Label) -> Option<Secret> {
        let Ok(mut r) = self.reader.lock() else {
            return None;
        };
        if let Some(s) = r.get(client_random, label) {
            return Some(s);
        }
        r.read_on(&self.path);
        r.get(client_random, label)
    }

    /// Whether any secret of this client random is known (the file read on first).
    pub fn knows(&self, client_random: &[u8; 32]) -> bool {
        let Ok(mut r) = self.reader.lock() else {
            return false;
        };
        r.read_on(&self.path);
        r.keys.contains_key(client_random)
    }

    /// Reads what was appended since the last read.
    pub fn refresh(&self) {
        if let Ok(mut r) = self.reader.lock() {
            r.read_on(&self.path);
        }
    }

    pub fn stats(&self) -> KeylogStats {
        let c = &self.counters;
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let (lines, malformed, randoms, evicted) = self.reader.lock().map_or((0, 0, 0, 0), |r| {
            (r.line_no, r.malformed, r.keys.len() as u64, r.evicted)
        });
        KeylogStats {
            path: self.path.display().to_string(),
            lines,
            malformed_lines: malformed,
            client_randoms: randoms,
            client_randoms_evicted: evicted,
            connections_decrypted: n(&c.connections_decrypted),
            connections_no_key: n(&c.connections_no_key),
            connections_unsupported: n(&c.connections_unsupported),
            connections_keys_too_late: n(&c.connections_keys_too_late),
            records_decrypted: n(&c.records_decrypted),
            plaintext_bytes: n(&c.plaintext_bytes),
            records_failed_auth: n(&c.records_failed_auth),
        }
    }
}

impl Reader {
    fn get(&self, client_random: &[u8; 32], label: Label) -> Option<Secret> {
        *self.keys.get(client_random)?.get(label.index())?
    }

    /// Reads the file on from `offset` and takes every complete line. A file shorter
    /// than what was read was truncated (or replaced): it is read again from its start.
    fn read_on(&mut self, path: &Path) {
        // One fstat when nothing was appended: connections of clients that export no
        // keys ask again with each record until they give up.
        match self.file.metadata().map(|m| m.len()) {
            Ok(len) if len == self.offset => return,
            Ok(len) if len < self.offset => {
                self.offset = 0;
                self.partial.clear();
                let _ = self.file.seek(SeekFrom::Start(0));
            }
            _ => {}
        }
        let mut buf = Vec::new();
        if let Err(e) = self.file.read_to_end(&mut buf) {
            tracing::warn!(path = %path.display(), error = %e, "key log read failed");
        }
        self.offset += buf.len() as u64;
        let mut rest = &buf[..];
        while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
            let (line, tail) = rest.split_at(nl);
            rest = tail.get(1..).unwrap_or_default();
            if self.partial.is_empty() {
                self.line(line, path);
            } else {
                let mut whole = std::mem::take(&mut self.partial);
                whole.extend_from_slice(line);
                self.line(&whole, path);
            }
        }
        // Kept for the next read, bounded: an overlong line is judged malformed then.
        let room = MAX_LINE_BYTES + 1 - self.partial.len().min(MAX_LINE_BYTES + 1);
        self.partial
            .extend_from_slice(rest.get(..rest.len().min(room)).unwrap_or_default());
    }

    fn line(&mut self, line: &[u8], path: &Path) {
        self.line_no += 1;
        match parse_line(line) {
            Ok(Some((label, random, secret))) => self.insert(random, label, secret),
            Ok(None) => {}
            Err(why) => {
                self.malformed += 1;
                if self.malformed <= MAX_WARNINGS {
                    tracing::warn!(
                        path = %path.display(),
                        line = self.line_no,
                        why,
                        "malformed key log line skipped"
                    );
                }
            }
        }
    }

    fn insert(&mut self, random: [u8; 32], label: Label, secret: Secret) {
        if !self.keys.contains_key(&random) {
            if self.keys.len() >= MAX_CLIENT_RANDOMS
                && let Some(old) = self.order.pop_front()
            {
                self.keys.remove(&old);
                self.evicted += 1;
            }
            self.order.push_back(random);
        }
        let slot = self.keys.entry(random).or_default();
        if let Some(s) = slot.get_mut(label.index()) {
            *s = Some(secret);
        }
    }
}

/// One parsed line: what the secret is, the client random it belongs to, the secret.
pub(crate) type Line = (Label, [u8; 32], Secret);

/// One line: `Ok(None)` for a blank line, a comment or a label not used here.
pub(crate) fn parse_line(line: &[u8]) -> Result<Option<Line>, &'static str> {
    if line.len() > MAX_LINE_BYTES {
        return Err("line too long");
    }
    let line = std::str::from_utf8(line).map_err(|_| "not UTF-8")?.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let mut fields = line.split_ascii_whitespace();
    let (Some(label), Some(random), Some(secret), None) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err("not three fields (LABEL CLIENT_RANDOM SECRET)");
    };
    let Some(label) = Label::parse(label) else {
        // Not a secret this decrypts (early data, exporter, ECH, TLS 1.2 RSA), or a
        // label of a later format: skipped, like Wireshark does.
        return if label
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        {
            Ok(None)
        } else {
            Err("label is not a key log label")
        };
    };
    let random: [u8; 32] = hex(random)
        .ok_or("client random is not hex")?
        .try_into()
        .map_err(|_| "client random is not 32 bytes")?;
    let secret = hex(secret).ok_or("secret is not hex")?;
    let ok_len = match label {
        Label::ClientRandom => secret.len() == 48,
        _ => secret.len() == 32 || secret.len() == 48,
    };
    if !ok_len {
        return Err("secret has the wrong length (48 bytes for CLIENT_RANDOM, 32 or 48)");
    }
    let secret = Secret::new(&secret).ok_or("secret too long")?;
    Ok(Some((label, random, secret)))
}

fn hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests;

//! Decrypts the records of one TLS 1.2 or 1.3 connection with the secrets its client
//! wrote to a key log ([`KeyLog`]), and hands the application data of each direction on
//! in order, so the plaintext inside TLS is read like cleartext.
//!
//! TLS 1.3 (RFC 8446): records of type application_data are encrypted, first under the
//! handshake traffic secret of their direction, then, after that direction's Finished,
//! under its application traffic secret `_0`, then under the next one after each
//! KeyUpdate (section 7.2: `HKDF-Expand-Label(secret, "traffic upd", "", Hash.length)`);
//! key and IV from `HKDF-Expand-Label(secret, "key"/"iv", "", len)` (section 7.3), the
//! nonce the IV XOR the record's sequence number, which starts at 0 with each key
//! (section 5.3), the additional data the record header (section 5.2), and the real
//! content type the last non-zero byte of the plaintext, after the padding.
//! TLS 1.2 (RFC 5246): every record after a direction's ChangeCipherSpec is encrypted
//! with the key block `PRF(master_secret, "key expansion", server_random +
//! client_random)` (section 6.3); AES-GCM's nonce is the 4-byte implicit salt and the
//! record's 8-byte explicit nonce (RFC 5288 section 3), ChaCha20-Poly1305's the IV XOR
//! the sequence number (RFC 7905 section 2); the additional data `seq_num + type +
//! version + length` (RFC 5246 section 6.2.3.3).
//!
//! Crates: the AEADs are `ring`'s (the crate rustls itself runs on here, already built
//! for it: no new code to trust). The key derivations are rustls's public crypto-provider
//! API (its TLS 1.3 HKDF expander and TLS 1.2 PRF, picked by cipher suite); only the
//! HkdfLabel encoding is written here. rustls's own record decrypters are not used: its
//! public API cannot make a 16-byte `AeadKey` (only `From<[u8; 32]>`), so AES-128 suites
//! would not work through it.
//!
//! Never a guess: a record that fails to authenticate stops its direction (and is
//! counted); a direction whose records outgrow [`MAX_PENDING_BYTES`] before its keys are
//! in the key log stops too, and so does one the capture lost bytes of.
use std::{collections::VecDeque, sync::Arc};

use super::keylog::{Counters, KeyLog, Label};
use crate::raw::reasm::Chunk;

/// Encrypted bytes held per direction while its keys are not in the key log yet.
pub const MAX_PENDING_BYTES: usize = 64 * 1024;

// ContentType (RFC 8446 section 5.1).
const CHANGE_CIPHER_SPEC: u8 = 20;
const HANDSHAKE: u8 = 22;
const APPLICATION_DATA: u8 = 23;
// HandshakeType (RFC 8446 section 4).
const FINISHED: u8 = 20;
const KEY_UPDATE: u8 = 24;

/// Why a direction is no longer decrypted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    /// The capture lost bytes, or the records stopped parsing: framing is lost.
    Lost,
    AuthFailed,
    /// Its encrypted records outgrew [`MAX_PENDING_BYTES`] before the keys came.
    TooLate,
    /// The connection ended with no key for it.
    NoKey,
    /// The ServerHello chose a version or suite this does not decrypt.
    Unsupported,
}

/// TLS 1.3 epochs of one direction (RFC 8446 section 7.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Epoch {
    Handshake,
    /// Application traffic secret `_N`.
    Traffic(u64),
}

/// Record framing of one direction.
#[derive(Default)]
struct Framer {
    hdr: [u8; RECORD_HEADER_LEN],
    hdr_len: usize,
    body: Vec<u8>,
    /// Body bytes still to come of the record being read.
    left: usize,
}

struct Dir {
    framer: Framer,
    /// A ChangeCipherSpec went by: TLS 1.2 encrypts everything after it.
    after_ccs: bool,
    epoch: Epoch,
    keys: Option<Keys>,
    /// TLS 1.3 handshake messages: the header being read and the body bytes left.
    hs_hdr: Vec<u8>,
    hs_left: usize,
    pending_bytes: usize,
    stopped: Option<Stop>,
    /// Plaintext bytes handed on.
    delivered: u64,
}

impl Default for Dir {
    fn default() -> Self {
        Self {
            framer: Framer::default(),
            after_ccs: false,
            epoch: Epoch::Handshake,
            keys: None,
            hs_hdr: Vec::new(),
            hs_left: 0,
            pending_bytes: 0,
            stopped: None,
            delivered: 0,
        }
    }
}

/// An encrypted record waiting for its keys (or its turn).
struct Pending {
    from_server: bool,
    content_type: u8,
    header: [u8; RECORD_HEADER_LEN],
    after_ccs: bool,
    body: Vec<u8>,
}

/// What the ServerHello chose.
#[derive(Clone, Copy)]
enum Chosen {
    Suite { suite: Suite, random: [u8; 32] },
    Unsupported,
}

/// Where decrypted application data goes: `(from_server, bytes)`.
pub type Sink<'a> = dyn FnMut(bool, Chunk<'_>) + 'a;

/// Decrypts one connection.
pub struct TlsDecryptor {
    keylog: Arc<KeyLog>,
    client_random: Option<[u8; 32]>,
    chosen: Option<Chosen>,
    /// 0: client to server, 1: server to client.
    dirs: [Dir; 2],
    /// Encrypted records of both directions, in the order they came.
    queue: VecDeque<Pending>,
    saw_encrypted: bool,
    decrypted_any: bool,
    finished: bool,
}

impl std::fmt::Debug for TlsDecryptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsDecryptor")
            .field("queued", &self.queue.len())
            .field("decrypted_any", &self.decrypted_any)
            .finish_non_exhaustive()
    }
}

impl TlsDecryptor {
    pub fn new(keylog: Arc<KeyLog>) -> Self {
        Self {
            keylog,
            client_random: None,
            chosen: None,
            dirs: [Dir::default(), Dir::default()],
            queue: VecDeque::new(),
            saw_encrypted: false,
            decrypted_any: false,
            finished: false,
        }
    }

    fn counters(&self) -> &Counters {
        &self.keylog.counters
    }

    /// The ClientHello's random (a second ClientHello after a HelloRetryRequest keeps it).
    pub fn client_hello(&mut self, random: [u8; 32]) {
        self.client_random.get_or_insert(random);
    }

    /// The ServerHello's choice (a HelloRetryRequest is not one).
    pub fn server_hello(&mut self, random: [u8; 32], version: u16, suite: u16) {
        if self.chosen.is_none() {
            self.chosen = Some(match Suite::find(suite, version) {
                Some(suite) => Chosen::Suite { suite, random },
                None => Chosen::Unsupported,
            });
        }
    }

    /// Whether any record was decrypted.
    pub fn decrypted_any(&self) -> bool {
        self.decrypted_any
    }

    pub fn saw_client_hello(&self) -> bool {
        self.client_random.is_some()
    }

    /// Whether a direction's decryption stopped (lost bytes, a record that failed to
    /// authenticate, no key): its plaintext did not reach its end.
    pub fn is_stopped(&self, from_server: bool) -> bool {
        self.dirs[usize::from(from_server)].stopped.is_some()
    }

    /// Takes the next bytes of one direction, as the reassembler delivers them, and
    /// hands on what can be decrypted now.
    pub fn push(&mut self, from_server: bool, chunk: Chunk<'_>, out: &mut Sink<'_>) {
        if self.finished || self.dirs[usize::from(from_server)].stopped.is_some() {
            return;
        }
        match chunk {
            Chunk::Data(d) => self.frame(from_server, d, out),
            Chunk::Gap { .. } | Chunk::Capped { .. } => self.stop(from_server, Stop::Lost, out),
        }
        self.pump(false, out);
    }

    /// Cuts one direction's bytes into records and queues the encrypted ones.
    fn frame(&mut self, from_server: bool, mut rest: &[u8], out: &mut Sink<'_>) {
        let d = usize::from(from_server);
        while !rest.is_empty() && self.dirs[d].stopped.is_none() {
            let f = &mut self.dirs[d].framer;
            if f.hdr_len < RECORD_HEADER_LEN {
                let n = rest.len().min(RECORD_HEADER_LEN - f.hdr_len);
                f.hdr[f.hdr_len..f.hdr_len + n].copy_from_slice(&rest[..n]);
                f.hdr_len += n;
                rest = &rest[n..];
                if f.hdr_len == RECORD_HEADER_LEN {
                    let [t, v0, _, l0, l1] = f.hdr;
                    // RFC 8446 section 5.1: a content type we know, version 3.x.
                    if !(CHANGE_CIPHER_SPEC..=24).contains(&t) || v0 != 3 {
                        self.stop(from_server, Stop::Lost, out);
                        return;
                    }
                    f.left = usize::from(u16::from_be_bytes([l0, l1]));
                    f.body.clear();
                }
            } else {
                let n = rest.len().min(f.left);
                f.body.extend_from_slice(&rest[..n]);
                f.left -= n;
                rest = &rest[n..];
            }
            let f = &self.dirs[d].framer;
            if f.hdr_len == RECORD_HEADER_LEN && f.left == 0 {
                self.record(from_server, out);
            }
        }
    }

    /// A whole record of one direction was framed.
    fn record(&mut self, from_server: bool, out: &mut Sink<'_>) {
        let d = usize::from(from_server);
        let dir = &mut self.dirs[d];
        let header = dir.framer.hdr;
        dir.framer.hdr_len = 0;
        let content_type = header[0];
        if content_type == CHANGE_CIPHER_SPEC {
            dir.after_ccs = true;
            return;
        }
        // Plaintext (hellos, a TLS 1.2 handshake before its ChangeCipherSpec) is read
        // by the TLS observer; only what may be encrypted is kept.
        if content_type != APPLICATION_DATA && !dir.after_ccs {
            return;
        }
        if self.client_random.is_none() {
            // No ClientHello seen: no key can be found.
            self.stop(from_server, Stop::NoKey, out);
            return;
        }
        self.saw_encrypted = true;
        let body = std::mem::take(&mut dir.framer.body);
        dir.pending_bytes += body.len();
        let after_ccs = dir.after_ccs;
        self.queue.push_back(Pending {
            from_server,
            content_type,
            header,
            after_ccs,
            body,
        });
        // What its keys are known for goes now, before the bound is judged.
        self.pump(false, out);
        if self.dirs[d].pending_bytes > MAX_PENDING_BYTES {
            self.stop(from_server, Stop::TooLate, out);
        }
    }

    /// Decrypts the queued records in order, until one waits for keys not known yet
    /// (`last`: the connection ended, nothing more will come: such a one is dropped).
    fn pump(&mut self, last: bool, out: &mut Sink<'_>) {
        loop {
            let Some(chosen) = self.chosen else { return };
            let Chosen::Suite { suite, random } = chosen else {
                self.stop(false, Stop::Unsupported, out);
                self.stop(true, Stop::Unsupported, out);
                return;
            };
            let Some(p) = self.queue.front() else { return };
            let (from_server, d) = (p.from_server, usize::from(p.from_server));
            let encrypted = if suite.tls13 {
                p.content_type == APPLICATION_DATA
            } else {
                p.after_ccs
            };
            if self.dirs[d].stopped.is_some() || !encrypted {
                self.pop();
                continue;
            }
            if self.dirs[d].keys.is_none() {
                self.dirs[d].keys = self.load_keys(suite, random, from_server);
                if self.dirs[d].keys.is_none() {
                    if !last {
                        return;
                    }
                    self.stop(from_server, Stop::NoKey, out);
                    continue;
                }
            }
            if let Some(p) = self.pop() {
                self.open(suite, p, out);
            }
        }
    }

    fn pop(&mut self) -> Option<Pending> {
        let p = self.queue.pop_front()?;
        let dir = &mut self.dirs[usize::from(p.from_server)];
        dir.pending_bytes = dir.pending_bytes.saturating_sub(p.body.len());
        Some(p)
    }

    /// The keys of a direction's current epoch, from the key log.
    fn load_keys(&self, suite: Suite, server_random: [u8; 32], from_server: bool) -> Option<Keys> {
        let cr = self.client_random.as_ref()?;
        if !suite.tls13 {
            let master = self.keylog.secret(cr, Label::ClientRandom)?;
            return suite.keys12(master.as_bytes(), (cr, &server_random), from_server);
        }
        let label = match (self.dirs[usize::from(from_server)].epoch, from_server) {
            (Epoch::Handshake, false) => Label::ClientHandshake,
            (Epoch::Handshake, true) => Label::ServerHandshake,
            (Epoch::Traffic(_), false) => Label::ClientTraffic0,
            (Epoch::Traffic(_), true) => Label::ServerTraffic0,
        };
        suite.keys13(self.keylog.secret(cr, label)?)
    }

    /// Decrypts one record and hands on its application data.
    fn open(&mut self, suite: Suite, mut p: Pending, out: &mut Sink<'_>) {
        let from_server = p.from_server;
        let Some(keys) = self.dirs[usize::from(from_server)].keys.as_mut() else {
            return;
        };
        let seq = keys.seq;
        keys.seq += 1;
        let opened = match suite.tls13 {
            true => open13(keys, seq, &p.header, &mut p.body),
            false => open12(
                keys,
                suite.explicit_nonce,
                p.content_type,
                &p.header,
                &p.body,
                seq,
            ),
        };
        let Some((content_type, plain)) = opened else {
            Counters::add(&self.counters().records_failed_auth, 1);
            tracing::debug!(
                from_server,
                seq,
                "TLS record failed to authenticate: wrong key"
            );
            self.stop(from_server, Stop::AuthFailed, out);
            return;
        };
        if !self.decrypted_any {
            self.decrypted_any = true;
            Counters::add(&self.counters().connections_decrypted, 1);
        }
        Counters::add(&self.counters().records_decrypted, 1);
        Counters::add(&self.counters().plaintext_bytes, plain.len() as u64);
        match content_type {
            APPLICATION_DATA if !plain.is_empty() => {
                self.dirs[usize::from(from_server)].delivered += plain.len() as u64;
                out(from_server, Chunk::Data(&plain));
            }
            HANDSHAKE if suite.tls13 => self.handshake13(suite, from_server, &plain),
            // Alerts, TLS 1.2's Finished, heartbeats: nothing to read inside.
            _ => {}
        }
    }

    /// Follows a TLS 1.3 direction's handshake messages (they may span records) for the
    /// two that change its keys after the record that ends them (RFC 8446 section 5.1):
    /// Finished (to the application traffic secret) and KeyUpdate (to the next one).
    fn handshake13(&mut self, suite: Suite, from_server: bool, mut plain: &[u8]) {
        let dir = &mut self.dirs[usize::from(from_server)];
        let mut change = None;
        while !plain.is_empty() {
            if dir.hs_left > 0 {
                let n = plain.len().min(dir.hs_left);
                dir.hs_left -= n;
                plain = &plain[n..];
                continue;
            }
            let n = plain.len().min(4 - dir.hs_hdr.len());
            dir.hs_hdr.extend_from_slice(&plain[..n]);
            plain = &plain[n..];
            if let [kind, l0, l1, l2] = dir.hs_hdr[..] {
                dir.hs_left = usize::from(l0) << 16 | usize::from(l1) << 8 | usize::from(l2);
                dir.hs_hdr.clear();
                if kind == FINISHED || kind == KEY_UPDATE {
                    change = Some(kind);
                }
            }
        }
        match (change, dir.epoch) {
            (Some(FINISHED), Epoch::Handshake) => {
                dir.epoch = Epoch::Traffic(0);
                dir.keys = None;
            }
            (Some(KEY_UPDATE), Epoch::Traffic(n)) => {
                dir.epoch = Epoch::Traffic(n + 1);
                dir.keys = dir
                    .keys
                    .as_ref()
                    .and_then(|k| k.secret)
                    .and_then(|s| next_secret(suite, s))
                    .and_then(|s| suite.keys13(s));
            }
            _ => {}
        }
    }

    /// Stops decrypting one direction; its queued records are dropped. An inspection
    /// that already read part of its plaintext is told nothing more comes.
    fn stop(&mut self, from_server: bool, why: Stop, out: &mut Sink<'_>) {
        let dir = &mut self.dirs[usize::from(from_server)];
        if dir.stopped.is_some() {
            return;
        }
        dir.stopped = Some(why);
        dir.framer = Framer::default();
        dir.keys = None;
        self.queue.retain(|p| p.from_server != from_server);
        self.dirs[usize::from(from_server)].pending_bytes = 0;
        if self.decrypted_any {
            let delivered_bytes = self.dirs[usize::from(from_server)].delivered;
            out(from_server, Chunk::Capped { delivered_bytes });
        }
    }

    /// The connection ended: the key log is read once more, what can be decrypted is,
    /// and the connection is counted (decrypted, no key, keys too late, unsupported).
    pub fn finish(&mut self, out: &mut Sink<'_>) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        self.pump(true, out);
        let c = self.counters();
        if matches!(self.chosen, Some(Chosen::Unsupported)) {
            Counters::add(&c.connections_unsupported, 1);
            return;
        }
        if self.decrypted_any || !self.saw_encrypted {
            return;
        }
        let n = if self.dirs.iter().any(|d| d.stopped == Some(Stop::TooLate))
            && self.client_random.is_some_and(|cr| self.keylog.knows(&cr))
        {
            &c.connections_keys_too_late
        } else if self
            .dirs
            .iter()
            .any(|d| d.stopped == Some(Stop::AuthFailed))
        {
            // Counted by its records.
            return;
        } else {
            &c.connections_no_key
        };
        Counters::add(n, 1);
    }
}

mod cipher;

use cipher::{Keys, RECORD_HEADER_LEN, Suite, next_secret, open12, open13};

#[cfg(test)]
mod tests;

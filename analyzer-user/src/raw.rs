//! The raw-socket backend: what it captures, and the pure parsers that read it.
//!
//! The parsers ([`reasm`], [`tls`], [`h2c`], [`http1`]) do no I/O: TCP byte-stream
//! reassembly and the TLS, h2c and HTTP/1.1 observers that read the reassembled bytes.
//! The capture loop and the TCP tracker (the modules below them) feed them. Data flow
//! per direction of one connection:
//! `segment -> `[`reasm::StreamReassembler`]` -> `[`reasm::Chunk`]` -> `
//! [`tls::TlsObserver`], [`h2c::H2cObserver`] or [`http1::Http1Observer`]` -> facts`.
//! Every parser bounds its memory whatever the input, and never panics on input data.

pub mod h2c;
pub mod http1;
pub mod reasm;
pub mod tls;

// The capture side (the AF_PACKET capture and its socket filter live in
// loadgen::packets, shared with the packet tools): the per-connection inspector, the TCP tracker that plays the
// kernel's events, and the session source that runs them.
pub(crate) mod flow;
pub(crate) mod source;
pub(crate) mod track;

//! wire: what faultline parses off the wire or out of a buffer, once for both tools.
//!
//! It owns the HTTP/2 frame parser ([`h2frame`]), link-layer/IP/TCP/ICMP packet parsing
//! and building ([`packet`]), the AF_PACKET capture socket ([`capture`]) with its classic
//! BPF filter ([`bpf`]), certificate facts with RFC 6125 name matching and the rustls
//! verifier that records what a server presented ([`cert`]), and the socket cookie
//! ([`sock`]).
//! Every parser here is bounded, never panics on input, and is fuzzed (`fuzz/`).
//!
//! It must never depend on another faultline crate (not even the event contract): it
//! knows bytes and protocols, not runs, reports or failure classes. Callers map its
//! facts into their own records.

pub mod bpf;
pub mod capture;
pub mod cert;
pub mod h2frame;
pub mod packet;
pub mod sock;

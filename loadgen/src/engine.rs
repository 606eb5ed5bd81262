//! The engine of a run: a scheduler (open model) or virtual users (closed model) put jobs
//! on a queue per origin ([`load`]); connection slots pull jobs from it, each owning one
//! connection at a time ([`pool`], [`open`]) and running it with the HTTP/1.1 or HTTP/2
//! driver ([`h1`], [`h2`]) over a frame tap ([`tap`]); every outcome goes to the single
//! consumer ([`crate::sink`]) that owns the statistics. The state they share is
//! [`state`]; the configuration they run on is [`config`].
//!
//! Arrows point down: `load` → `pool` → `h1`/`h2` → `open`/`tap` → `conn`, and every
//! one of them → `state` → `config`. Nothing here imports `mod.rs`.
mod config;
mod conn;
mod h1;
mod h2;
mod load;
mod open;
mod pool;
mod state;
mod tap;

pub use config::{Load, ProtoChoice, Resolve, RunConfig};
pub(crate) use load::drive;
pub(crate) use pool::grow_pool;
pub(crate) use state::{Ctx, Origin, OriginAddr, Prepared};

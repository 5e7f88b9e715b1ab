//! chat-engine: real-time chat for blog posts in one process.
//!
//! A map of the crate, in the order a message travels:
//! - `http`: routes of PROTOCOL.md (widget page, JSON API, health, metrics) and the WebSocket
//!   upgrade that hands a connection to `ws`.
//! - `ws`: `protocol` (frame types) and the `session` of one connection: hello, validation, relay.
//! - `room`: the registry and one actor per live room: members, presence, ring buffer, seq
//!   order, rate limits; sends go to group commit and are acked and broadcast after it.
//! - `store`: the `Store` trait, SQLite and Postgres implementations, the group-commit `writer`.
//! - `bus`: cross-pod fan-out and room-wide presence over Redis (only with several pods).
//! - `chat`: the domain types and the rules on client input; `metrics`, `config`, `app`, `server`;
//!   `write_deadline` cuts connections whose peer stopped reading; `heap` returns freed memory.
//! - `client_ip` (who a request comes from, behind trusted proxies) and `clients` (fair share per
//!   client address: sockets, joins, sends).

pub mod app;
pub mod bus;
pub mod chat;
pub mod client_ip;
pub mod clients;
pub mod config;
pub mod heap;
pub mod http;
pub mod metrics;
pub mod room;
pub mod server;
pub mod store;
pub mod write_deadline;
pub mod ws;

pub use config::Config;
pub use server::serve;

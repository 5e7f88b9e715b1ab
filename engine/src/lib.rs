//! chat-engine: real-time chat for blog posts in one process.
//!
//! The layers, bottom up (each uses only those below it):
//! - `protocol` (the wire contract: frames, error and close codes, inbound checks) and `chat`
//!   (domain types and the rules on client input).
//! - `store` (the `Store` trait, SQLite and Postgres, the group-commit `writer`, retention) and
//!   `bus` (cross-pod fan-out and room-wide presence over Redis).
//! - `room`: the registry and one actor per live room around a synchronous core (members,
//!   presence, ring, seq order, send limits); sends are acked and broadcast after the commit.
//! - `http` (routes, JSON API, assets, the upgrade) and `ws` (the session of one socket).
//! - Around them: `rate` (the token bucket every limit uses), `config`, `app`, `server`, `metrics`, `client_ip` (who a request comes from,
//!   behind trusted proxies), `clients` (fair share per client address), `spam` (links from new
//!   readers, blocked words, repeated content), `write_deadline` (cuts connections whose peer
//!   stopped reading), `heap` (returns freed memory), `webhooks` (tells the owner's endpoints about
//!   new messages, reports and locks, off the rooms' path) and `jobs` (the export and import
//!   subcommands).

pub mod app;
pub mod bus;
pub mod chat;
pub mod client_ip;
pub mod clients;
pub mod config;
pub mod heap;
pub mod http;
pub mod jobs;
pub mod metrics;
pub mod protocol;
pub mod rate;
pub mod room;
pub mod server;
pub mod spam;
pub mod store;
pub mod webhooks;
pub mod write_deadline;
pub mod ws;

pub use config::Config;
pub use server::serve;

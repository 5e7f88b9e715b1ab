//! Test harness: starts the real `chat-engine` binary and talks to it the way browsers and tools
//! do, over WebSocket frames and plain HTTP/1.1. One module per job; test files take everything
//! with `use common::*;`.
// Every test file compiles the whole harness and uses only part of it.
#![allow(dead_code, unused_imports)]

mod checks;
mod engine;
mod http_client;
mod webhook_receiver;
mod ws_client;

use std::time::Duration;

pub use checks::*;
pub use engine::*;
pub use http_client::*;
pub use webhook_receiver::*;
pub use ws_client::*;

/// How long a test waits for a frame, an HTTP answer or a log line before it gives up.
pub const FRAME_TIMEOUT: Duration = Duration::from_secs(5);

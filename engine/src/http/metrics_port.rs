//! The separate metrics address (`--metrics-bind`): `/metrics` and nothing else, so the public
//! port need not expose the process's internals and a network policy can open this one to
//! Prometheus alone.

use std::convert::Infallible;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use super::{not_found, ops, Body};

/// A scraper sends its request at once; anything slower is not one.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves scrapes until the task is aborted.
pub async fn serve(listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(async move {
                    let conn = http1::Builder::new()
                        .timer(TokioTimer::new())
                        .header_read_timeout(HEADER_TIMEOUT)
                        .serve_connection(TokioIo::new(stream), service_fn(scrape));
                    if let Err(err) = conn.await {
                        tracing::debug!(error = %err, "metrics connection ended with an error");
                    }
                });
            }
            Err(err) => {
                tracing::warn!(error = %err, "metrics accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn scrape(req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    Ok(match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => ops::metrics(),
        _ => not_found(),
    })
}

//! Operations endpoints: liveness, readiness and Prometheus metrics.

use std::sync::Arc;
use std::time::Duration;

use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use serde_json::json;

use super::{full, json, Body};
use crate::app::App;
use crate::metrics::METRICS;

/// Readiness gives the store this long to answer.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

pub fn healthz() -> Response<Body> {
    json(&json!({ "status": "ok" }))
}

/// 503 while draining or while the store does not answer, so the load balancer moves readers on.
pub async fn readyz(app: &Arc<App>) -> Response<Body> {
    let (status, reason) = if app.is_draining() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining")
    } else {
        match tokio::time::timeout(READY_TIMEOUT, app.store.ping()).await {
            Ok(Ok(())) => (StatusCode::OK, "ready"),
            _ => (StatusCode::SERVICE_UNAVAILABLE, "store unavailable"),
        }
    };
    let mut res = json(&json!({ "status": reason }));
    *res.status_mut() = status;
    res
}

pub fn metrics() -> Response<Body> {
    let mut res = Response::new(full(METRICS.render()));
    res.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    res
}

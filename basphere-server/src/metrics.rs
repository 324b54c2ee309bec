//! Prometheus metrics: requests and latencies by route, operations by state, IPAM usage.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::AppState;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: String,
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub state: String,
}

/// The server's metrics.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram>,
    operations: Family<StateLabels, Gauge>,
    leased_addresses: Gauge,
    assigned_blocks: Gauge,
    pool_addresses: Gauge,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("basphere");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register("http_requests", "HTTP requests by method, route and status", requests.clone());
        let latency = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5])
        });
        registry.register("http_request_duration_seconds", "HTTP request latency by route", latency.clone());
        let operations = Family::<StateLabels, Gauge>::default();
        registry.register("operations", "Operations not yet finished, by state", operations.clone());
        let leased_addresses = Gauge::default();
        registry.register("ipam_leased_addresses", "Addresses leased by the IPAM", leased_addresses.clone());
        let assigned_blocks = Gauge::default();
        registry.register("ipam_assigned_blocks", "IP blocks assigned to users", assigned_blocks.clone());
        let pool_addresses = Gauge::default();
        registry.register("ipam_pool_addresses", "Addresses in all configured pools", pool_addresses.clone());
        Metrics { registry, requests, latency, operations, leased_addresses, assigned_blocks, pool_addresses }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Middleware: counts and times every request by its route template (never the raw path).
pub async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let method = request.method().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    let labels = RequestLabels { method, route: route.clone(), status: response.status().as_u16() };
    state.metrics.requests.get_or_create(&labels).inc();
    state.metrics.latency.get_or_create(&RouteLabels { route }).observe(started.elapsed().as_secs_f64());
    response
}

/// `GET /metrics`: the Prometheus text format. Public, like `/healthz`.
pub async fn render(State(state): State<AppState>) -> Response {
    if let Ok(gauges) = state.platform.gauges().await {
        let metrics = &state.metrics;
        metrics.operations.get_or_create(&StateLabels { state: "queued".into() }).set(gauges.queued_operations as i64);
        metrics
            .operations
            .get_or_create(&StateLabels { state: "running".into() })
            .set(gauges.running_operations as i64);
        metrics.leased_addresses.set(gauges.leased_addresses as i64);
        metrics.assigned_blocks.set(gauges.assigned_blocks as i64);
        metrics.pool_addresses.set(gauges.pool_addresses as i64);
    }
    let mut body = String::new();
    if prometheus_client::encoding::text::encode(&mut body, &state.metrics.registry).is_err() {
        return (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "metrics could not be encoded").into_response();
    }
    ([(axum::http::header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], body)
        .into_response()
}

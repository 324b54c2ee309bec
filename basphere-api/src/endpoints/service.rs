//! Liveness, readiness, metrics and the OpenAPI document: public, on both listeners.

use crate::endpoint::{endpoint, Content, ProblemResponse::ServerError, Reply};
use crate::{Health, Readiness};

endpoint! {
    /// `GET /healthz`
    Healthz = Get "/healthz", healthz, tag "service",
    types((), (), () => Health);
    SUMMARY = "Liveness: the process serves requests. Public.";
    PUBLIC = true;
    REPLIES = &[Reply { status: 200, description: "The process serves requests.", content: &[Content::Json], headers: &[] }];
    PROBLEMS = &[];
}

endpoint! {
    /// `GET /readyz`
    Readyz = Get "/readyz", readyz, tag "service",
    types((), (), () => Readiness);
    SUMMARY = "Readiness: the store answers and the VM backend passes its preflight. Public.";
    PUBLIC = true;
    REPLIES = &[
        Reply { status: 200, description: "Ready.", content: &[Content::Json], headers: &[] },
        Reply { status: 503, description: "Not ready: the fields say which part and why.", content: &[Content::Json], headers: &[] },
    ];
    PROBLEMS = &[ServerError];
}

endpoint! {
    /// `GET /metrics`
    Metrics = Get "/metrics", render, tag "service",
    types((), (), () => String);
    SUMMARY = "`GET /metrics`: the Prometheus text format. Public, like `/healthz`.";
    PUBLIC = true;
    REPLIES = &[
        Reply {
            status: 200,
            description: "The metrics in the OpenMetrics text format.",
            content: &[Content::Text("application/openmetrics-text")],
            headers: &[],
        },
        Reply {
            status: 500,
            description: "The metrics could not be encoded.",
            content: &[Content::Text("text/plain")],
            headers: &[],
        },
    ];
    PROBLEMS = &[ServerError];
}

endpoint! {
    /// `GET /api/v1/openapi.json`
    OpenApi = Get "/api/v1/openapi.json", document, tag "service",
    types((), (), () => serde_json::Value);
    SUMMARY = "`GET /api/v1/openapi.json`. Public.";
    PUBLIC = true;
    REPLIES = &[Reply { status: 200, description: "This document (OpenAPI 3.1).", content: &[Content::Json], headers: &[] }];
    PROBLEMS = &[];
}

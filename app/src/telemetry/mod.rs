//! Logs, metrics and per-request telemetry: how the service tells operators what it does.

pub mod logging;
pub mod metrics;
pub mod request;

/// The label every request is known by in logs and metrics: the route template, never the raw
/// path, so that hostile or unusual paths cannot blow up metric cardinality.
pub fn path_template(path: &str) -> &'static str {
    match path {
        "/" => "/",
        "/openapi.json" => "/openapi.json",
        "/healthz" => "/healthz",
        "/readyz" => "/readyz",
        "/metrics" => "/metrics",
        "/version" => "/version",
        p if p.starts_with("/transactions/") => "/transactions/{route}",
        _ => "unmatched",
    }
}

#[cfg(test)]
mod tests {
    use super::path_template;

    #[test]
    fn raw_paths_map_to_a_bounded_set_of_templates() {
        assert_eq!(path_template("/transactions/AR1"), "/transactions/{route}");
        assert_eq!(
            path_template("/transactions/%2e%2e"),
            "/transactions/{route}"
        );
        assert_eq!(path_template("/healthz"), "/healthz");
        assert_eq!(path_template("/etc/passwd"), "unmatched");
        assert_eq!(path_template(&"/x".repeat(10_000)), "unmatched");
    }
}

//! The route table: every path the service answers, its methods, who may call them, and what
//! serves them. The edge endpoint dispatches with it, the `Allow` header of a `405` is built
//! from it, telemetry labels requests with its templates, and authentication reads each
//! operation's access from it, so an operation added here is protected like its neighbours.
//!
//! The `#[oai(path = ...)]` attributes of the OpenAPI operations cannot name these constants;
//! a unit test checks that the OpenAPI document has exactly the operations this table lists.

use poem::http::Method;

/// Who may call an operation when API keys are configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone: health, readiness, version, metrics and the documents.
    Open,
    /// A key with the `read` or `write` scope (or anyone, with `--public-reads`).
    Read,
    /// A key with the `write` (or `admin`) scope.
    Write,
    /// A key with the `admin` scope.
    Admin,
}

/// What answers a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handler {
    /// Swagger UI's page, rendered once at start.
    SwaggerUi,
    /// The dashboard page, bundled in the binary.
    Dashboard,
    /// The OpenAPI document, rendered once at start.
    OpenApiDocument,
    /// The Prometheus text format.
    Metrics,
    /// An operation of the OpenAPI service.
    Operation,
}

/// One method of a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MethodAccess {
    pub method: &'static str,
    pub access: Access,
}

/// One path the service answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteEntry {
    /// The path as the OpenAPI document spells it; a `{name}` segment matches any one
    /// non-empty segment. It is also the `path` label of logs and metrics.
    pub template: &'static str,
    pub methods: &'static [MethodAccess],
    pub handler: Handler,
    /// The query parameters its operations take; any other is refused, and so is a second
    /// value of one that takes one. `None`: the query is not looked at (the documents, health).
    pub query: Option<&'static [QueryParameter]>,
}

/// A query parameter an operation takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryParameter {
    pub name: &'static str,
    /// Whether it may be given more than once (`route=` of the multi-route read).
    pub repeatable: bool,
}

const fn single(name: &'static str) -> QueryParameter {
    QueryParameter {
        name,
        repeatable: false,
    }
}

const fn method(method: &'static str, access: Access) -> MethodAccess {
    MethodAccess { method, access }
}

/// Every path the service answers.
pub const ROUTES: &[RouteEntry] = &[
    RouteEntry {
        template: "/transactions/{route}",
        methods: &[method("GET", Access::Read), method("POST", Access::Write)],
        query: Some(&[]),
        handler: Handler::Operation,
    },
    RouteEntry {
        template: "/transactions/{route}/daily",
        methods: &[method("GET", Access::Read)],
        query: Some(&[single("from"), single("to")]),
        handler: Handler::Operation,
    },
    RouteEntry {
        template: "/transactions/{route}/monthly",
        methods: &[method("GET", Access::Read)],
        query: Some(&[single("from"), single("to")]),
        handler: Handler::Operation,
    },
    RouteEntry {
        template: "/transactions",
        methods: &[method("GET", Access::Read)],
        query: Some(&[
            QueryParameter {
                name: "route",
                repeatable: true,
            },
            single("airline"),
            single("limit"),
            single("cursor"),
        ]),
        handler: Handler::Operation,
    },
    RouteEntry {
        template: "/top-routes",
        methods: &[method("GET", Access::Read)],
        query: Some(&[
            single("day"),
            single("month"),
            single("limit"),
            single("airline"),
        ]),
        handler: Handler::Operation,
    },
    RouteEntry {
        template: "/admin/export",
        methods: &[method("GET", Access::Admin)],
        query: Some(&[]),
        handler: Handler::Operation,
    },
    RouteEntry {
        template: "/healthz",
        methods: &[method("GET", Access::Open)],
        query: None,
        handler: Handler::Operation,
    },
    RouteEntry {
        template: "/readyz",
        methods: &[method("GET", Access::Open)],
        query: None,
        handler: Handler::Operation,
    },
    RouteEntry {
        template: "/version",
        methods: &[method("GET", Access::Open)],
        query: None,
        handler: Handler::Operation,
    },
    RouteEntry {
        template: "/",
        methods: &[method("GET", Access::Open)],
        query: None,
        handler: Handler::SwaggerUi,
    },
    // The page is open; the API calls it makes carry the key a person enters in it.
    RouteEntry {
        template: "/dashboard",
        methods: &[method("GET", Access::Open)],
        query: None,
        handler: Handler::Dashboard,
    },
    RouteEntry {
        template: "/openapi.json",
        methods: &[method("GET", Access::Open)],
        query: None,
        handler: Handler::OpenApiDocument,
    },
    // For the cluster network only (the NetworkPolicy and the Service keep it there): it
    // names clients and routes' traffic, nothing secret, but nothing a public caller needs.
    RouteEntry {
        template: "/metrics",
        methods: &[method("GET", Access::Open)],
        query: None,
        handler: Handler::Metrics,
    },
];

/// The label of a request whose path is in no entry. Raw paths never become labels, so
/// hostile or unusual paths cannot blow up metric cardinality.
pub const UNMATCHED: &str = "unmatched";

fn matches(template: &str, path: &str) -> bool {
    let mut wanted = template.split('/');
    let mut given = path.split('/');
    loop {
        match (wanted.next(), given.next()) {
            (None, None) => return true,
            (Some(w), Some(g)) if w.starts_with('{') => {
                if g.is_empty() {
                    return false;
                }
            }
            (Some(w), Some(g)) if w == g => {}
            _ => return false,
        }
    }
}

/// The entry whose template matches a raw request path, if any.
pub fn find(path: &str) -> Option<&'static RouteEntry> {
    ROUTES.iter().find(|entry| matches(entry.template, path))
}

/// The label a request is known by in logs and metrics.
pub fn template_of(entry: Option<&RouteEntry>) -> &'static str {
    entry.map_or(UNMATCHED, |entry| entry.template)
}

impl RouteEntry {
    /// The access a method needs on this path; `None` for a method the path does not answer.
    /// `HEAD` is answered as `GET`.
    pub fn access(&self, method: &Method) -> Option<Access> {
        let method = if *method == Method::HEAD {
            "GET"
        } else {
            method.as_str()
        };
        self.methods
            .iter()
            .find(|m| m.method == method)
            .map(|m| m.access)
    }

    /// The `Allow` header of a `405` on this path, e.g. `GET, POST`.
    pub fn allow(&self) -> String {
        let methods: Vec<&str> = self.methods.iter().map(|m| m.method).collect();
        methods.join(", ")
    }
}

/// The access a request needs. A path in no entry gets the strictest access its method could
/// need anywhere (it can only be answered `404`, but authentication never depends on the
/// router agreeing with this table): `Read` for `GET`/`HEAD`, `Write` otherwise.
pub fn access_for(entry: Option<&RouteEntry>, method: &Method) -> Option<Access> {
    match entry {
        Some(entry) => entry.access(method),
        None if *method == Method::GET || *method == Method::HEAD => Some(Access::Read),
        None => Some(Access::Write),
    }
}

#[cfg(test)]
mod tests {
    use std::{collections::BTreeSet, sync::Arc};

    use super::*;

    #[test]
    fn raw_paths_map_to_a_bounded_set_of_templates() {
        let label = |path: &str| template_of(find(path));
        assert_eq!(label("/transactions/AR1"), "/transactions/{route}");
        assert_eq!(label("/transactions/%2e%2e"), "/transactions/{route}");
        assert_eq!(label("/healthz"), "/healthz");
        assert_eq!(label("/"), "/");
        assert_eq!(label("/etc/passwd"), UNMATCHED);
        assert_eq!(label("/transactions/"), UNMATCHED);
        assert_eq!(label("/transactions/AR1/extra"), UNMATCHED);
        assert_eq!(label("/healthz/"), UNMATCHED);
        assert_eq!(label(&"/x".repeat(10_000)), UNMATCHED);
    }

    #[test]
    fn access_comes_from_the_table_and_unknown_paths_fail_closed() {
        let transactions = find("/transactions/AR1");
        assert_eq!(access_for(transactions, &Method::GET), Some(Access::Read));
        assert_eq!(access_for(transactions, &Method::HEAD), Some(Access::Read));
        assert_eq!(access_for(transactions, &Method::POST), Some(Access::Write));
        assert_eq!(access_for(transactions, &Method::PUT), None);
        assert_eq!(
            access_for(find("/metrics"), &Method::GET),
            Some(Access::Open)
        );
        assert_eq!(access_for(None, &Method::GET), Some(Access::Read));
        assert_eq!(access_for(None, &Method::DELETE), Some(Access::Write));
        assert_eq!(
            find("/transactions/AR1").map(RouteEntry::allow).as_deref(),
            Some("GET, POST")
        );
    }

    /// The OpenAPI document lists exactly the operations the table routes to it.
    #[test]
    fn the_openapi_document_has_exactly_the_tables_operations() {
        let store = crate::store::Store::batch(crate::store::MemoryStore::new());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let spec = runtime.block_on(async {
            let ledger = crate::ledger::Ledger::start(
                store,
                crate::ledger::LedgerSettings::default(),
                crate::clock::SystemClock::shared(),
            );
            let lifecycle = Arc::new(crate::lifecycle::Lifecycle::new(
                Arc::clone(ledger.health()),
                false,
            ));
            let rankings = Arc::new(crate::rankings::Rankings::new(
                Arc::clone(&ledger),
                std::time::Duration::from_secs(60),
            ));
            super::super::openapi(
                ledger,
                lifecycle,
                &crate::auth::AuthMode::Off,
                &Arc::new(crate::limits::ClientLimits::default()),
                rankings,
            )
            .spec()
        });
        let spec: serde_json::Value = serde_json::from_str(&spec).expect("json");
        let mut documented = BTreeSet::new();
        for (path, item) in spec["paths"].as_object().expect("paths") {
            for method in item.as_object().expect("path item").keys() {
                documented.insert((path.clone(), method.to_ascii_uppercase()));
            }
        }
        let table: BTreeSet<(String, String)> = ROUTES
            .iter()
            .filter(|entry| entry.handler == Handler::Operation)
            .flat_map(|entry| {
                entry
                    .methods
                    .iter()
                    .map(|m| (entry.template.to_owned(), m.method.to_owned()))
            })
            .collect();
        assert_eq!(documented, table);

        // And each operation's query parameters are the ones the table lets through.
        for entry in ROUTES.iter().filter(|e| e.handler == Handler::Operation) {
            let Some(taken) = entry.query else {
                continue;
            };
            for method in entry.methods {
                let op = &spec["paths"][entry.template][method.method.to_ascii_lowercase()];
                let documented: BTreeSet<(String, bool)> = op["parameters"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|p| p["in"] == "query")
                    .map(|p| {
                        let name = p["name"].as_str().unwrap_or_default().to_owned();
                        (name, p["schema"]["type"] == "array")
                    })
                    .collect();
                let table: BTreeSet<(String, bool)> = taken
                    .iter()
                    .map(|p| (p.name.to_owned(), p.repeatable))
                    .collect();
                assert_eq!(documented, table, "{} {}", method.method, entry.template);
            }
        }
    }
}

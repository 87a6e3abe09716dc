use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use clap::{CommandFactory, Parser};

use super::*;
use crate::auth::Scope;

fn parse(args: &[&str]) -> Result<Config, clap::Error> {
    Config::try_parse_from(std::iter::once("flight-counter").chain(args.iter().copied()))
}

fn valid(config: &Config) -> bool {
    config.validate().is_ok()
}

#[test]
fn defaults_are_valid_and_are_what_an_empty_command_line_gives() {
    let mut parsed = parse(&[]).expect("no flags parse");
    // The one variable a developer's shell may well set.
    if std::env::var_os("RUST_LOG").is_some() {
        parsed.log.log_level = LogConfig::default().log_level;
    }
    assert_eq!(parsed, Config::default());
    let config = Config::default();
    assert_eq!(config.validate(), Ok(()));
    assert_eq!(config.server.bind, "127.0.0.1:8080".parse().expect("addr"));
    assert_eq!(config.store, StoreKind::Embedded);
    assert_eq!(config.ledger.commit_timeout, Duration::from_secs(8));
    let dynamo = config.dynamo_settings();
    assert_eq!(dynamo.operation_timeout, config.ledger.commit_timeout);
    assert!(dynamo.attempt_timeout <= dynamo.operation_timeout);
}

#[test]
fn flags_land_in_their_groups() {
    let config = parse(&[
        "--embedded-cache-mib",
        "48",
        "--dynamodb-max-in-flight",
        "8",
        "--table",
        "counts.v2",
        "--max-batch",
        "10",
        "--api-keys-file",
        "/keys",
        "--public-reads",
        "--client-rate-limit",
        "200/s,burst=400",
        "--idle-timeout",
        "20s",
    ])
    .expect("parses");
    assert_eq!(config.embedded.cache_mib, 48);
    assert_eq!(config.dynamodb.max_in_flight, 8);
    assert_eq!(config.dynamodb.table, "counts.v2");
    assert_eq!(config.ledger.max_batch, 10);
    assert_eq!(config.auth.api_keys_file, Some(PathBuf::from("/keys")));
    assert!(config.auth.public_reads);
    assert_eq!(config.server.idle_timeout, Duration::from_secs(20));
    assert_eq!(
        config
            .limits
            .client_rate_limit
            .map(|r| r.to_string())
            .as_deref(),
        Some("200/s,burst=400")
    );
    assert_eq!(config.validate(), Ok(()));
}

#[test]
fn each_rule_is_its_own_error() {
    let with = |change: &dyn Fn(&mut Config)| {
        let mut config = Config::default();
        change(&mut config);
        config.validate()
    };
    assert_eq!(
        with(&|c| c.ledger.commit_timeout = Duration::ZERO),
        Err(ConfigError::Zero {
            flag: "--commit-timeout"
        })
    );
    assert_eq!(
        with(&|c| {
            c.ledger.max_batch = 100;
            c.ledger.max_pending = 10;
        }),
        Err(ConfigError::PendingBelowBatch {
            pending: 10,
            batch: 100
        })
    );
    assert_eq!(
        with(&|c| c.auth.public_reads = true),
        Err(ConfigError::PublicReadsWithoutKeys)
    );
    assert_eq!(
        with(&|c| c.server.metrics_bind = Some(c.server.bind)),
        Err(ConfigError::MetricsOnApiAddress(
            "127.0.0.1:8080".parse().expect("addr")
        ))
    );
    // Port 0 on both: two different random ports.
    assert_eq!(
        with(&|c| {
            c.server.bind = "127.0.0.1:0".parse().expect("addr");
            c.server.metrics_bind = Some(c.server.bind);
        }),
        Ok(())
    );
    let cors = with(&|c| c.server.cors_allow_origin = vec!["dash.example.com".into()]);
    assert!(matches!(cors, Err(ConfigError::Cors(_))), "{cors:?}");
    let message = cors.expect_err("refused").to_string();
    assert!(
        message.starts_with("--cors-allow-origin \"dash.example.com\""),
        "{message}"
    );
}

#[test]
fn connection_deadlines_outlast_the_commit_timeout() {
    for (value, commit, ok) in [
        (500, 100, false),
        (5000, 5000, false),
        (10_000, 30_000, false),
        (6000, 5000, true),
    ] {
        for idle in [true, false] {
            let mut config = Config::default();
            config.ledger.commit_timeout = Duration::from_millis(commit);
            let deadline = Duration::from_millis(value);
            if idle {
                config.server.idle_timeout = deadline;
            } else {
                config.server.request_timeout = deadline;
            }
            assert_eq!(valid(&config), ok, "idle={idle} {value} {commit}");
        }
    }
    let mut config = Config::default();
    config.server.request_timeout = Duration::from_secs(5);
    assert_eq!(
        config.validate().map_err(|e| e.to_string()),
        Err(
            "--request-timeout (5s) must be at least 1s and longer than --commit-timeout (8s)"
                .to_owned()
        )
    );
}

#[test]
fn idempotency_retention_is_bounded() {
    for (retention, ok) in [
        (Duration::ZERO, false),
        (Duration::from_millis(500), false),
        (Duration::from_secs(1), true),
        (Duration::from_secs(366 * 86_400), false),
    ] {
        let mut config = Config::default();
        config.ledger.idempotency_retention = retention;
        assert_eq!(valid(&config), ok, "{retention:?}");
    }
}

#[test]
fn dynamodb_settings_are_checked_and_bounded_by_the_commit_timeout() {
    let with = |change: &dyn Fn(&mut DynamoConfig)| {
        let mut config = Config {
            store: StoreKind::Dynamodb,
            ..Config::default()
        };
        change(&mut config.dynamodb);
        config.validate()
    };
    assert_eq!(with(&|d| d.create_table = true), Ok(()));
    assert_eq!(
        with(&|d| d.endpoint_url = Some("http://127.0.0.1:4567".into())),
        Ok(())
    );
    assert_eq!(
        with(&|d| d.table = "ab".into()),
        Err(ConfigError::TableName("ab".into()))
    );
    assert!(with(&|d| d.table = "bad/name".into()).is_err());
    assert_eq!(
        with(&|d| d.endpoint_url = Some("127.0.0.1:4567".into())),
        Err(ConfigError::EndpointUrl("127.0.0.1:4567".into()))
    );
    assert_eq!(
        with(&|d| d.attempt_timeout = Duration::ZERO),
        Err(ConfigError::Zero {
            flag: "--dynamodb-attempt-timeout"
        })
    );
    assert!(parse(&["--dynamodb-max-in-flight", "0"]).is_err());
    assert!(parse(&["--dynamodb-max-attempts", "0"]).is_err());
    let mut config = Config::default();
    config.ledger.commit_timeout = Duration::from_millis(300);
    let dynamo = config.dynamo_settings();
    assert_eq!(dynamo.attempt_timeout, Duration::from_millis(300));
    assert_eq!(dynamo.connect_timeout, Duration::from_millis(300));
}

#[test]
fn the_api_key_subcommand_parses_apart_from_serving() {
    let cli = Cli::parse_from([
        "x",
        "api-key",
        "--client",
        "booking-engine",
        "--scope",
        "read",
    ]);
    match cli.command {
        Some(Command::ApiKey(args)) => {
            assert_eq!(args.client.as_str(), "booking-engine");
            assert_eq!(args.scope, Scope::Read);
        }
        other => panic!("not api-key: {other:?}"),
    }
    assert!(
        Cli::try_parse_from(["x", "api-key", "--client", "Bad_Name", "--scope", "read"]).is_err()
    );
    assert!(Cli::try_parse_from(["x", "api-key", "--client", "a", "--scope", "owner"]).is_err());
    assert!(Cli::try_parse_from(["x", "api-key", "--client", "a", "--scope", "admin"]).is_ok());
    assert!(Cli::try_parse_from(["x", "api-key", "--scope", "write"]).is_err());
    let cli = Cli::parse_from(["x", "--api-keys-file", "/keys", "--public-reads"]);
    assert!(cli.command.is_none());
    assert!(cli.config.auth.public_reads);
}

#[test]
fn client_limits_default_to_a_key_cap_only() {
    let limits = Config::default().client_limits();
    assert!(limits.rates.is_none());
    assert_eq!(limits.keys.map(|k| k.max()), Some(100_000));
    let config = parse(&[
        "--client-rate-limit",
        "200/s,burst=400",
        "--client-max-idempotency-keys",
        "0",
    ])
    .expect("parses");
    let limits = config.client_limits();
    assert_eq!(limits.rates.map(|r| r.limit().burst()), Some(400));
    assert!(limits.keys.is_none(), "0 turns the cap off");
    let err = parse(&["--client-rate-limit", "200/h"])
        .expect_err("unknown period")
        .to_string();
    assert!(
        err.contains("--client-rate-limit") && err.contains("e.g. 200/s"),
        "{err}"
    );
    assert!(parse(&["--client-max-idempotency-keys", "-1"]).is_err());
}

#[test]
fn malformed_values_are_refused_by_the_parser() {
    for args in [
        &["--bind", "nowhere"][..],
        &["--store", "cloud"],
        &["--drain-timeout", "soon"],
        &["--max-batch", "0"],
        &["--log-level", "[[["],
    ] {
        assert!(parse(args).is_err(), "{args:?}");
    }
}

/// A row of the flag table: environment variable and default, by flag.
type FlagTable = BTreeMap<String, (String, String)>;

/// The flags `--help` lists, from the command line's own definition.
fn flags_of_the_command_line() -> FlagTable {
    let mut command = Config::command();
    // Building fills in what clap implies, such as a switch's `false` default.
    command.build();
    command
        .get_arguments()
        .filter_map(|arg| {
            let flag = format!("--{}", arg.get_long()?);
            let env = arg.get_env()?.to_string_lossy().into_owned();
            let defaults: Vec<_> = arg
                .get_default_values()
                .iter()
                .map(|v| v.to_string_lossy().into_owned())
                .collect();
            let default = if defaults.is_empty() {
                "none".to_owned()
            } else {
                defaults.join(",")
            };
            Some((flag, (env, default)))
        })
        .collect()
}

/// The flags docs/configuration.md lists: `| `--flag` | `ENV` | `default` or none ... | meaning |`.
fn flags_of_the_docs(markdown: &str) -> FlagTable {
    let cell = |c: &str| c.trim().trim_matches('`').to_owned();
    markdown
        .lines()
        .filter(|line| line.starts_with("| `--"))
        .filter_map(|line| {
            let cells: Vec<&str> = line.trim_matches('|').split(" | ").collect();
            let [flag, env, default, ..] = cells.as_slice() else {
                return None;
            };
            let default = cell(default);
            let default = if default.starts_with("none") {
                "none".to_owned()
            } else {
                default
            };
            Some((cell(flag), (cell(env), default)))
        })
        .collect()
}

#[test]
fn the_flag_table_in_the_docs_agrees_with_help() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/configuration.md");
    let markdown = std::fs::read_to_string(path).expect("docs/configuration.md");
    let documented = flags_of_the_docs(&markdown);
    let actual = flags_of_the_command_line();
    assert!(actual.len() >= 30, "{} flags found", actual.len());
    for (flag, row) in &actual {
        assert_eq!(
            documented.get(flag),
            Some(row),
            "docs/configuration.md: the row of {flag} must say environment {:?}, default {:?}",
            row.0,
            row.1
        );
    }
    let stale: Vec<_> = documented
        .keys()
        .filter(|f| !actual.contains_key(*f))
        .collect();
    assert!(
        stale.is_empty(),
        "documented flags the service lacks: {stale:?}"
    );
}

#[test]
fn export_and_import_take_the_store_flags_of_the_server() {
    let cli = Cli::parse_from([
        "x",
        "export",
        "--store",
        "dynamodb",
        "--table",
        "counts.v2",
        "--output",
        "/tmp/snap.jsonl",
    ]);
    match cli.command {
        Some(Command::Export(args)) => {
            assert_eq!(args.output, Some(PathBuf::from("/tmp/snap.jsonl")));
            let config = args.store.config();
            assert_eq!(config.store, StoreKind::Dynamodb);
            assert_eq!(config.dynamodb.table, "counts.v2");
            // Bulk calls get more time than a commit's.
            assert_eq!(config.dynamodb.attempt_timeout, Duration::from_secs(10));
            assert_eq!(config.ledger.commit_timeout, Duration::from_secs(60));
        }
        other => panic!("not export: {other:?}"),
    }
    let cli = Cli::parse_from(["x", "import", "--input", "-", "--merge", "--data-dir", "/d"]);
    match cli.command {
        Some(Command::Import(args)) => {
            assert!(args.merge);
            assert_eq!(args.input, PathBuf::from("-"));
            assert_eq!(args.store.embedded.data_dir, PathBuf::from("/d"));
            assert_eq!(args.store.store, StoreKind::Embedded);
        }
        other => panic!("not import: {other:?}"),
    }
    assert!(
        Cli::try_parse_from(["x", "import"]).is_err(),
        "--input is needed"
    );
}

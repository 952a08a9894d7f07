//! `lifeboat agent verify`: a Restore's `verify` spec run against a database, every check reported.
//!
//! What the CRM runbook's "verify restore" does by hand (count tables, look at critical tables), plus SQL
//! that must return true. Checks run in read-only sessions: verification must never change the data it
//! vouches for.

use crate::api::common::{CheckResult, VerifySpec};

use super::cli::{ChecksArgs, VerifyArgs};
use super::database::{Database, QueryError};
use super::error::AgentError;
use super::process::Redactor;
use super::result::AgentResult;

pub async fn run(
    args: &VerifyArgs,
    result: &mut AgentResult,
    redactor: &mut Redactor,
) -> Result<(), AgentError> {
    result.kind = Some(match args.target {
        super::cli::Engine::Postgres => "postgres".into(),
        super::cli::Engine::Mysql => "mysql".into(),
    });
    let spec = load_spec(&args.checks)?.ok_or_else(|| {
        AgentError::InvalidArguments("no checks given: pass --checks (JSON or YAML) or --checks-file".into())
    })?;
    let db = Database::from_args(args.target, &args.db, true, redactor)?;
    let results = run_checks(&db, &spec).await?;
    let failed = failure(&results);
    result.set_checks(results);
    match failed {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

/// The spec from --checks or --checks-file; YAML is accepted because JSON is a subset of it, so the
/// controller can pass the Restore's `verify` field as it stands.
pub fn load_spec(args: &ChecksArgs) -> Result<Option<VerifySpec>, AgentError> {
    let text = match (&args.checks, &args.checks_file) {
        (Some(_), Some(_)) => {
            return Err(AgentError::InvalidArguments(
                "give either --checks or --checks-file, not both".into(),
            ))
        }
        (Some(text), None) => text.clone(),
        (None, Some(path)) => std::fs::read_to_string(path).map_err(|source| AgentError::ReadFile {
            what: "the verification checks",
            path: path.display().to_string(),
            source,
        })?,
        (None, None) => return Ok(None),
    };
    let spec: VerifySpec = serde_norway::from_str(&text).map_err(|e| {
        AgentError::InvalidArguments(format!("verification checks are not a valid verify spec: {e}"))
    })?;
    if spec.min_tables.is_none() && spec.tables.is_empty() && spec.queries.is_empty() {
        return Ok(None);
    }
    Ok(Some(spec))
}

/// Runs every check. Only losing the server (authentication, connection, missing database) stops early:
/// then no check result would mean anything.
pub async fn run_checks(db: &Database, spec: &VerifySpec) -> Result<Vec<CheckResult>, AgentError> {
    let database = Some(db.database.as_str());
    let mut results = Vec::new();

    // Counting tables first also proves the connection before the other checks are attempted.
    let tables: Result<String, String> = match db.query(database, db.table_count_sql(), true).await {
        Ok(text) => Ok(text),
        Err(QueryError::Sql(error)) => Err(error),
        Err(QueryError::Fatal(error)) => return Err(error),
    };
    if let Some(min) = spec.min_tables {
        results.push(match tables {
            Ok(text) => match text.parse::<i64>() {
                Ok(count) => check(
                    "minTables",
                    count >= i64::from(min),
                    format!("{count} tables, at least {min} required"),
                ),
                Err(_) => check("minTables", false, format!("unexpected table count {text:?}")),
            },
            Err(error) => check("minTables", false, error),
        });
    }

    for table in &spec.tables {
        let name = format!("table:{}", table.name);
        let outcome = match db.query(database, &db.row_count_sql(&table.name), true).await {
            Ok(text) => match text.parse::<i64>() {
                Ok(rows) => check(
                    &name,
                    rows >= table.min_rows,
                    format!("{rows} rows, at least {} required", table.min_rows),
                ),
                Err(_) => check(&name, false, format!("unexpected row count {text:?}")),
            },
            Err(QueryError::Sql(error)) => check(&name, false, error),
            Err(QueryError::Fatal(error)) => return Err(error),
        };
        results.push(outcome);
    }

    for query in &spec.queries {
        let name = format!("query:{}", query.name);
        let outcome = match db.query(database, &query.sql, true).await {
            Ok(text) => match truthiness(&text) {
                Some(true) => check(&name, true, "returned true".into()),
                Some(false) => check(&name, false, format!("returned {:?}", first_value(&text))),
                None => check(
                    &name,
                    false,
                    format!("returned {:?}, not a boolean", first_value(&text)),
                ),
            },
            Err(QueryError::Sql(error)) => check(&name, false, error),
            Err(QueryError::Fatal(error)) => return Err(error),
        };
        results.push(outcome);
    }
    Ok(results)
}

pub fn failure(results: &[CheckResult]) -> Option<AgentError> {
    let failed: Vec<&str> = results
        .iter()
        .filter(|r| !r.passed)
        .map(|r| r.name.as_str())
        .collect();
    if failed.is_empty() {
        return None;
    }
    Some(AgentError::VerifyFailed {
        failed: failed.len(),
        total: results.len(),
        names: super::error::truncate(&failed.join(", "), 300),
    })
}

fn check(name: &str, passed: bool, message: String) -> CheckResult {
    CheckResult {
        name: name.to_string(),
        passed,
        message: Some(super::error::truncate(&message, 200)),
    }
}

fn first_value(text: &str) -> &str {
    text.lines()
        .next()
        .unwrap_or("")
        .split('\t')
        .next()
        .unwrap_or("")
        .trim()
}

/// PostgreSQL prints booleans as t/f, MySQL as 1/0; a count is true when it is not zero.
fn truthiness(text: &str) -> Option<bool> {
    let value = first_value(text).to_ascii_lowercase();
    match value.as_str() {
        "t" | "true" | "yes" | "on" => Some(true),
        "f" | "false" | "no" | "off" | "" => Some(false),
        other => other.parse::<f64>().ok().map(|n| n != 0.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_engines_booleans_are_understood() {
        assert_eq!(truthiness("t"), Some(true));
        assert_eq!(truthiness("1"), Some(true));
        assert_eq!(truthiness("0"), Some(false));
        assert_eq!(truthiness("f\n"), Some(false));
        assert_eq!(truthiness(""), Some(false));
        assert_eq!(truthiness("maybe"), None);
    }

    #[test]
    fn the_restore_verify_spec_is_accepted_as_json_or_yaml() {
        let json = ChecksArgs {
            checks: Some(r#"{"minTables": 2, "tables": [{"name": "users"}], "queries": [{"name": "q", "sql": "select true"}]}"#.into()),
            checks_file: None,
        };
        let spec = load_spec(&json).expect("valid").expect("non-empty");
        assert_eq!(spec.min_tables, Some(2));
        assert_eq!(spec.tables[0].min_rows, 1);
        let yaml = ChecksArgs {
            checks: Some("tables:\n- name: orders\n  minRows: 5\n".into()),
            checks_file: None,
        };
        assert_eq!(
            load_spec(&yaml).expect("valid").expect("non-empty").tables[0].min_rows,
            5
        );
        let bad = ChecksArgs {
            checks: Some("{minTables: [}".into()),
            checks_file: None,
        };
        assert!(load_spec(&bad).is_err());
    }

    #[test]
    fn every_failed_check_is_named() {
        let results = vec![
            check("a", true, String::new()),
            check("b", false, String::new()),
            check("c", false, String::new()),
        ];
        let error = failure(&results).expect("two failed");
        assert_eq!(error.to_string(), "2 of 3 verification checks failed: b, c");
    }
}

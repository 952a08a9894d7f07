//! `lifeboat agent` against a real PostgreSQL 15 and a real restic repository: backups restore row for
//! row, the DR runbook's manual path works on the agent's snapshots, and verification reports every check.

mod support;

use support::agent::*;

/// A small database with the shapes that break naive dumps: several schemas, bytea, jsonb, NULLs,
/// quotes and newlines in text, a foreign key, a view and an empty table.
fn create_shop(pg: &Postgres, database: &str) {
    pg.create_database(database);
    pg.psql(
        database,
        r#"
        CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL, email text UNIQUE,
            created timestamptz DEFAULT '2026-01-01 00:00:00+00', balance numeric(12,2), photo bytea, meta jsonb);
        INSERT INTO customers (name, email, balance, photo, meta)
            SELECT 'name ' || i, 'u' || i || '@example.com', i * 1.5, decode(md5(i::text), 'hex'),
                   jsonb_build_object('i', i, 'tags', jsonb_build_array('a', 'b'))
            FROM generate_series(1, 2000) i;
        CREATE TABLE orders (id bigserial PRIMARY KEY, customer_id int REFERENCES customers(id), total numeric, note text);
        INSERT INTO orders (customer_id, total, note)
            SELECT (i % 2000) + 1, i * 0.25,
                   CASE WHEN i % 3 = 0 THEN NULL ELSE 'note ''quoted'' ' || i || E'\nline two' END
            FROM generate_series(1, 5000) i;
        CREATE SCHEMA audit;
        CREATE TABLE audit.log (id int PRIMARY KEY, at timestamptz, what text);
        INSERT INTO audit.log SELECT i, '2026-01-01'::timestamptz + i * interval '1 minute', repeat('x', i % 50)
            FROM generate_series(1, 300) i;
        CREATE VIEW big_customers AS SELECT * FROM customers WHERE balance > 1000;
        CREATE TABLE empty_table (id int);
        "#,
    );
}

fn assert_same_tables(pg: &Postgres, original: &str, restored: &str) {
    let tables = pg.tables(original);
    assert_eq!(tables, pg.tables(restored), "same tables");
    assert!(tables.len() >= 4, "{tables:?}");
    for table in &tables {
        assert_eq!(
            pg.table_content(original, table),
            pg.table_content(restored, table),
            "rows of {table}"
        );
    }
    assert_eq!(
        pg.psql(original, "select count(*) from big_customers"),
        pg.psql(restored, "select count(*) from big_customers"),
        "the view came back"
    );
}

fn backup_args(pg: &Postgres, database: &str, repo: &Repo, extra: &[&str]) -> Vec<String> {
    let mut args = strings(&["--source", "postgres", "--repository", &repo.repository_arg()]);
    args.extend(pg.agent_args(database));
    args.extend(strings(extra));
    args
}

fn restore_args(pg: &Postgres, database: &str, repo: &Repo, extra: &[&str]) -> Vec<String> {
    let mut args = strings(&["--target", "postgres", "--repository", &repo.repository_arg()]);
    args.extend(pg.agent_args(database));
    args.extend(strings(extra));
    args
}

fn tags_of(snapshot: &serde_json::Value) -> Vec<String> {
    snapshot["tags"]
        .as_array()
        .map(|t| t.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

#[test]
fn a_custom_format_backup_restores_row_for_row_into_a_new_database() {
    let pg = postgres();
    let repo = Repo::new();
    create_shop(pg, "shop_custom");

    let backup = agent(
        "backup",
        &backup_args(
            pg,
            "shop_custom",
            &repo,
            &["--tag", "policy=shop", "--tag", "namespace=prod"],
        ),
        Some(PG_PASSWORD),
    );
    backup.assert_ok();
    let result = &backup.result;
    assert_eq!(result["version"], 1);
    assert_eq!(result["mode"], "backup");
    assert_eq!(result["kind"], "postgres");
    let sha = result["sha256"].as_str().expect("sha256").to_string();
    let size = result["sizeBytes"].as_u64().expect("size");
    assert_eq!(sha.len(), 64);

    // The snapshot carries what a later restore and a person need, and nothing marks it unfinished.
    let snapshots = repo.snapshots();
    assert_eq!(snapshots.len(), 1);
    assert_eq!(snapshots[0]["id"], result["snapshotId"]);
    assert_eq!(snapshots[0]["paths"][0], "/shop_custom.pgdump");
    let tags = tags_of(&snapshots[0]);
    for tag in [
        "policy=shop",
        "namespace=prod",
        "lifeboat-kind=postgres",
        "lifeboat-format=custom",
        "lifeboat-database=shop_custom",
    ] {
        assert!(tags.contains(&tag.to_string()), "{tag} in {tags:?}");
    }
    // The repository describes the dump without the cluster: size and sha256 on the snapshot itself,
    // written after the backup under the id the result reports (the rewritten snapshot is the only one).
    assert!(tags.contains(&format!("lifeboat-sha256={sha}")), "{tags:?}");
    assert!(tags.contains(&format!("lifeboat-size={size}")), "{tags:?}");
    assert_eq!(snapshots[0]["summary"]["total_bytes_processed"], size);
    assert!(!tags.iter().any(|t| t == "lifeboat-incomplete"));

    let checks = r#"{"minTables": 4, "tables": [{"name": "customers", "minRows": 2000}, {"name": "audit.log", "minRows": 1}],
                     "queries": [{"name": "orders-reference-customers", "sql": "select count(*) = 5000 from orders o join customers c on c.id = o.customer_id"}]}"#;
    let restore = agent(
        "restore",
        &restore_args(
            pg,
            "shop_custom_restored",
            &repo,
            &["--tag", "policy=shop", "--create-database", "--checks", checks],
        ),
        Some(PG_PASSWORD),
    );
    restore.assert_ok();
    assert_eq!(restore.result["snapshotId"], result["snapshotId"]);
    assert_eq!(restore.result["sha256"], sha.as_str());
    assert_eq!(restore.result["checksPassed"], 4, "{}", restore.result);
    assert_eq!(restore.result["checksFailed"], 0);
    assert_same_tables(pg, "shop_custom", "shop_custom_restored");
}

#[test]
fn a_plain_sql_backup_restores_with_psql_over_a_dropped_database() {
    let pg = postgres();
    let repo = Repo::new();
    create_shop(pg, "shop_plain");
    agent(
        "backup",
        &backup_args(pg, "shop_plain", &repo, &["--pg-format", "plain"]),
        Some(PG_PASSWORD),
    )
    .assert_ok();
    assert_eq!(repo.snapshots()[0]["paths"][0], "/shop_plain.sql");

    // The target has stale content that must not survive: --drop-database starts from empty.
    pg.create_database("shop_plain_restored");
    pg.psql(
        "shop_plain_restored",
        "CREATE TABLE customers (stale int); INSERT INTO customers VALUES (1)",
    );
    agent(
        "restore",
        &restore_args(pg, "shop_plain_restored", &repo, &["--drop-database"]),
        Some(PG_PASSWORD),
    )
    .assert_ok();
    assert_same_tables(pg, "shop_plain", "shop_plain_restored");
}

#[test]
fn a_snapshot_restores_with_plain_restic_dump_and_pg_restore_as_in_the_dr_runbook() {
    let pg = postgres();
    let repo = Repo::new();
    create_shop(pg, "shop_dr");
    agent(
        "backup",
        &backup_args(pg, "shop_dr", &repo, &["--tag", "policy=dr"]),
        Some(PG_PASSWORD),
    )
    .assert_ok();
    pg.create_database("shop_dr_manual");

    let script = format!(
        "set -o pipefail; {restic} snapshots --tag policy=dr >&2 && {restic} dump latest /shop_dr.pgdump | {pg_restore} --exit-on-error -h 127.0.0.1 -p {port} -U postgres -d shop_dr_manual",
        restic = restic_bin().display(),
        pg_restore = pg_bin("pg_restore").display(),
        port = pg.port,
    );
    let repo_path = repo.repository_arg();
    let cache = repo.dir.path().join("cache").display().to_string();
    let out = sh(
        &script,
        &[
            ("RESTIC_REPOSITORY", &repo_path),
            ("RESTIC_PASSWORD", RESTIC_PASSWORD),
            ("RESTIC_CACHE_DIR", &cache),
            ("PGPASSWORD", PG_PASSWORD),
        ],
    );
    assert!(
        out.status.success(),
        "manual restore: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_same_tables(pg, "shop_dr", "shop_dr_manual");
}

#[test]
fn a_snapshot_whose_content_does_not_match_the_expected_sha256_is_refused_before_anything_commits() {
    let pg = postgres();
    let repo = Repo::new();
    create_shop(pg, "shop_tamper");
    let backup = agent(
        "backup",
        &backup_args(pg, "shop_tamper", &repo, &[]),
        Some(PG_PASSWORD),
    );
    backup.assert_ok();
    let sha = backup.result["sha256"].as_str().expect("sha").to_string();

    // The sha256 the Backup's status recorded is passed back by the controller.
    pg.create_database("shop_tamper_restored");
    let wrong = "0".repeat(64);
    let restore = agent(
        "restore",
        &restore_args(pg, "shop_tamper_restored", &repo, &["--expect-sha256", &wrong]),
        Some(PG_PASSWORD),
    );
    restore.assert_failed("ChecksumMismatch");
    assert!(
        restore.message().contains("does not match") && restore.message().contains(&sha),
        "{}",
        restore.message()
    );
    // The loader was stopped before the end of its input: its transaction never committed.
    assert!(pg.tables("shop_tamper_restored").is_empty());

    agent(
        "restore",
        &restore_args(pg, "shop_tamper_restored", &repo, &["--expect-sha256", &sha]),
        Some(PG_PASSWORD),
    )
    .assert_ok();
    assert_same_tables(pg, "shop_tamper", "shop_tamper_restored");
}

/// A snapshot as earlier agents wrote it: `restic backup --stdin`, confirmed with size and sha256 tags.
fn old_style_snapshot(repo: &Repo, content: &[u8], size_tag: usize, sha_tag: &str, policy: &str) {
    use std::io::Write;
    let mut child = repo
        .restic_command(&[
            "backup",
            "--stdin",
            "--stdin-filename",
            "shop_old.pgdump",
            "--host",
            "lifeboat",
            "--tag",
            &format!("policy={policy}"),
            "--tag",
            "lifeboat-kind=postgres",
            "--tag",
            "lifeboat-format=custom",
            "--tag",
            &format!("lifeboat-size={size_tag}"),
            "--tag",
            &format!("lifeboat-sha256={sha_tag}"),
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("restic backup");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(content)
        .expect("write");
    assert!(child.wait().expect("restic").success());
}

#[test]
fn snapshots_of_earlier_agents_are_still_checked_against_their_tags() {
    let pg = postgres();
    let repo = Repo::new();
    create_shop(pg, "shop_old");
    let backup = agent(
        "backup",
        &backup_args(pg, "shop_old", &repo, &[]),
        Some(PG_PASSWORD),
    );
    backup.assert_ok();
    let sha = backup.result["sha256"].as_str().expect("sha").to_string();
    let dump = repo.restic(&["dump", "latest", "/shop_old.pgdump"]).stdout;
    assert_eq!(dump.len() as u64, backup.result["sizeBytes"].as_u64().unwrap());

    old_style_snapshot(&repo, &dump, dump.len(), &sha, "old-good");
    old_style_snapshot(&repo, &dump, dump.len(), &"0".repeat(64), "old-tampered");

    pg.create_database("shop_old_restored");
    let good = agent(
        "restore",
        &restore_args(pg, "shop_old_restored", &repo, &["--tag", "policy=old-good"]),
        Some(PG_PASSWORD),
    );
    good.assert_ok();
    assert_eq!(good.result["sha256"], sha.as_str());
    assert_same_tables(pg, "shop_old", "shop_old_restored");

    let tampered = agent(
        "restore",
        &restore_args(
            pg,
            "shop_old_tampered",
            &repo,
            &["--tag", "policy=old-tampered", "--create-database"],
        ),
        Some(PG_PASSWORD),
    );
    tampered.assert_failed("ChecksumMismatch");
    assert!(pg.tables("shop_old_tampered").is_empty());
}

#[test]
fn latest_skips_a_newer_unfinished_snapshot_and_restores_the_complete_one() {
    let pg = postgres();
    let repo = Repo::new();
    create_shop(pg, "shop_slow");
    let backup = agent(
        "backup",
        &backup_args(pg, "shop_slow", &repo, &["--tag", "policy=slow"]),
        Some(PG_PASSWORD),
    );
    backup.assert_ok();
    // What an earlier agent killed before confirming its backup left behind: newer, marked unfinished.
    let garbage = vec![b'x'; 4096];
    {
        use std::io::Write;
        let mut child = repo
            .restic_command(&[
                "backup",
                "--stdin",
                "--stdin-filename",
                "shop_slow.pgdump",
                "--tag",
                "policy=slow",
                "--tag",
                "lifeboat-kind=postgres",
                "--tag",
                "lifeboat-format=custom",
                "--tag",
                "lifeboat-incomplete",
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("restic backup");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(&garbage)
            .expect("write");
        assert!(child.wait().expect("restic").success());
    }
    assert_eq!(repo.snapshots().len(), 2);

    let restore = agent(
        "restore",
        &restore_args(
            pg,
            "shop_slow_restored",
            &repo,
            &["--tag", "policy=slow", "--create-database"],
        ),
        Some(PG_PASSWORD),
    );
    restore.assert_ok();
    assert_eq!(restore.result["snapshotId"], backup.result["snapshotId"]);
    assert_eq!(restore.result["sha256"], backup.result["sha256"]);
    assert!(restore.stderr.contains("not restorable"), "{}", restore.stderr);
    assert_same_tables(pg, "shop_slow", "shop_slow_restored");

    // What `kubectl lifeboat snapshots` shows: both, oldest first, the unfinished one marked so.
    let listing = agent(
        "snapshots",
        &strings(&["--repository", &repo.repository_arg(), "--tag", "policy=slow"]),
        None,
    );
    listing.assert_ok();
    let listed = lifeboat::agent::listing::find_listing(&listing.stdout)
        .expect("a listing line")
        .expect("a readable listing");
    let ids: Vec<(&str, bool)> = listed.iter().map(|s| (s.id.as_str(), s.complete)).collect();
    assert_eq!(ids.len(), 2, "{listed:?}");
    assert_eq!(ids[0], (backup.result["snapshotId"].as_str().unwrap(), true));
    assert!(!ids[1].1, "the unfinished snapshot is marked: {listed:?}");
    assert_eq!(listed[0].kind.as_deref(), Some("postgres"));
    assert!(listed[0].bytes.is_some_and(|b| b > 100_000), "{listed:?}");
}

#[test]
fn verification_reports_every_check_not_only_the_first_failure() {
    let pg = postgres();
    create_shop(pg, "shop_verify");
    let checks = r#"
minTables: 99
tables:
  - name: customers
    minRows: 2000
  - name: missing_table
queries:
  - name: has-orders
    sql: select count(*) > 0 from orders
  - name: no-negative-balance
    sql: select count(*) = 0 from customers where balance > 0
  - name: read-only
    sql: insert into empty_table values (1) returning true
"#;
    let mut args = strings(&["--target", "postgres", "--checks", checks]);
    args.extend(pg.agent_args("shop_verify"));
    let run = agent("verify", &args, Some(PG_PASSWORD));
    run.assert_failed("VerifyFailed");
    let checks = run.result["checks"].as_array().expect("checks");
    let passed: Vec<(&str, bool)> = checks
        .iter()
        .map(|c| (c["name"].as_str().unwrap_or(""), c["passed"] == true))
        .collect();
    assert_eq!(
        passed,
        vec![
            ("minTables", false),
            ("table:customers", true),
            ("table:missing_table", false),
            ("query:has-orders", true),
            ("query:no-negative-balance", false),
            ("query:read-only", false),
        ]
    );
    assert!(
        checks[5]["message"].as_str().unwrap_or("").contains("read-only"),
        "{}",
        checks[5]
    );
    assert_eq!(
        pg.psql("shop_verify", "select count(*) from empty_table"),
        "0",
        "verification wrote nothing"
    );
    assert!(run.message().contains("4 of 6"), "{}", run.message());
}

#[test]
fn globals_are_backed_up_with_pg_dumpall() {
    let pg = postgres();
    let repo = Repo::new();
    pg.psql(
        "postgres",
        "DO $$ BEGIN CREATE ROLE lifeboat_reader; EXCEPTION WHEN duplicate_object THEN NULL; END $$",
    );
    let mut args = strings(&[
        "--source",
        "postgres",
        "--repository",
        &repo.repository_arg(),
        "--pg-scope",
        "globals",
    ]);
    args.extend(pg.agent_args("postgres"));
    agent("backup", &args, Some(PG_PASSWORD)).assert_ok();
    let out = repo.restic(&["dump", "latest", "/globals.sql"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("CREATE ROLE lifeboat_reader"));
}

#[test]
fn a_restore_that_fails_changes_nothing_in_the_target() {
    let pg = postgres();
    let repo = Repo::new();
    create_shop(pg, "shop_atomic");
    agent(
        "backup",
        &backup_args(pg, "shop_atomic", &repo, &[]),
        Some(PG_PASSWORD),
    )
    .assert_ok();
    pg.create_database("shop_atomic_target");
    // An existing table with the same name makes pg_restore fail part-way through.
    pg.psql(
        "shop_atomic_target",
        "CREATE TABLE orders (keep int); INSERT INTO orders VALUES (42)",
    );

    let run = agent(
        "restore",
        &restore_args(pg, "shop_atomic_target", &repo, &[]),
        Some(PG_PASSWORD),
    );
    run.assert_failed("LoadFailed");
    assert!(run.message().contains("pg_restore"), "{}", run.message());
    assert!(
        run.message().contains("already exists"),
        "the first error is the cause: {}",
        run.message()
    );
    // One transaction: nothing of the half-restored dump is left behind.
    assert_eq!(pg.tables("shop_atomic_target"), vec!["public.orders".to_string()]);
    assert_eq!(pg.psql("shop_atomic_target", "select keep from orders"), "42");
}

#[test]
fn a_database_named_with_quotes_semicolons_commas_and_slashes_backs_up_and_restores_as_itself() {
    // Every name here is one argument or one quoted identifier: nothing is ever run as SQL or shell.
    let pg = postgres();
    let repo = Repo::new();
    let hostile = "shop\"; DROP TABLE guard; --, x/y";
    let quoted = |name: &str| format!("\"{}\"", name.replace('"', "\"\""));
    pg.create_database("guard_db");
    pg.psql(
        "guard_db",
        "CREATE TABLE guard (id int); INSERT INTO guard VALUES (1)",
    );
    pg.psql(
        "postgres",
        &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quoted(hostile)),
    );
    pg.psql("postgres", &format!("CREATE DATABASE {}", quoted(hostile)));
    pg.psql(
        hostile,
        "CREATE TABLE guard (id int); INSERT INTO guard SELECT generate_series(1, 7)",
    );

    let backup = agent(
        "backup",
        &backup_args(pg, hostile, &repo, &["--tag", "policy=odd"]),
        Some(PG_PASSWORD),
    );
    backup.assert_ok();
    let snapshots = repo.snapshots();
    assert_eq!(snapshots.len(), 1);
    let tags = tags_of(&snapshots[0]);
    assert!(
        tags.iter()
            .all(|t| !t.is_empty() && t.contains('=') || t == "lifeboat"),
        "no tag was split at the comma: {tags:?}"
    );

    let restored = "restored\"; DROP TABLE guard; --";
    pg.psql(
        "postgres",
        &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quoted(restored)),
    );
    agent(
        "restore",
        &restore_args(pg, restored, &repo, &["--tag", "policy=odd", "--create-database"]),
        Some(PG_PASSWORD),
    )
    .assert_ok();
    assert_eq!(pg.psql(restored, "SELECT count(*) FROM guard").trim(), "7");
    assert_eq!(
        pg.psql("guard_db", "SELECT count(*) FROM guard").trim(),
        "1",
        "nothing else was touched"
    );
}

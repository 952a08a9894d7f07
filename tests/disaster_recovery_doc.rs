//! docs/disaster-recovery.md is run, not just read: the agent backs up real PostgreSQL and MariaDB
//! databases and a directory into one shared repository, then every `sh` block of the document runs
//! literally with bash, given only the variables the document declares as its inputs, and what it
//! restores is compared row for row and file for file with the originals. No Lifeboat code is involved
//! after the backups, except in the block that shows the Lifeboat binary as the offline tool.

mod support;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::agent::*;

const DOC: &str = include_str!("../docs/disaster-recovery.md");

/// Runs the document's blocks the way a person would: bash with `-euo pipefail`, in a working
/// directory of their choice, with restic, the PostgreSQL 15 clients and `lifeboat` on PATH.
struct Runbook {
    blocks: BTreeMap<String, String>,
    ran: RefCell<BTreeSet<String>>,
    repository: String,
    cache: PathBuf,
}

impl Runbook {
    fn new(repo: &Repo) -> Runbook {
        Runbook {
            blocks: support::doc::sh_blocks(DOC),
            ran: RefCell::new(BTreeSet::new()),
            repository: repo.repository_arg(),
            cache: repo.dir.path().join("cache"),
        }
    }

    fn path() -> String {
        let mut dirs: Vec<PathBuf> = Vec::new();
        if let Some(dir) = restic_bin().parent().filter(|d| !d.as_os_str().is_empty()) {
            dirs.push(dir.to_path_buf());
        }
        dirs.push(pg_bin_dir());
        dirs.push(Path::new(agent_bin()).parent().expect("target dir").to_path_buf());
        let mut path = dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(":");
        if let Some(system) = std::env::var_os("PATH") {
            path = format!("{path}:{}", system.to_string_lossy());
        }
        path
    }

    /// The block whose title starts with `title`, run in `dir` with the inputs `env`.
    fn run(&self, title: &str, dir: &Path, env: &[(&str, &str)]) -> Output {
        let (full_title, script) = support::doc::block(&self.blocks, title);
        self.ran.borrow_mut().insert(full_title.clone());
        let mut inputs = vec![
            ("RESTIC_REPOSITORY", self.repository.as_str()),
            ("RESTIC_PASSWORD", RESTIC_PASSWORD),
        ];
        inputs.extend_from_slice(env);
        for (name, _) in &inputs {
            assert!(
                DOC.contains(&format!("`{name}`")),
                "{name} is set by the test but not declared as an input of the document"
            );
        }
        let mut command = Command::new("bash");
        command.args(["-euo", "pipefail", "-c", script]).current_dir(dir);
        // Nothing from the test's own environment may make a block work by accident.
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy().to_string();
            if name.starts_with("PG") || name.starts_with("MYSQL") || name.starts_with("RESTIC") {
                command.env_remove(&name);
            }
        }
        command
            .env("PATH", Self::path())
            // Not an input: keeps the test's restic cache out of $HOME.
            .env("RESTIC_CACHE_DIR", &self.cache)
            .envs(inputs.iter().copied());
        run(&mut command)
    }

    fn run_ok(&self, title: &str, dir: &Path, env: &[(&str, &str)]) -> String {
        let out = self.run(title, dir, env);
        assert!(
            out.status.success(),
            "block {title:?} failed\nstdout:\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

fn create_shop(pg: &Postgres, database: &str) {
    pg.create_database(database);
    pg.psql(
        database,
        r#"
        CREATE TABLE guests (id serial PRIMARY KEY, name text NOT NULL, note text, photo bytea, meta jsonb);
        INSERT INTO guests (name, note, photo, meta)
            SELECT 'guest ' || i, CASE WHEN i % 4 = 0 THEN NULL ELSE 'it''s "quoted"' || E'\n' || i END,
                   decode(md5(i::text), 'hex'), jsonb_build_object('i', i)
            FROM generate_series(1, 800) i;
        CREATE SCHEMA audit;
        CREATE TABLE audit.log (id int PRIMARY KEY, guest int REFERENCES guests(id), at timestamptz);
        INSERT INTO audit.log SELECT i, i, '2026-01-01'::timestamptz + i * interval '1 hour' FROM generate_series(1, 300) i;
        CREATE VIEW recent AS SELECT * FROM audit.log WHERE id > 200;
        "#,
    );
}

fn create_crm(my: &Mariadb, database: &str) {
    my.create_database(database);
    my.sql(
        Some(database),
        r#"
        CREATE TABLE users (id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(100) NOT NULL, note TEXT, avatar BLOB)
            ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
        INSERT INTO users (name, note, avatar)
            SELECT CONCAT('Žluťoučký kůň ', seq), IF(seq % 3 = 0, NULL, CONCAT('it''s\n', seq)), UNHEX(MD5(seq))
            FROM seq_1_to_700;
        CREATE TABLE deals (id INT PRIMARY KEY, user_id INT, amount BIGINT, FOREIGN KEY (user_id) REFERENCES users(id))
            ENGINE=InnoDB;
        INSERT INTO deals SELECT seq, seq, seq * 1000 FROM seq_1_to_200;
        "#,
    );
}

fn make_uploads(root: &Path) {
    std::fs::create_dir_all(root.join("2026/03")).expect("dirs");
    std::fs::write(
        root.join("2026/03/scan.bin"),
        (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect::<Vec<_>>(),
    )
    .expect("write");
    std::fs::write(root.join("2026/Žádost.txt"), "ahoj\n").expect("write");
    std::fs::write(root.join("private.key"), "key").expect("write");
    std::fs::set_permissions(root.join("private.key"), std::fs::Permissions::from_mode(0o600))
        .expect("chmod");
    std::os::unix::fs::symlink("2026/03/scan.bin", root.join("latest-scan")).expect("symlink");
}

fn assert_same_postgres(pg: &Postgres, original: &str, restored: &str) {
    let tables = pg.tables(original);
    assert_eq!(tables, ["audit.log", "public.guests"]);
    assert_eq!(pg.tables(restored), tables, "tables of {restored}");
    for table in &tables {
        assert_eq!(
            pg.table_content(original, table),
            pg.table_content(restored, table),
            "rows of {table} in {restored}"
        );
    }
    assert_eq!(
        pg.psql(restored, "select count(*) from recent"),
        "100",
        "the view came back"
    );
}

/// A backup by the agent, as a BackupPolicy's Job makes it (policy and namespace tags).
fn backup(kind: &str, policy: &str, args: Vec<String>, password: Option<&str>, repo: &Repo) -> String {
    let mut all = strings(&["--source", kind, "--repository", &repo.repository_arg()]);
    all.extend(args);
    all.extend(strings(&[
        "--tag",
        &format!("policy={policy}"),
        "--tag",
        "namespace=prod",
    ]));
    let run = agent("backup", &all, password);
    run.assert_ok();
    run.result["snapshotId"]
        .as_str()
        .expect("snapshot id")
        .to_string()
}

/// What a person reads off `restic snapshots`: the short id and the path.
fn listing_of(repo: &Repo, id: &str) -> (String, String) {
    let snapshot = repo
        .snapshots()
        .into_iter()
        .find(|s| s["id"] == id)
        .unwrap_or_else(|| panic!("snapshot {id} in the repository"));
    let short = snapshot["short_id"].as_str().expect("short_id").to_string();
    let path = snapshot["paths"][0].as_str().expect("path").to_string();
    (short, path)
}

fn workdir(parent: &Path, name: &str) -> PathBuf {
    let dir = parent.join(name);
    std::fs::create_dir_all(&dir).expect("workdir");
    dir
}

#[test]
fn every_command_of_the_disaster_recovery_runbook_restores_what_the_agent_backed_up() {
    let pg = postgres();
    let my = mariadb();
    let repo = Repo::new();
    let work = tempfile::tempdir().expect("tempdir");
    let port = pg.port.to_string();
    let my_port = my.port.to_string();

    // One repository shared by four policies: the setting where a bare `latest` goes wrong.
    create_shop(pg, "dr_shop");
    create_crm(my, "dr_crm");
    let uploads = work.path().join("uploads");
    make_uploads(&uploads);
    // Two of one policy: `Newest` must show only the second.
    let older = backup(
        "postgres",
        "dr-shop",
        pg.agent_args("dr_shop"),
        Some(PG_PASSWORD),
        &repo,
    );
    let custom = backup(
        "postgres",
        "dr-shop",
        pg.agent_args("dr_shop"),
        Some(PG_PASSWORD),
        &repo,
    );
    let mut plain_args = pg.agent_args("dr_shop");
    plain_args.extend(strings(&["--pg-format", "plain"]));
    let plain = backup("postgres", "dr-shop-sql", plain_args, Some(PG_PASSWORD), &repo);
    let crm = backup(
        "mysql",
        "dr-crm",
        my.agent_args("dr_crm"),
        Some(MY_PASSWORD),
        &repo,
    );
    let files = backup(
        "files",
        "dr-uploads",
        strings(&["--path", &uploads.display().to_string()]),
        None,
        &repo,
    );
    let book = Runbook::new(&repo);

    // 1. Find: the filtered listing shows this policy's snapshots and no other policy's; `Newest` only
    // the newest of them.
    let short = |id: &String| listing_of(&repo, id).0;
    let all_short: Vec<String> = [&older, &custom, &plain, &crm, &files]
        .into_iter()
        .map(short)
        .collect();
    for (ids, policy, kind) in [
        (vec![&older, &custom], "dr-shop", "postgres"),
        (vec![&plain], "dr-shop-sql", "postgres"),
        (vec![&crm], "dr-crm", "mysql"),
        (vec![&files], "dr-uploads", "files"),
    ] {
        let every: Vec<String> = ids.iter().copied().map(short).collect();
        let newest = short(ids.last().expect("one"));
        for (title, expected) in [("List", every), ("Newest", vec![newest])] {
            let listed = book.run_ok(title, work.path(), &[("POLICY", policy), ("KIND", kind)]);
            for other in &all_short {
                assert_eq!(
                    listed.contains(other.as_str()),
                    expected.contains(other),
                    "{title} of {policy}/{kind} lists {other}? listing:\n{listed}"
                );
            }
        }
    }

    // 2 and 3. PostgreSQL custom format: verified, then loaded with pg_restore.
    let (short, path) = listing_of(&repo, &custom);
    let dump_file = path.trim_start_matches('/');
    assert_eq!(dump_file, "dr_shop.pgdump");
    let dir = workdir(work.path(), "custom");
    let verified = book.run_ok("Verify", &dir, &[("SNAPSHOT", &short), ("DUMP_FILE", dump_file)]);
    assert!(verified.contains(&format!("{dump_file}: OK")), "{verified}");
    pg.psql("postgres", "DROP DATABASE IF EXISTS dr_shop_custom WITH (FORCE)");
    let pg_env = |database: &'static str| {
        vec![
            ("PGHOST", "127.0.0.1"),
            ("PGPORT", port.as_str()),
            ("PGUSER", "postgres"),
            ("PGPASSWORD", PG_PASSWORD),
            ("PGDATABASE", database),
        ]
    };
    let mut env = pg_env("dr_shop_custom");
    env.push(("DUMP_FILE", dump_file));
    book.run_ok("Restore PostgreSQL custom", &dir, &env);
    assert_same_postgres(pg, "dr_shop", "dr_shop_custom");

    // The Lifeboat binary as the offline tool: same snapshot, streamed and checked.
    pg.psql(
        "postgres",
        "DROP DATABASE IF EXISTS dr_shop_lifeboat WITH (FORCE)",
    );
    let mut env = pg_env("dr_shop_lifeboat");
    env.push(("SNAPSHOT", &short));
    book.run_ok("Lifeboat agent restore", &dir, &env);
    assert_same_postgres(pg, "dr_shop", "dr_shop_lifeboat");
    let result: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("lifeboat-restore.json")).expect("result"))
            .expect("result JSON");
    assert_eq!(result["ok"], true, "{result}");
    assert_eq!(result["snapshotId"], custom.as_str());

    // PostgreSQL plain SQL, with psql.
    let (short, path) = listing_of(&repo, &plain);
    let dump_file = path.trim_start_matches('/');
    assert_eq!(dump_file, "dr_shop.sql");
    let dir = workdir(work.path(), "plain");
    book.run_ok("Verify", &dir, &[("SNAPSHOT", &short), ("DUMP_FILE", dump_file)]);
    pg.psql("postgres", "DROP DATABASE IF EXISTS dr_shop_plain WITH (FORCE)");
    let mut env = pg_env("dr_shop_plain");
    env.push(("DUMP_FILE", dump_file));
    book.run_ok("Restore PostgreSQL plain", &dir, &env);
    assert_same_postgres(pg, "dr_shop", "dr_shop_plain");

    // MariaDB, with the mariadb client.
    let (short, path) = listing_of(&repo, &crm);
    let dump_file = path.trim_start_matches('/');
    let dir = workdir(work.path(), "crm");
    book.run_ok("Verify", &dir, &[("SNAPSHOT", &short), ("DUMP_FILE", dump_file)]);
    my.sql(None, "DROP DATABASE IF EXISTS dr_crm_restored");
    book.run_ok(
        "Restore MariaDB",
        &dir,
        &[
            ("MYSQL_HOST", "127.0.0.1"),
            ("MYSQL_TCP_PORT", &my_port),
            ("MYSQL_USER", MY_USER),
            ("MYSQL_PWD", MY_PASSWORD),
            ("MYSQL_DATABASE", "dr_crm_restored"),
            ("DUMP_FILE", dump_file),
        ],
    );
    let tables = my.tables("dr_crm");
    assert_eq!(tables, ["deals", "users"]);
    assert_eq!(my.tables("dr_crm_restored"), tables);
    for table in &tables {
        assert_eq!(
            my.table_content("dr_crm", table),
            my.table_content("dr_crm_restored", table),
            "rows of {table}"
        );
    }

    // Files, with restic restore.
    let (short, path) = listing_of(&repo, &files);
    assert_eq!(path, uploads.display().to_string());
    let restored = work.path().join("restored-uploads");
    book.run_ok(
        "Restore files",
        work.path(),
        &[
            ("SNAPSHOT", &short),
            ("BACKED_UP_PATH", &path),
            ("RESTORE_DIR", &restored.display().to_string()),
        ],
    );
    assert_eq!(support::files::tree(&restored), support::files::tree(&uploads));

    let untested: Vec<&String> = book
        .blocks
        .keys()
        .filter(|title| !book.ran.borrow().contains(*title))
        .collect();
    assert!(
        untested.is_empty(),
        "sh blocks of the document no test ran: {untested:?}"
    );
}

#[test]
fn the_runbooks_verification_refuses_a_dump_whose_stored_sha256_does_not_match() {
    let pg = postgres();
    let repo = Repo::new();
    pg.create_database("dr_small");
    pg.psql(
        "dr_small",
        "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 50);",
    );
    let id = backup(
        "postgres",
        "dr-small",
        pg.agent_args("dr_small"),
        Some(PG_PASSWORD),
        &repo,
    );
    let snapshot = repo
        .snapshots()
        .into_iter()
        .find(|s| s["id"] == id.as_str())
        .expect("snapshot");
    let stored = snapshot["tags"]
        .as_array()
        .expect("tags")
        .iter()
        .filter_map(|t| t.as_str())
        .find(|t| t.starts_with("lifeboat-sha256="))
        .expect("the backup stored its sha256 on the snapshot")
        .to_string();

    // The stored digest no longer matches the content (as a damaged or swapped dump would not).
    let wrong = format!("lifeboat-sha256={}", "e".repeat(64));
    let retag = repo.restic(&["tag", "--remove", &stored, "--add", &wrong, &id]);
    assert!(
        retag.status.success(),
        "{}",
        String::from_utf8_lossy(&retag.stderr)
    );
    let tampered = repo.snapshots()[0]["short_id"].as_str().expect("id").to_string();

    let book = Runbook::new(&repo);
    let dir = tempfile::tempdir().expect("tempdir");
    let out = book.run(
        "Verify",
        dir.path(),
        &[("SNAPSHOT", &tampered), ("DUMP_FILE", "dr_small.pgdump")],
    );
    assert!(!out.status.success(), "the runbook's verification must fail");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("dr_small.pgdump: FAILED"), "{said}");
}

//! `lifeboat agent` against a real MariaDB 10.11: the CRM runbook's dump, restore and verify-restore,
//! and the failures a person must be told apart.

mod support;

use support::agent::*;

fn create_crm(my: &Mariadb, database: &str) {
    my.create_database(database);
    my.sql(
        Some(database),
        r#"
        CREATE TABLE users (id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(100) NOT NULL, email VARCHAR(200),
            created DATETIME, score DECIMAL(10,2), avatar BLOB) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
        CREATE TABLE contacts (id INT PRIMARY KEY, user_id INT, note TEXT, FOREIGN KEY (user_id) REFERENCES users(id)) ENGINE=InnoDB;
        CREATE TABLE opportunities (id INT PRIMARY KEY, amount BIGINT, stage ENUM('new','won','lost')) ENGINE=InnoDB;
        CREATE TABLE empty_table (id INT) ENGINE=InnoDB;
        INSERT INTO users (name, email, created, score, avatar)
            SELECT CONCAT('Žluťoučký kůň ', seq, ' 🐎'), CONCAT('u', seq, '@example.com'),
                   '2026-01-01 00:00:00' + INTERVAL seq MINUTE, seq / 7, UNHEX(MD5(seq))
            FROM seq_1_to_1500;
        INSERT INTO contacts SELECT seq, (seq % 1500) + 1, IF(seq % 4 = 0, NULL, CONCAT('it''s "quoted"\n', seq)) FROM seq_1_to_3000;
        INSERT INTO opportunities SELECT seq, seq * 1000, ELT(1 + seq % 3, 'new', 'won', 'lost') FROM seq_1_to_500;
        CREATE TRIGGER users_lower BEFORE INSERT ON users FOR EACH ROW SET NEW.email = LOWER(NEW.email);
        CREATE PROCEDURE count_users() SELECT COUNT(*) FROM users;
        "#,
    );
}

fn backup_args(my: &Mariadb, database: &str, repo: &Repo, extra: &[&str]) -> Vec<String> {
    let mut args = strings(&["--source", "mysql", "--repository", &repo.repository_arg()]);
    args.extend(my.agent_args(database));
    args.extend(strings(extra));
    args
}

fn restore_args(my: &Mariadb, database: &str, repo: &Repo, extra: &[&str]) -> Vec<String> {
    let mut args = strings(&["--target", "mysql", "--repository", &repo.repository_arg()]);
    args.extend(my.agent_args(database));
    args.extend(strings(extra));
    args
}

#[test]
fn a_mariadb_backup_restores_row_for_row_into_a_verify_database() {
    let my = mariadb();
    let repo = Repo::new();
    create_crm(my, "crm");
    let backup = agent(
        "backup",
        &backup_args(my, "crm", &repo, &["--tag", "policy=crm-db"]),
        Some(MY_PASSWORD),
    );
    backup.assert_ok();
    assert_eq!(backup.result["kind"], "mysql");
    let snapshots = repo.snapshots();
    assert_eq!(snapshots[0]["paths"][0], "/crm.sql");
    // Size and sha256 are stored with the snapshot, under the id the result reports.
    assert_eq!(snapshots.len(), 1);
    assert_eq!(snapshots[0]["id"], backup.result["snapshotId"]);
    let tags = snapshots[0]["tags"].to_string();
    for tag in [
        format!(
            "lifeboat-sha256={}",
            backup.result["sha256"].as_str().expect("sha256")
        ),
        format!("lifeboat-size={}", backup.result["sizeBytes"]),
    ] {
        assert!(tags.contains(&tag), "{tag} in {tags}");
    }

    // The CRM runbook restores into a `verify_` database and counts tables.
    let checks = r#"{"minTables": 4, "tables": [{"name": "users", "minRows": 1500}, {"name": "contacts", "minRows": 3000}],
                     "queries": [{"name": "won-deals", "sql": "select count(*) > 0 from opportunities where stage = 'won'"}]}"#;
    let restore = agent(
        "restore",
        &restore_args(my, "verify_crm", &repo, &["--drop-database", "--checks", checks]),
        Some(MY_PASSWORD),
    );
    restore.assert_ok();
    assert_eq!(restore.result["checksPassed"], 4, "{}", restore.result);
    assert_eq!(restore.result["sha256"], backup.result["sha256"]);

    let tables = my.tables("crm");
    assert_eq!(tables, my.tables("verify_crm"));
    assert_eq!(tables.len(), 4);
    for table in &tables {
        assert_eq!(
            my.table_content("crm", table),
            my.table_content("verify_crm", table),
            "rows of {table}"
        );
    }
    assert_eq!(
        my.sql(
            Some("verify_crm"),
            "SELECT COUNT(*) FROM information_schema.triggers WHERE trigger_schema = 'verify_crm'"
        ),
        "1"
    );
    assert_eq!(
        my.sql(
            Some("verify_crm"),
            "SELECT COUNT(*) FROM information_schema.routines WHERE routine_schema = 'verify_crm'"
        ),
        "1"
    );
}

#[test]
fn a_wrong_mariadb_password_is_named_and_leaves_no_snapshot() {
    let my = mariadb();
    let repo = Repo::new();
    create_crm(my, "crm_auth");
    let run = agent(
        "backup",
        &backup_args(my, "crm_auth", &repo, &[]),
        Some("not-the-password"),
    );
    run.assert_failed("DatabaseAuthFailed");
    assert!(
        run.message()
            .contains("rejected the password for user \"lifeboat\""),
        "{}",
        run.message()
    );
    assert_no_snapshot(&repo);
}

#[test]
fn a_missing_mariadb_database_is_named() {
    let my = mariadb();
    let repo = Repo::new();
    let run = agent(
        "backup",
        &backup_args(my, "no_such_db", &repo, &[]),
        Some(MY_PASSWORD),
    );
    run.assert_failed("DatabaseMissing");
    assert!(
        run.message().contains("\"no_such_db\" does not exist"),
        "{}",
        run.message()
    );
    assert_no_snapshot(&repo);
}

#[test]
fn an_unreachable_mariadb_is_named() {
    let repo = Repo::new();
    let port = free_port().to_string();
    let mut args = strings(&["--source", "mysql", "--repository", &repo.repository_arg()]);
    args.extend(strings(&[
        "--host",
        "127.0.0.1",
        "--port",
        &port,
        "--user",
        "lifeboat",
        "--database",
        "crm",
    ]));
    let run = agent("backup", &args, Some(MY_PASSWORD));
    run.assert_failed("DatabaseUnreachable");
    assert!(
        run.message().contains(&format!("127.0.0.1:{port}")),
        "{}",
        run.message()
    );
    assert_no_snapshot(&repo);
}

#[test]
fn a_failed_mariadb_restore_is_reported_with_the_first_error() {
    let my = mariadb();
    let repo = Repo::new();
    create_crm(my, "crm_conflict");
    agent(
        "backup",
        &backup_args(my, "crm_conflict", &repo, &[]),
        Some(MY_PASSWORD),
    )
    .assert_ok();
    // Without --create-database a missing target is an error a person can act on.
    let run = agent(
        "restore",
        &restore_args(my, "crm_conflict_missing", &repo, &[]),
        Some(MY_PASSWORD),
    );
    run.assert_failed("DatabaseMissing");
}

/// Listens on 127.0.0.1:`port` at once but, until `after` has passed, closes every connection before
/// the handshake (what a client sees from a MariaDB that listens while its init file still runs: "Lost
/// connection to server at 'handshake: reading initial communication packet'"); then forwards to the
/// test MariaDB.
fn late_proxy_to_mariadb(port: u16, after: std::time::Duration) {
    use std::net::{TcpListener, TcpStream};
    let target = mariadb().port;
    let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind the proxy port");
    let started = std::time::Instant::now();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            if started.elapsed() < after {
                drop(client);
                continue;
            }
            let server = TcpStream::connect(("127.0.0.1", target)).expect("reach MariaDB");
            for (mut from, mut to) in [
                (client.try_clone().unwrap(), server.try_clone().unwrap()),
                (server, client),
            ] {
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut from, &mut to);
                    let _ = to.shutdown(std::net::Shutdown::Write);
                });
            }
        }
    });
}

#[test]
fn a_restore_told_to_wait_reaches_a_server_that_comes_up_late() {
    let my = mariadb();
    let repo = Repo::new();
    create_crm(my, "crm_late");
    agent(
        "backup",
        &backup_args(my, "crm_late", &repo, &[]),
        Some(MY_PASSWORD),
    )
    .assert_ok();

    let port = free_port();
    late_proxy_to_mariadb(port, std::time::Duration::from_secs(3));
    let mut args = strings(&["--target", "mysql", "--repository", &repo.repository_arg()]);
    args.extend(strings(&["--host", "127.0.0.1", "--port", &port.to_string()]));
    args.extend(strings(&["--user", MY_USER, "--database", "crm_late_copy"]));
    args.extend(strings(&["--drop-database", "--wait-for-database", "60"]));
    let restore = agent("restore", &args, Some(MY_PASSWORD));
    restore.assert_ok();
    assert!(
        restore.stderr.contains("Lost connection") && restore.stderr.contains("retrying for up to"),
        "{}",
        restore.stderr
    );
    assert_eq!(
        my.table_content("crm_late", "users"),
        my.table_content("crm_late_copy", "users")
    );
}

#[test]
fn a_restore_stops_waiting_for_a_server_that_never_comes_up() {
    let repo = Repo::new();
    let port = free_port().to_string();
    let mut args = strings(&["--target", "mysql", "--repository", &repo.repository_arg()]);
    args.extend(strings(&["--host", "127.0.0.1", "--port", &port]));
    args.extend(strings(&[
        "--user",
        MY_USER,
        "--database",
        "crm",
        "--wait-for-database",
        "3",
    ]));
    let started = std::time::Instant::now();
    let run = agent("restore", &args, Some(MY_PASSWORD));
    run.assert_failed("DatabaseUnreachable");
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(2),
        "gave up after {:?}",
        started.elapsed()
    );
    assert!(
        run.message().contains(&format!("127.0.0.1:{port}")),
        "{}",
        run.message()
    );
}

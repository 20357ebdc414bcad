//! Schema versions of the SQLite state file.
//!
//! The version lives in `PRAGMA user_version`; `PRAGMA application_id` marks the file as
//! cutover's so that a foreign SQLite file given by mistake is refused rather than "migrated".
//! [`MIGRATIONS`] is append-only: migration *n* (1-based) brings a file from version *n − 1*
//! to *n*. Never edit a migration that was released — state files in the field were built by
//! it — add a new one instead.

use std::path::Path;

use rusqlite::{Connection, TransactionBehavior};

use super::{Result, StateError};

/// `PRAGMA application_id` of cutover state files: "cutv" in ASCII.
pub const APPLICATION_ID: i32 = 0x6375_7476;

/// Timestamps are Unix milliseconds (INTEGER) so that ordering and arithmetic work in SQL and
/// no time zone is ever involved. Tables are STRICT: a wrong type is an error, not a silent
/// conversion.
pub(crate) const MIGRATIONS: &[&str] = &[
    // 1: initial schema.
    r#"
    CREATE TABLE steps (
        id          TEXT PRIMARY KEY NOT NULL,
        status      TEXT NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'running', 'done', 'failed', 'waiting')),
        config_hash TEXT,
        attempts    INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
        started_at  INTEGER,
        finished_at INTEGER,
        items       INTEGER NOT NULL DEFAULT 0 CHECK (items >= 0),
        bytes       INTEGER NOT NULL DEFAULT 0 CHECK (bytes >= 0),
        skipped     INTEGER NOT NULL DEFAULT 0 CHECK (skipped >= 0),
        last_error  TEXT,
        approved_by TEXT,
        approved_at INTEGER,
        updated_at  INTEGER NOT NULL
    ) STRICT;

    CREATE TABLE checkpoints (
        step_id    TEXT NOT NULL REFERENCES steps (id) ON DELETE CASCADE,
        key        TEXT NOT NULL,
        value      BLOB NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (step_id, key)
    ) STRICT, WITHOUT ROWID;

    -- At most one row: the current apply lock.
    CREATE TABLE lock (
        singleton     INTEGER PRIMARY KEY CHECK (singleton = 1),
        run_id        TEXT NOT NULL,
        pid           INTEGER NOT NULL,
        host          TEXT NOT NULL,
        boot_id       TEXT,
        process_start INTEGER,
        acquired_at   INTEGER NOT NULL
    ) STRICT;

    CREATE TABLE runs (
        run_id      TEXT PRIMARY KEY NOT NULL,
        pid         INTEGER NOT NULL,
        host        TEXT NOT NULL,
        started_at  INTEGER NOT NULL,
        finished_at INTEGER,
        outcome     TEXT CHECK (outcome IN ('succeeded', 'failed', 'interrupted'))
    ) STRICT;
    CREATE INDEX runs_by_start ON runs (started_at);
    "#,
    // 2: `skipped` split into `present` (the target already had it) and `left_behind` (not
    // copied on purpose). A copy step's old `skipped` mixed both; its left-behind messages
    // each have a `skipped:` record among its checkpoints, so those are counted as left
    // behind and the rest as present. Autocomplete's were unresolved entries (left behind),
    // a user step's an existing mailbox (present).
    r#"
    ALTER TABLE steps ADD COLUMN present INTEGER NOT NULL DEFAULT 0 CHECK (present >= 0);
    ALTER TABLE steps ADD COLUMN left_behind INTEGER NOT NULL DEFAULT 0
        CHECK (left_behind >= 0);
    UPDATE steps SET left_behind = min(skipped,
        (SELECT count(*) FROM checkpoints c
          WHERE c.step_id = steps.id AND substr(c.key, 1, 8) = 'skipped:'))
     WHERE id GLOB 'copy.*' OR id GLOB 'delta.*';
    UPDATE steps SET left_behind = skipped WHERE id GLOB 'autocomplete.*';
    UPDATE steps SET present = skipped - left_behind;
    ALTER TABLE steps DROP COLUMN skipped;
    "#,
];

/// The schema version this binary writes and understands.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// What an unopened file looks like, read without changing it.
pub(crate) struct Header {
    pub application_id: i32,
    pub user_version: i64,
    pub objects: i64,
}

/// One statement, so one read transaction: read as three, another process's migration
/// committing in between would show objects without the marker — a cutover file taken for a
/// foreign one.
pub(crate) fn read_header(conn: &Connection) -> rusqlite::Result<Header> {
    conn.query_row(
        "SELECT (SELECT application_id FROM pragma_application_id), \
                (SELECT user_version FROM pragma_user_version), \
                (SELECT count(*) FROM sqlite_schema)",
        [],
        |r| {
            Ok(Header {
                application_id: r.get(0)?,
                user_version: r.get(1)?,
                objects: r.get(2)?,
            })
        },
    )
}

/// Refuses files that are not cutover's, or are from a newer cutover, before anything is
/// written to them.
pub(crate) fn check_header(path: &Path, header: &Header, known: i64) -> Result<()> {
    if header.application_id != 0 && header.application_id != APPLICATION_ID {
        return Err(StateError::Foreign {
            path: path.to_owned(),
            reason: format!(
                "it is an SQLite database of another application (application_id {:#x})",
                header.application_id
            ),
        });
    }
    if header.application_id == 0 && (header.objects > 0 || header.user_version != 0) {
        return Err(StateError::Foreign {
            path: path.to_owned(),
            reason: "it is an SQLite database with other content and no cutover marker".into(),
        });
    }
    if header.user_version > known {
        return Err(StateError::TooNew {
            path: path.to_owned(),
            found: header.user_version,
            supported: known,
        });
    }
    if header.user_version < 0 {
        return Err(StateError::Corrupt {
            path: path.to_owned(),
            detail: format!("negative schema version {}", header.user_version),
        });
    }
    Ok(())
}

/// Brings the file up to the latest schema, all pending migrations in one transaction: a
/// crash or an error midway leaves the file at its old version, untouched.
pub(crate) fn migrate(conn: &mut Connection, path: &Path) -> Result<()> {
    migrate_with(conn, path, MIGRATIONS)
}

pub(crate) fn migrate_with(conn: &mut Connection, path: &Path, migrations: &[&str]) -> Result<()> {
    let known = migrations.len() as i64;
    let sqlite = |op| {
        let path = path.to_owned();
        move |source| super::sqlite::classify(&path, op, source)
    };
    // IMMEDIATE: take the write lock before reading the version, so two processes opening a
    // fresh file at once cannot both run migration 1.
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sqlite("begin migration"))?;
    let header = read_header(&tx).map_err(sqlite("read schema version"))?;
    check_header(path, &header, known)?;
    if header.user_version == known {
        return Ok(());
    }
    for (index, sql) in migrations
        .iter()
        .enumerate()
        .skip(header.user_version as usize)
    {
        let version = index as i64 + 1;
        tx.execute_batch(sql)
            .map_err(|source| StateError::Migration {
                path: path.to_owned(),
                version,
                source,
            })?;
    }
    // Pragmas cannot take bound parameters; both values are integers we produced.
    tx.execute_batch(&format!(
        "PRAGMA user_version = {known}; PRAGMA application_id = {APPLICATION_ID};"
    ))
    .map_err(sqlite("set schema version"))?;
    tx.commit().map_err(sqlite("commit migration"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(conn: &Connection) -> i64 {
        conn.query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap()
    }

    fn has_table(conn: &Connection, name: &str) -> bool {
        conn.query_row(
            "SELECT count(*) FROM sqlite_schema WHERE name = ?1",
            [name],
            |r| r.get::<_, i64>(0),
        )
        .unwrap()
            == 1
    }

    #[test]
    fn an_older_file_gets_only_the_missing_migrations() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let mut conn = Connection::open(&path).unwrap();
        let v1 = ["CREATE TABLE a (x INTEGER) STRICT;"];
        migrate_with(&mut conn, &path, &v1).unwrap();
        conn.execute("INSERT INTO a VALUES (7)", []).unwrap();
        assert_eq!(version(&conn), 1);

        // Migration 1 would fail if run again ("table a already exists").
        let v2 = [
            v1[0],
            "ALTER TABLE a ADD COLUMN y TEXT; CREATE TABLE b (z TEXT) STRICT;",
        ];
        migrate_with(&mut conn, &path, &v2).unwrap();
        assert_eq!(version(&conn), 2);
        assert!(has_table(&conn, "b"));
        let x: i64 = conn.query_row("SELECT x FROM a", [], |r| r.get(0)).unwrap();
        assert_eq!(x, 7);

        migrate_with(&mut conn, &path, &v2).unwrap();
        assert_eq!(version(&conn), 2);
    }

    #[test]
    fn a_failing_migration_leaves_the_file_at_its_old_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let mut conn = Connection::open(&path).unwrap();
        let v1 = ["CREATE TABLE a (x INTEGER) STRICT;"];
        migrate_with(&mut conn, &path, &v1).unwrap();

        let broken = [
            v1[0],
            "CREATE TABLE b (z TEXT) STRICT;",
            "CREATE TABLE c (z TEXT) STRICT; THIS IS NOT SQL;",
        ];
        let err = migrate_with(&mut conn, &path, &broken).unwrap_err();
        assert!(
            matches!(err, StateError::Migration { version: 3, .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("s.db"), "{err}");
        assert_eq!(version(&conn), 1);
        assert!(
            !has_table(&conn, "b"),
            "migration 2 must be rolled back too"
        );
        assert!(!has_table(&conn, "c"));
    }

    #[test]
    fn the_real_migrations_apply_to_an_empty_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let mut conn = Connection::open(&path).unwrap();
        migrate(&mut conn, &path).unwrap();
        assert_eq!(version(&conn), SCHEMA_VERSION);
        let app: i32 = conn
            .query_row("PRAGMA application_id", [], |r| r.get(0))
            .unwrap();
        assert_eq!(app, APPLICATION_ID);
        for table in ["steps", "checkpoints", "lock", "runs"] {
            assert!(has_table(&conn, table), "{table}");
        }
    }

    /// A version-1 file's `skipped` splits into `present` and `left_behind`: a copy step's
    /// left-behind messages are its `skipped:` records, the rest were already at the target.
    #[test]
    fn version_1_skipped_splits_into_present_and_left_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let mut conn = Connection::open(&path).unwrap();
        migrate_with(&mut conn, &path, &MIGRATIONS[..1]).unwrap();
        conn.execute_batch(
            "INSERT INTO steps (id, items, skipped, updated_at) VALUES
                ('copy.a.old', 10, 7, 0), ('user.a', 0, 1, 0), ('autocomplete.a', 5, 2, 0);
             INSERT INTO checkpoints (step_id, key, value, updated_at) VALUES
                ('copy.a.old', 'skipped:INBOX:4', x'7b7d', 0),
                ('copy.a.old', 'skipped:INBOX:9', x'7b7d', 0),
                ('copy.a.old', 'imap:INBOX', x'7b7d', 0);",
        )
        .unwrap();
        migrate(&mut conn, &path).unwrap();
        let row = |id: &str| -> (i64, i64, i64) {
            conn.query_row(
                "SELECT items, present, left_behind FROM steps WHERE id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap()
        };
        assert_eq!(row("copy.a.old"), (10, 5, 2));
        assert_eq!(row("user.a"), (0, 1, 0));
        assert_eq!(row("autocomplete.a"), (5, 0, 2));
    }
}

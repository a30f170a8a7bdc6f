//! The job database: one SQLite file (`STATE/esark.db`, WAL, so a
//! `kill -9` loses no committed change) with a row per job. A job is stored
//! before it runs and every status change goes through
//! [`Db::transition`], which applies [`Status::can_become`] in the `UPDATE`
//! itself: two requests racing (a cancel and the job finishing) cannot
//! both win.
//!
//! Calls are short (one statement on a small table) and made under a
//! mutex from async code; nothing holds the lock across an await.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension, Row};
use serde_json::{json, Value};

use super::progress::Progress;
use super::status::{Kind, Status};

/// Why the database failed.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("job database {}: {source}", path.display())]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("cannot create the state folder {}: {source}", path.display())]
    Folder {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("job database: {0}")]
    Sql(#[from] rusqlite::Error),
}

/// A job as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRecord {
    pub id: String,
    pub kind: Kind,
    pub status: Status,
    pub cluster: String,
    pub target_cluster: Option<String>,
    pub archive: Option<String>,
    /// The request's options, as given (they hold no secret: see
    /// [`super::options::FORBIDDEN`]).
    pub options: Value,
    pub created_by: String,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub progress: Progress,
    pub error: Option<String>,
    pub report: Option<Value>,
}

impl JobRecord {
    /// The job as the API shows it.
    pub fn to_json(&self) -> Value {
        let mut value = json!({
            "id": self.id,
            "kind": self.kind,
            "status": self.status,
            "cluster": self.cluster,
            "archive": self.archive,
            "options": self.options,
            "created_by": self.created_by,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "progress": self.progress,
            "error": self.error.as_ref().map(|m| json!({ "message": m })),
            "report": self.report,
        });
        if let Some(target) = &self.target_cluster {
            value["target_cluster"] = json!(target);
        }
        value
    }
}

/// A job to store.
pub struct NewJob {
    pub kind: Kind,
    pub cluster: String,
    pub target_cluster: Option<String>,
    pub archive: Option<String>,
    pub options: Value,
    pub created_by: String,
    pub idempotency_key: Option<String>,
}

/// The database.
pub struct Db {
    conn: Mutex<Connection>,
}

/// The current time as the API writes it.
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

const COLUMNS: &str = "id, kind, status, cluster, target_cluster, archive, options, created_by, \
     created_at, started_at, finished_at, progress, error, report";

impl Db {
    /// Opens (creating) the database in `state`, a folder only its owner
    /// may read: it holds job logs and rejected documents.
    pub fn open(state: &Path) -> Result<Db, DbError> {
        create_private_dir(&state.join("jobs")).map_err(|source| DbError::Folder {
            path: state.to_path_buf(),
            source,
        })?;
        let path = state.join("esark.db");
        let open = |source| DbError::Open {
            path: path.clone(),
            source,
        };
        let conn = Connection::open(&path).map_err(open)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA busy_timeout = 5000;
             CREATE TABLE IF NOT EXISTS jobs (
                 seq INTEGER PRIMARY KEY AUTOINCREMENT,
                 id TEXT NOT NULL UNIQUE,
                 kind TEXT NOT NULL,
                 status TEXT NOT NULL,
                 cluster TEXT NOT NULL,
                 target_cluster TEXT,
                 archive TEXT,
                 options TEXT NOT NULL,
                 created_by TEXT NOT NULL,
                 idempotency_key TEXT,
                 created_at TEXT NOT NULL,
                 started_at TEXT,
                 finished_at TEXT,
                 progress TEXT NOT NULL,
                 error TEXT,
                 report TEXT,
                 UNIQUE (created_by, idempotency_key)
             );",
        )
        .map_err(open)?;
        Ok(Db {
            conn: Mutex::new(conn),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding it leaves a connection still usable.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stores a new `queued` job, or returns the job created earlier with
    /// the same idempotency key by the same caller. `true`: created now.
    pub fn insert(&self, job: NewJob) -> Result<(JobRecord, bool), DbError> {
        if let Some(found) = self.by_key(&job.created_by, job.idempotency_key.as_deref())? {
            return Ok((found, false));
        }
        let id = uuid::Uuid::now_v7().to_string();
        let inserted = self.lock().execute(
            "INSERT INTO jobs (id, kind, status, cluster, target_cluster, archive, options,
                 created_by, idempotency_key, created_at, progress)
             VALUES (?1, ?2, 'queued', ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![
                id,
                job.kind.as_str(),
                job.cluster,
                job.target_cluster,
                job.archive,
                job.options.to_string(),
                job.created_by,
                job.idempotency_key,
                now(),
                serde_json::to_string(&Progress::default()).expect("progress serializes"),
            ],
        );
        match inserted {
            Ok(_) => Ok((self.get(&id)?.expect("just inserted"), true)),
            // The same key, inserted by a request racing this one.
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                let found = self.by_key(&job.created_by, job.idempotency_key.as_deref())?;
                Ok((found.ok_or(rusqlite::Error::QueryReturnedNoRows)?, false))
            }
            Err(e) => Err(e.into()),
        }
    }

    pub fn by_key(
        &self,
        created_by: &str,
        key: Option<&str>,
    ) -> Result<Option<JobRecord>, DbError> {
        let Some(key) = key else { return Ok(None) };
        Ok(self
            .lock()
            .query_row(
                &format!(
                    "SELECT {COLUMNS} FROM jobs WHERE created_by = ?1 AND idempotency_key = ?2"
                ),
                params![created_by, key],
                record,
            )
            .optional()?)
    }

    pub fn get(&self, id: &str) -> Result<Option<JobRecord>, DbError> {
        Ok(self
            .lock()
            .query_row(
                &format!("SELECT {COLUMNS} FROM jobs WHERE id = ?1"),
                params![id],
                record,
            )
            .optional()?)
    }

    /// Jobs, newest first, filtered by status and kind.
    pub fn list(
        &self,
        status: Option<Status>,
        kind: Option<Kind>,
    ) -> Result<Vec<JobRecord>, DbError> {
        let conn = self.lock();
        let mut statement = conn.prepare(&format!(
            "SELECT {COLUMNS} FROM jobs WHERE (?1 IS NULL OR status = ?1)
                 AND (?2 IS NULL OR kind = ?2) ORDER BY seq DESC"
        ))?;
        let rows = statement.query_map(
            params![status.map(Status::as_str), kind.map(Kind::as_str)],
            record,
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Moves job `id` to `to` if its status now is one that may become
    /// `to`; `false` if it was not (someone else moved it first).
    pub fn transition(&self, id: &str, to: Status) -> Result<bool, DbError> {
        let from: Vec<&str> = Status::ALL
            .into_iter()
            .filter(|s| s.can_become(to))
            .map(Status::as_str)
            .collect();
        let placeholders = from
            .iter()
            .map(|s| format!("'{s}'"))
            .collect::<Vec<_>>()
            .join(",");
        let (extra, stamped) = match to {
            Status::Running => (", started_at = COALESCE(started_at, ?3)", true),
            // Resumed: it is not finished any more, nor failed.
            Status::Queued => (", finished_at = NULL, error = NULL", false),
            s if s.is_final() => (", finished_at = ?3", true),
            _ => ("", false),
        };
        let sql = format!(
            "UPDATE jobs SET status = ?2{extra} WHERE id = ?1 AND status IN ({placeholders})"
        );
        let conn = self.lock();
        let changed = if stamped {
            conn.execute(&sql, params![id, to.as_str(), now()])?
        } else {
            conn.execute(&sql, params![id, to.as_str()])?
        };
        Ok(changed == 1)
    }

    /// Records how a run ended: its status (through [`Db::transition`]),
    /// error, report and last progress.
    pub fn finish(
        &self,
        id: &str,
        to: Status,
        error: Option<&str>,
        report: Option<&Value>,
        progress: &Progress,
    ) -> Result<bool, DbError> {
        self.set_progress(id, progress)?;
        self.lock().execute(
            "UPDATE jobs SET error = ?2, report = ?3 WHERE id = ?1",
            params![id, error, report.map(Value::to_string)],
        )?;
        self.transition(id, to)
    }

    pub fn set_progress(&self, id: &str, progress: &Progress) -> Result<(), DbError> {
        self.lock().execute(
            "UPDATE jobs SET progress = ?2 WHERE id = ?1",
            params![
                id,
                serde_json::to_string(progress).expect("progress serializes")
            ],
        )?;
        Ok(())
    }

    /// At startup: jobs left `running` or `cancelling` by a service that
    /// crashed become `interrupted`; the `queued` ones are returned, oldest
    /// first, to run again.
    pub fn recover(&self) -> Result<Vec<String>, DbError> {
        let conn = self.lock();
        conn.execute(
            "UPDATE jobs SET status = 'interrupted', finished_at = ?1
                 WHERE status IN ('running', 'cancelling')",
            params![now()],
        )?;
        let mut statement =
            conn.prepare("SELECT id FROM jobs WHERE status = 'queued' ORDER BY seq")?;
        let ids = statement.query_map([], |row| row.get::<_, String>(0))?;
        Ok(ids.collect::<Result<_, _>>()?)
    }

    /// Jobs counted by kind and status (for `/metrics`).
    pub fn counts(&self) -> Result<Vec<(String, String, u64)>, DbError> {
        let conn = self.lock();
        let mut statement =
            conn.prepare("SELECT kind, status, COUNT(*) FROM jobs GROUP BY kind, status")?;
        let rows = statement.query_map([], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get::<_, i64>(2)? as u64))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

fn record(row: &Row<'_>) -> rusqlite::Result<JobRecord> {
    let text = |i: usize| row.get::<_, String>(i);
    let bad = |i: usize, what: &str| {
        rusqlite::Error::FromSqlConversionFailure(
            i,
            rusqlite::types::Type::Text,
            format!("unknown {what}").into(),
        )
    };
    let json = |s: Option<String>| s.and_then(|s| serde_json::from_str::<Value>(&s).ok());
    Ok(JobRecord {
        id: text(0)?,
        kind: Kind::parse(&text(1)?).ok_or_else(|| bad(1, "kind"))?,
        status: Status::parse(&text(2)?).ok_or_else(|| bad(2, "status"))?,
        cluster: text(3)?,
        target_cluster: row.get(4)?,
        archive: row.get(5)?,
        options: json(row.get(6)?).unwrap_or(Value::Null),
        created_by: text(7)?,
        created_at: text(8)?,
        started_at: row.get(9)?,
        finished_at: row.get(10)?,
        progress: serde_json::from_str(&text(11)?).unwrap_or_default(),
        error: row.get(12)?,
        report: json(row.get(13)?),
    })
}

/// Creates `dir` and its parents, the last ones owner-only (0700).
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_job(key: Option<&str>, by: &str) -> NewJob {
        NewJob {
            kind: Kind::Export,
            cluster: "prod".into(),
            target_cluster: None,
            archive: Some("a".into()),
            options: json!({"page_size": 10}),
            created_by: by.into(),
            idempotency_key: key.map(String::from),
        }
    }

    #[test]
    fn jobs_move_only_along_the_table_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        let (job, created) = db.insert(new_job(Some("k"), "ci")).unwrap();
        assert!(created);
        assert_eq!(
            db.insert(new_job(Some("k"), "ci")).unwrap(),
            (job.clone(), false)
        );
        let (ops, created) = db.insert(new_job(Some("k"), "ops")).unwrap();
        assert!(created, "keys are per caller");
        assert!(!db.transition(&job.id, Status::Succeeded).unwrap());
        assert!(db.transition(&job.id, Status::Running).unwrap());
        let started = db.get(&job.id).unwrap().unwrap().started_at;
        assert!(started.is_some());
        let (other, _) = db.insert(new_job(None, "ci")).unwrap();
        drop(db);
        let db = Db::open(dir.path()).unwrap();
        assert_eq!(db.recover().unwrap(), vec![ops.id, other.id.clone()]);
        let job = db.get(&job.id).unwrap().unwrap();
        assert_eq!(job.status, Status::Interrupted);
        assert!(job.finished_at.is_some());
        assert!(db.transition(&job.id, Status::Queued).unwrap());
        assert_eq!(db.get(&job.id).unwrap().unwrap().finished_at, None);
        let listed: Vec<String> = db
            .list(None, None)
            .unwrap()
            .into_iter()
            .map(|j| j.id)
            .collect();
        assert_eq!(listed.first(), Some(&other.id), "newest first");
        assert_eq!(
            db.list(Some(Status::Queued), Some(Kind::Copy))
                .unwrap()
                .len(),
            0
        );
        assert_eq!(
            db.list(Some(Status::Queued), Some(Kind::Export))
                .unwrap()
                .len(),
            3
        );
    }
}

//! Running the binary, and databases to run it against.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use shopgraph_store::{Store, StoreOptions};

pub(crate) fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

pub(crate) fn graph_data(rel: &str) -> String {
    repo_root().join("graph_data").join(rel).display().to_string()
}

pub(crate) fn shopgraph() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_shopgraph"));
    cmd.env("RUST_LOG", "warn")
        .env_remove("SHOPGRAPH_DATABASE_URL")
        .env_remove("SHOPGRAPH_PG_SCHEMA");
    cmd
}

pub(crate) fn postgres_url() -> String {
    std::env::var("SHOPGRAPH_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// Runs a future on the tests' one runtime. One runtime, not one per call: a store's
/// pooled connections belong to the runtime that opened them.
pub(crate) fn block_on<F: std::future::Future>(f: F) -> F::Output {
    static RUNTIME: std::sync::LazyLock<tokio::runtime::Runtime> = std::sync::LazyLock::new(|| {
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
    });
    RUNTIME.block_on(f)
}

/// A fresh database of either backend, removed at the end of the test.
pub(crate) enum TestDb {
    Sqlite(tempfile::TempDir),
    Postgres(String),
    /// A PostgreSQL server of the test's own, which it may stop and start.
    Own(OwnPostgres),
}

impl TestDb {
    pub(crate) fn sqlite() -> TestDb {
        TestDb::Sqlite(tempfile::tempdir().unwrap())
    }

    pub(crate) fn postgres() -> TestDb {
        static N: AtomicUsize = AtomicUsize::new(0);
        TestDb::Postgres(format!(
            "sge2e_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ))
    }

    pub(crate) fn both() -> [TestDb; 2] {
        [TestDb::sqlite(), TestDb::postgres()]
    }

    pub(crate) fn name(&self) -> &'static str {
        match self {
            TestDb::Sqlite(_) => "sqlite",
            TestDb::Postgres(_) | TestDb::Own(_) => "postgres",
        }
    }

    fn url(&self) -> String {
        match self {
            TestDb::Sqlite(dir) => format!("sqlite:{}", dir.path().join("shop.db").display()),
            TestDb::Postgres(_) => postgres_url(),
            TestDb::Own(pg) => pg.url(),
        }
    }

    /// The `--db` (and `--pg-schema`) arguments of a `shopgraph` command.
    pub(crate) fn args(&self) -> Vec<String> {
        let mut args = vec!["--db".to_owned(), self.url()];
        if let TestDb::Postgres(schema) = self {
            args.extend(["--pg-schema".to_owned(), schema.clone()]);
        }
        args
    }

    /// The store, opened directly, to check what the binary wrote.
    pub(crate) fn store(&self) -> Store {
        let mut options = StoreOptions::new(&self.url());
        if let TestDb::Postgres(schema) = self {
            options.pg_schema = Some(schema.clone());
        }
        block_on(Store::open(&options)).unwrap_or_else(|e| panic!("{} store: {e}", self.name()))
    }

    /// True when the SQLite file exists (a refused import must not even create it).
    pub(crate) fn sqlite_file_exists(&self) -> bool {
        match self {
            TestDb::Sqlite(dir) => dir.path().join("shop.db").exists(),
            TestDb::Postgres(_) | TestDb::Own(_) => unreachable!("only asked of SQLite"),
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let TestDb::Postgres(schema) = self {
            let _ = block_on(Store::drop_pg_schema(&postgres_url(), schema));
        }
    }
}

/// Runs `shopgraph ARGS… DB-ARGS…` and returns its stdout; panics with its stderr if it fails.
#[track_caller]
pub(crate) fn run_ok(args: &[&str], db: &TestDb) -> String {
    let out = run(args, db);
    assert!(
        out.status.success(),
        "shopgraph {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

pub(crate) fn run(args: &[&str], db: &TestDb) -> Output {
    shopgraph().args(args).args(db.args()).output().unwrap()
}

/// A PostgreSQL server of one test's own, in a temporary directory on a free port:
/// the fault tests stop and restart it without touching the machine's server, which
/// other tests are using meanwhile. Stopped and removed when dropped.
pub(crate) struct OwnPostgres {
    dir: tempfile::TempDir,
    port: u16,
}

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

impl OwnPostgres {
    /// Makes a cluster (initdb, as the postgres user: PostgreSQL refuses to run as
    /// root) and starts it.
    pub(crate) fn start() -> OwnPostgres {
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("chown").arg("postgres").arg(dir.path()).status().unwrap();
        assert!(status.success(), "chown postgres {}", dir.path().display());
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let pg = OwnPostgres { dir, port };
        let out = pg
            .as_postgres(&format!("{PG_BIN}/initdb"))
            .args(["-A", "trust", "-U", "postgres", "-D"])
            .arg(pg.data())
            .output()
            .unwrap();
        assert!(out.status.success(), "initdb: {}", String::from_utf8_lossy(&out.stderr));
        pg.up();
        pg
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn as_postgres(&self, program: &str) -> Command {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--", program]);
        cmd
    }

    pub(crate) fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the server and waits until it takes connections.
    pub(crate) fn up(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=on",
            self.port,
            self.dir.path().display()
        );
        let out = self
            .as_postgres(&format!("{PG_BIN}/pg_ctl"))
            .arg("-D")
            .arg(self.data())
            .args(["-o", &options, "-l"])
            .arg(self.dir.path().join("log"))
            .args(["-w", "start"])
            .output()
            .unwrap();
        assert!(out.status.success(), "pg_ctl start: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Stops the server: `fast` ends sessions and checkpoints; `immediate` is a crash.
    pub(crate) fn down(&self, mode: &str) {
        let out = self
            .as_postgres(&format!("{PG_BIN}/pg_ctl"))
            .arg("-D")
            .arg(self.data())
            .args(["-m", mode, "-w", "stop"])
            .output()
            .unwrap();
        assert!(out.status.success(), "pg_ctl stop: {}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let _ = self
            .as_postgres(&format!("{PG_BIN}/pg_ctl"))
            .arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "-w", "stop"])
            .output();
    }
}

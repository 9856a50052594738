//! The embedded SQLite store when its disk fills up under a running server (writes are
//! refused with a clear 503 and lose nothing already acknowledged, reads go on, and
//! writing resumes once there is room) and when its directory turns read-only (a
//! clear error). The file stays sound throughout.
//!
//! The database lives on a small tmpfs of the test's own (mounting needs root, as CI
//! and these machines have), which the test fills and remounts read-only.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use crate::server::{STOREFRONT, call, serve};
use crate::support::{TestDb, block_on};

/// A tmpfs mounted over a folder; unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "this test mounts a tmpfs (it needs root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(at.to_owned())
    }

    fn remount(&self, mode: &str) {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,{mode}")])
            .arg(&self.0)
            .output()
            .unwrap();
        assert!(out.status.success(), "remount {mode}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Writes a file until the disk refuses more.
    fn fill(&self) -> PathBuf {
        let path = self.0.join("filler");
        let mut file = std::fs::File::create(&path).unwrap();
        let block = vec![0u8; 64 * 1024];
        while file.write_all(&block).is_ok() {}
        // Then the last few bytes a smaller write still finds.
        while file.write_all(&block[..512]).is_ok() {}
        let _ = file.sync_all();
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn event(key: &str) -> Value {
    json!({ "key": key, "user": "bx:11676", "product": "9780345318589", "kind": "view",
            "at_ms": shopgraph_core::now_ms() })
}

#[test]
fn a_full_or_read_only_disk_refuses_writes_clearly_and_corrupts_nothing() {
    let db = TestDb::sqlite();
    let TestDb::Sqlite(dir) = &db else { unreachable!() };
    let disk = Tmpfs::mount(dir.path(), "48m");
    let served = serve(&db, &[]);
    let base = served.base.as_str();
    let file = dir.path().join("shop.db");

    block_on(async {
        let post = |key: &'static str| {
            call(base, "POST", "/api/v1/events", Some(STOREFRONT), Some(event(key)))
        };
        let (s, ok) = post("disk-1").await;
        assert_eq!((s, ok["inserted"].as_u64()), (200, Some(1)), "{ok}");

        // ---- The disk fills up: writes are refused, in words; reads go on.
        let filler = disk.fill();
        let mut refused = 0;
        for key in ["disk-full-1", "disk-full-2", "disk-full-3"] {
            let (s, body) = post(key).await;
            if s == 200 {
                // SQLite may still find room in pages it already holds.
                continue;
            }
            assert_eq!(s, 503, "{body}");
            let message = body["error"]["message"].as_str().unwrap();
            assert!(message.contains("disk is full"), "{message}");
            refused += 1;
        }
        assert!(refused > 0, "every write found room on a full disk");
        let (s, recs) =
            call(base, "GET", "/api/v1/users/bx:11676/recommendations?n=5", Some(STOREFRONT), None)
                .await;
        assert_eq!(s, 200, "{recs}");
        std::fs::remove_file(filler).unwrap();
        let (s, ok) = post("disk-2").await;
        assert_eq!((s, ok["inserted"].as_u64()), (200, Some(1)), "{ok}");
    });
    drop(served);

    // ---- The data directory turns read-only (Linux refuses that while the server holds
    // the file open for writing, so it is stopped first): a write is refused with a
    // clear error, and nothing changes.
    disk.remount("ro");
    let out = crate::support::shopgraph()
        .args(["events", "append", "--db", &format!("sqlite:{}", file.display())])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write as _;
            let line = event("disk-ro-1").to_string() + "\n";
            child.stdin.take().unwrap().write_all(line.as_bytes())?;
            child.wait_with_output()
        })
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(!out.status.success(), "a write to a read-only disk succeeded: {said}");
    assert!(said.contains("read-only") || said.contains("readonly"), "{said}");
    disk.remount("rw");

    // The file is sound, and holds every acknowledged event.
    let check = Command::new("python3")
        .arg("-c")
        .arg(
            "import sqlite3, sys\n\
             db = sqlite3.connect(sys.argv[1])\n\
             print(db.execute('PRAGMA integrity_check').fetchone()[0])\n\
             keys = [k for (k,) in db.execute(\"SELECT idempotency_key FROM events WHERE idempotency_key LIKE 'disk-%'\")]\n\
             print(' '.join(sorted(keys)))",
        )
        .arg(&file)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("ok"), "{text}");
    let keys: Vec<&str> = lines.next().unwrap_or("").split(' ').collect();
    for acked in ["disk-1", "disk-2"] {
        assert!(keys.contains(&acked), "{acked} lost: {keys:?}");
    }
    assert!(!keys.contains(&"disk-ro-1"), "a refused write was kept: {keys:?}");
    drop(disk);
}

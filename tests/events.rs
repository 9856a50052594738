//! `shopgraph events append`: acknowledged means stored, exactly once, even when the
//! process is killed mid-stream; bad lines are refused one by one.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;

use crate::support::{TestDb, block_on, graph_data, run_ok, shopgraph};

const N_EVENTS: usize = 3_000;
/// The shop example brings 11 events of its own.
const SHOP_EVENTS: i64 = 11;

fn event_line(i: usize) -> String {
    let (user, product) =
        [("shop:ana", "LENS-35-L"), ("shop:li", "9780316373050"), ("shop:ana", "TRI-CARBON")]
            [i % 3];
    format!(
        r#"{{"key": "stream-{i}", "user": "{user}", "product": "{product}", "kind": "view", "at_ms": {}}}"#,
        1_736_000_000_000 + i
    )
}

/// Streams every event into a new `shopgraph events append`, reading its replies. With
/// `kill_after`, the process is killed with SIGKILL once that many are acknowledged.
/// Returns every reply line it printed.
fn stream(db: &TestDb, kill_after: Option<usize>) -> Vec<String> {
    let mut child = shopgraph()
        .args(["events", "append"])
        .args(db.args())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        for i in 0..N_EVENTS {
            // After a kill the pipe is closed: stop writing.
            if writeln!(stdin, "{}", event_line(i)).is_err() {
                break;
            }
        }
    });
    let mut replies = Vec::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let Ok(line) = line else { break };
        replies.push(line);
        if kill_after == Some(replies.len()) {
            child.kill().unwrap(); // SIGKILL: no destructor, no flush, no goodbye.
        }
    }
    child.wait().unwrap();
    writer.join().unwrap();
    replies
}

fn keys_with(replies: &[String], verb: &str) -> HashSet<String> {
    replies
        .iter()
        .filter_map(|r| r.strip_prefix(verb)?.split_whitespace().next().map(str::to_owned))
        .collect()
}

#[test]
fn sigkill_mid_stream_loses_no_acknowledged_event() {
    for db in TestDb::both() {
        run_ok(&["import", &graph_data("examples/shop")], &db);

        let replies = stream(&db, Some(700));
        let acked = keys_with(&replies, "ack ");
        assert!(
            acked.len() >= 700 && acked.len() < N_EVENTS,
            "{}: killed too late: {}",
            db.name(),
            acked.len()
        );

        // After the restart every acknowledged event is there.
        let store = db.store();
        for key in &acked {
            assert!(
                block_on(store.event_seq_by_key(key)).unwrap().is_some(),
                "{}: acked {key} was lost",
                db.name()
            );
        }
        let stored_after_kill = block_on(store.count_events()).unwrap() - SHOP_EVENTS;
        // The one in flight when the kill came may have committed without its ack.
        assert!(
            stored_after_kill as usize <= acked.len() + 1,
            "{}: {stored_after_kill}",
            db.name()
        );

        // The producer re-sends everything; acknowledged events come back as duplicates.
        let replies = stream(&db, None);
        assert_eq!(
            replies.len(),
            N_EVENTS,
            "{}: {:?}",
            db.name(),
            replies.iter().find(|r| r.starts_with("error"))
        );
        let duplicates = keys_with(&replies, "dup ");
        assert!(
            acked.is_subset(&duplicates),
            "{}: an acknowledged event was stored twice",
            db.name()
        );
        assert_eq!(
            block_on(store.count_events()).unwrap(),
            SHOP_EVENTS + N_EVENTS as i64,
            "{}: exactly once",
            db.name()
        );
        block_on(store.close());
    }
}

#[test]
fn bad_lines_get_clear_errors_and_good_lines_still_land() {
    for db in TestDb::both() {
        bad_lines_on(&db);
    }
}

fn bad_lines_on(db: &TestDb) {
    run_ok(&["import", &graph_data("examples/shop")], db);
    let big = "x".repeat(70_000);
    let mut input: Vec<u8> = Vec::new();
    for line in [
        r#"{"key": "g1", "user": "shop:ana", "product": "CAM-X100", "kind": "view", "at_ms": 1736000000000}"#.to_owned(),
        r#"{"key": "b1", "user": "shop:nobody", "product": "CAM-X100", "kind": "view", "at_ms": 1736000000000}"#.to_owned(),
        r#"{"key": "b2", "user": "shop:ana", "product": "NO-SUCH-SKU", "kind": "view", "at_ms": 1736000000000}"#.to_owned(),
        r#"{"key": "b3", "user": "shop:ana", "product": "CAM-X100", "kind": "teleport", "at_ms": 1736000000000}"#.to_owned(),
        format!(r#"{{"key": "b4", "user": "shop:ana", "kind": "search", "payload": "{big}", "at_ms": 1736000000000}}"#),
        r#"{"key": "b5", "user": "shop:ana", "product": "CAM-X100", "kind": "rating", "at_ms": 1736000000000}"#.to_owned(),
        "not json at all".to_owned(),
    ] {
        input.extend_from_slice(line.as_bytes());
        input.push(b'\n');
    }
    input.extend_from_slice(b"{\"key\": \"b6\", \"user\": \"shop:ana\", \"kind\": \"search\", \"payload\": \"caf\xe9\", \"at_ms\": 1}\n");
    // A key with a line break would forge an ack for key "b7"; a NUL in an id is refused
    // alike on SQLite (which would store it) and PostgreSQL (which would fail on it).
    input.extend_from_slice(
        br#"{"key": "a\nack b7 1", "user": "shop:ana", "kind": "search", "at_ms": 1736000000000}"#,
    );
    input.push(b'\n');
    input.extend_from_slice(
        br#"{"key": "n0", "user": "shop:\u0000ana", "kind": "search", "at_ms": 1736000000000}"#,
    );
    input.push(b'\n');
    input.extend_from_slice(br#"{"key": "g2", "user": "shop:li", "kind": "search", "payload": {"query": "lens"}, "at_ms": 1736000000001}"#);
    input.push(b'\n');

    let mut child = shopgraph()
        .args(["events", "append"])
        .args(db.args())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&input).unwrap();
    let name = db.name();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{name}: bad lines do not stop the pipe");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let replies: Vec<&str> = stdout.lines().collect();
    assert_eq!(replies.len(), 11, "{name}: {stdout}");
    assert!(replies[0].starts_with("ack g1 "));
    assert_eq!(replies[1], r#"error 2: invalid input: unknown user "shop:nobody""#);
    assert_eq!(replies[2], r#"error 3: invalid input: unknown product "NO-SUCH-SKU""#);
    assert!(
        replies[3].starts_with(r#"error 4: invalid input: unknown event kind "teleport""#),
        "{}",
        replies[3]
    );
    assert_eq!(replies[4], "error 5: invalid input: payload is 70002 bytes; the limit is 65536");
    assert_eq!(replies[5], "error 6: invalid input: a rating event must carry a finite value");
    assert!(
        replies[6].starts_with("error 7: invalid input: not a valid event line"),
        "{}",
        replies[6]
    );
    assert_eq!(replies[7], "error 8: invalid input: not valid UTF-8 (first bad byte at offset 67)");
    assert_eq!(
        replies[8],
        "error 9: invalid input: idempotency key may not contain spaces or control characters"
    );
    assert!(
        replies[9].starts_with(
            "error 10: invalid input: user id \"shop:\\0ana\" contains a control character"
        ),
        "{name}: {}",
        replies[9]
    );
    assert!(replies[10].starts_with("ack g2 "), "{name}: {stdout}");
    assert!(!stdout.contains("ack b7"), "{name}: no forged ack");

    let store = db.store();
    assert_eq!(
        block_on(store.count_events()).unwrap(),
        SHOP_EVENTS + 2,
        "only the good lines were stored"
    );
    block_on(store.close());
}

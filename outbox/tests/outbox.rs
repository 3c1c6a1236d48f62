//! The outbox's claims, each against a real SQLite database and spool in a temporary folder,
//! with a manual clock (no test sleeps).

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use scan2x_mail_outbox::{
    AttachmentSource, Attempt, Claimed, Deliver, ManualClock, Options, Outbox, OutboxError,
    RecipientState, RecipientVerdict, State, Submission,
};
use serde_json::json;

const MIN: Duration = Duration::from_secs(60);

struct Env {
    tmp: tempfile::TempDir,
    clock: Arc<ManualClock>,
}

impl Env {
    fn new() -> Self {
        Self {
            tmp: tempfile::tempdir().unwrap(),
            clock: Arc::new(ManualClock::at_a_fixed_instant()),
        }
    }

    fn data(&self) -> PathBuf {
        self.tmp.path().join("data")
    }

    fn open(&self) -> Outbox {
        self.open_with(Options::default())
    }

    fn open_with(&self, options: Options) -> Outbox {
        Outbox::open_with(self.data(), options, self.clock.clone()).unwrap()
    }

    fn now(&self) -> SystemTime {
        use scan2x_mail_outbox::Clock;
        self.clock.now()
    }

    /// A file outside the data folder, to attach.
    fn file(&self, name: &str, content: &[u8]) -> PathBuf {
        let p = self.tmp.path().join(name);
        fs::write(&p, content).unwrap();
        p
    }
}

fn email(recipients: &[&str]) -> Submission {
    Submission::new(
        json!({"subject": "scan", "to": recipients}),
        recipients.iter().copied(),
    )
}

fn attach(name: &str, path: &Path) -> AttachmentSource {
    AttachmentSource {
        name: name.into(),
        content_type: "application/pdf".into(),
        path: path.into(),
    }
}

fn spool_entries(env: &Env) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(env.data().join("spool"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

fn claim_one(outbox: &Outbox) -> Claimed {
    let mut c = outbox.claim_due(10).unwrap();
    assert_eq!(c.len(), 1, "expected exactly one email due, got {c:?}");
    c.pop().unwrap()
}

#[test]
fn open_makes_a_private_folder_with_a_wal_database_and_a_spool() {
    let env = Env::new();
    let _outbox = env.open();
    assert!(env.data().join("spool").is_dir());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(env.data()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }
    let conn = rusqlite::Connection::open(env.data().join("outbox.sqlite3")).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 2);
}

#[test]
fn a_database_from_a_newer_build_is_refused_with_both_versions() {
    let env = Env::new();
    drop(env.open());
    let conn = rusqlite::Connection::open(env.data().join("outbox.sqlite3")).unwrap();
    conn.pragma_update(None, "user_version", 7).unwrap();
    drop(conn);
    let err = Outbox::open_with(env.data(), Options::default(), env.clock.clone()).unwrap_err();
    assert!(
        matches!(
            err,
            OutboxError::NewerSchema {
                found: 7,
                known: 2,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn attachments_are_copied_into_the_spool_and_the_source_is_not_needed_after() {
    let env = Env::new();
    let outbox = env.open();
    let src = env.file("scan.pdf", b"%PDF-1.7 a scan");
    let mut sub = email(&["a@example.test"]);
    sub.attachments.push(attach("scan.pdf", &src));
    let id = outbox.submit(sub).unwrap().id;
    fs::remove_file(&src).unwrap();
    let item = claim_one(&outbox);
    assert_eq!(item.id, id);
    let a = &item.attachments[0];
    assert!(
        a.path.starts_with(env.data().join("spool").join(&id)),
        "{}",
        a.path.display()
    );
    assert_eq!(fs::read(&a.path).unwrap(), b"%PDF-1.7 a scan");
    assert_eq!(a.size, 15);
    assert_eq!(a.sha256.len(), 64);
    assert_eq!(
        item.payload,
        json!({"subject": "scan", "to": ["a@example.test"]})
    );
}

#[test]
fn a_spool_folder_without_a_row_is_swept_at_open_and_one_with_a_row_is_kept() {
    let env = Env::new();
    let outbox = env.open();
    let mut sub = email(&["a@example.test"]);
    sub.attachments
        .push(attach("kept.pdf", &env.file("kept.pdf", b"kept")));
    let kept = outbox.submit(sub).unwrap().id;
    drop(outbox);
    // what a crash between the spool's fsync and the row's commit leaves
    let orphan = env.data().join("spool").join("0b8e3c6e-orphan");
    fs::create_dir(&orphan).unwrap();
    fs::write(orphan.join("0"), b"half an email").unwrap();
    fs::write(env.data().join("spool").join("stray-file"), b"x").unwrap();

    let outbox = env.open();
    assert_eq!(spool_entries(&env), vec![kept.clone()]);
    let detail = outbox.show(&kept).unwrap();
    assert_eq!(fs::read(&detail.attachments[0].path).unwrap(), b"kept");
}

#[test]
fn a_repeated_idempotency_key_returns_the_first_id_and_enqueues_nothing() {
    let env = Env::new();
    let outbox = env.open();
    let src = env.file("scan.pdf", b"pdf");
    let sub = || {
        let mut s = email(&["a@example.test"]);
        s.idempotency_key = Some("job-42".into());
        s.message_id = Some("<job-42@scan2x.example>".into());
        s.attachments.push(attach("scan.pdf", &src));
        s
    };
    let first = outbox.submit(sub()).unwrap();
    assert!(!first.duplicate);
    assert_eq!(first.message_id, "<job-42@scan2x.example>");
    let again = outbox.submit(sub()).unwrap();
    assert!(again.duplicate);
    assert_eq!(again.id, first.id);
    assert_eq!(again.message_id, first.message_id);
    assert_eq!(outbox.list(None).unwrap().len(), 1);
    assert_eq!(spool_entries(&env), vec![first.id.clone()]);
    // a second handle (another process) sees the same key
    let other = env.open();
    assert_eq!(other.submit(sub()).unwrap().id, first.id);
}

#[test]
fn a_reused_key_with_another_email_is_its_own_error_and_enqueues_nothing() {
    let env = Env::new();
    let outbox = env.open();
    let mut a = email(&["a@example.test"]);
    a.idempotency_key = Some("k".into());
    let first = outbox.submit(a).unwrap();
    let mut b = Submission::new(json!({"subject": "another"}), ["a@example.test"]);
    b.idempotency_key = Some("k".into());
    let err = outbox.submit(b).unwrap_err();
    match &err {
        OutboxError::KeyReused { key, id } => {
            assert_eq!(key, "k");
            assert_eq!(id, &first.id);
        }
        other => panic!("expected KeyReused, got {other:?}"),
    }
    assert!(err.to_string().contains("use a new key"), "{err}");
    assert_eq!(outbox.list(None).unwrap().len(), 1);
}

#[test]
fn a_message_id_is_made_when_none_is_given_and_kept_for_every_attempt() {
    let env = Env::new();
    let outbox = env.open();
    let s = outbox.submit(email(&["a@example.test"])).unwrap();
    assert!(
        s.message_id.starts_with('<') && s.message_id.ends_with("@scan2x-mail.invalid>"),
        "{}",
        s.message_id
    );
    let item = claim_one(&outbox);
    assert_eq!(item.message_id, s.message_id);
    outbox
        .record(&item.id, Attempt::temporary("smtp", "451 later", None))
        .unwrap();
    env.clock.advance(5 * MIN);
    assert_eq!(claim_one(&outbox).message_id, s.message_id);
}

#[test]
fn temporary_failures_back_off_5_10_20_40_60_60_minutes() {
    let env = Env::new();
    let outbox = env.open();
    let id = outbox.submit(email(&["a@example.test"])).unwrap().id;
    let mut waits = Vec::new();
    for _ in 0..6 {
        let item = claim_one(&outbox);
        assert_eq!(item.id, id);
        assert_eq!(
            outbox
                .record(&id, Attempt::temporary("smtp", "451 4.7.1 try later", None))
                .unwrap(),
            State::Queued
        );
        let next = outbox.show(&id).unwrap().summary.next_attempt_at;
        let wait = next.duration_since(env.now()).unwrap();
        waits.push(wait.as_secs() / 60);
        // not due a second before
        env.clock.advance(wait - Duration::from_secs(1));
        assert!(outbox.claim_due(10).unwrap().is_empty());
        env.clock.advance(Duration::from_secs(1));
    }
    assert_eq!(waits, [5, 10, 20, 40, 60, 60]);
    let detail = outbox.show(&id).unwrap();
    assert_eq!(detail.attempts.len(), 6);
    assert!(
        detail
            .attempts
            .iter()
            .all(|a| a.outcome == "temporary" && a.sender == "smtp")
    );
    assert_eq!(detail.attempts[0].detail, "451 4.7.1 try later");
}

#[test]
fn a_retry_after_longer_than_the_backoff_is_the_floor() {
    let env = Env::new();
    let outbox = env.open();
    let id = outbox.submit(email(&["a@example.test"])).unwrap().id;
    claim_one(&outbox);
    outbox
        .record(
            &id,
            Attempt::temporary(
                "graph",
                "429 Too Many Requests",
                Some(Duration::from_secs(1800)),
            ),
        )
        .unwrap();
    let detail = outbox.show(&id).unwrap();
    assert_eq!(
        detail
            .summary
            .next_attempt_at
            .duration_since(env.now())
            .unwrap(),
        30 * MIN
    );
    assert_eq!(
        detail.attempts[0].retry_after,
        Some(Duration::from_secs(1800))
    );
    env.clock.advance(29 * MIN);
    assert!(
        outbox.claim_due(10).unwrap().is_empty(),
        "due before the server's Retry-After"
    );
    env.clock.advance(MIN);
    claim_one(&outbox);
    // a shorter Retry-After does not shorten the backoff (second failure: 10 min)
    outbox
        .record(
            &id,
            Attempt::temporary("graph", "429", Some(Duration::from_secs(5))),
        )
        .unwrap();
    let next = outbox.show(&id).unwrap().summary.next_attempt_at;
    assert_eq!(next.duration_since(env.now()).unwrap(), 10 * MIN);
}

#[test]
fn senders_a_failover_passed_over_are_recorded_before_the_final_attempt_and_counted_once() {
    let env = Env::new();
    let outbox = env.open();
    let id = outbox.submit(email(&["a@example.test"])).unwrap().id;
    claim_one(&outbox);
    // every sender failed for now: three rows, one failure for the backoff (5 min, not 15)
    let state = outbox
        .record(
            &id,
            Attempt::temporary("backup", "connection refused", None)
                .after_passing_over("relay", "421 busy", Some(Duration::from_secs(60)))
                .after_passing_over("office", "timed out", None),
        )
        .unwrap();
    assert_eq!(state, State::Queued);
    let detail = outbox.show(&id).unwrap();
    let rows: Vec<(u32, &str, &str, &str)> = detail
        .attempts
        .iter()
        .map(|a| {
            (
                a.number,
                a.sender.as_str(),
                a.outcome.as_str(),
                a.detail.as_str(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            (1, "relay", "temporary", "421 busy"),
            (2, "office", "temporary", "timed out"),
            (3, "backup", "temporary", "connection refused"),
        ]
    );
    assert_eq!(
        detail.attempts[0].retry_after,
        Some(Duration::from_secs(60))
    );
    assert_eq!(
        detail
            .summary
            .next_attempt_at
            .duration_since(env.now())
            .unwrap(),
        5 * MIN,
        "the passed-over senders do not advance the backoff"
    );
    // the next delivery passes over the first sender again and the second takes it
    env.clock.advance(5 * MIN);
    claim_one(&outbox);
    let state = outbox
        .record(
            &id,
            Attempt::delivered("backup", "250 OK").after_passing_over("relay", "421 busy", None),
        )
        .unwrap();
    assert_eq!(state, State::Delivered);
    let detail = outbox.show(&id).unwrap();
    let outcomes: Vec<(&str, &str)> = detail
        .attempts
        .iter()
        .map(|a| (a.sender.as_str(), a.outcome.as_str()))
        .collect();
    assert_eq!(
        outcomes[3..],
        [("relay", "temporary"), ("backup", "delivered")]
    );
    assert_eq!(detail.summary.attempts, 5);
}

#[test]
fn past_its_lifetime_a_temporary_failure_is_failed() {
    let env = Env::new();
    let outbox = env.open();
    let mut sub = email(&["a@example.test"]);
    sub.lifetime = Some(30 * MIN);
    let id = outbox.submit(sub).unwrap().id;
    let mut states = Vec::new();
    for _ in 0..10 {
        let Some(item) = outbox.claim_due(1).unwrap().pop() else {
            env.clock.advance(MIN);
            continue;
        };
        states.push(
            outbox
                .record(&item.id, Attempt::temporary("smtp", "421 busy", None))
                .unwrap(),
        );
        if states.last() == Some(&State::Failed) {
            break;
        }
        let next = outbox.show(&id).unwrap().summary.next_attempt_at;
        env.clock.set(next);
    }
    // t=0 (→5), t=5 (→15), t=15 (→35, cut to the end of the lifetime: 30), t=30: failed
    assert_eq!(
        states,
        [State::Queued, State::Queued, State::Queued, State::Failed]
    );
    let s = outbox.show(&id).unwrap().summary;
    assert_eq!(s.state, State::Failed);
    assert!(s.last_error.unwrap().contains("lifetime"));
}

#[test]
fn the_default_lifetime_is_five_days() {
    let env = Env::new();
    let outbox = env.open();
    let id = outbox.submit(email(&["a@example.test"])).unwrap().id;
    let s = outbox.show(&id).unwrap().summary;
    assert_eq!(
        s.expires_at.duration_since(s.created_at).unwrap(),
        Duration::from_secs(5 * 86_400)
    );
}

#[test]
fn a_permanent_failure_is_failed_at_once() {
    let env = Env::new();
    let outbox = env.open();
    let id = outbox.submit(email(&["a@example.test"])).unwrap().id;
    claim_one(&outbox);
    assert_eq!(
        outbox
            .record(&id, Attempt::permanent("smtp", "554 5.7.1 rejected"))
            .unwrap(),
        State::Failed
    );
    env.clock.advance(Duration::from_secs(86_400));
    assert!(outbox.claim_due(10).unwrap().is_empty());
    let d = outbox.show(&id).unwrap();
    assert_eq!(d.summary.state, State::Failed);
    assert!(d.summary.last_error.unwrap().contains("554 5.7.1 rejected"));
    assert_eq!(outbox.list(Some(State::Failed)).unwrap().len(), 1);
    assert!(outbox.list(Some(State::Queued)).unwrap().is_empty());
}

#[test]
fn an_uncertain_outcome_is_retried_after_the_backoff_pinned_to_its_sender_with_the_same_message_id()
{
    let env = Env::new();
    let outbox = env.open();
    let s = outbox.submit(email(&["a@example.test"])).unwrap();
    let first = claim_one(&outbox);
    assert_eq!(first.pinned_sender, None);
    assert_eq!(
        outbox
            .record(
                &s.id,
                Attempt::uncertain("smtp-office", "connection lost after the final dot")
            )
            .unwrap(),
        State::Queued
    );
    // never handed to another sender at once: not due before the normal backoff
    assert!(outbox.claim_due(10).unwrap().is_empty());
    env.clock.advance(5 * MIN);
    let again = claim_one(&outbox);
    assert_eq!(again.pinned_sender.as_deref(), Some("smtp-office"));
    assert_eq!(again.message_id, s.message_id);
    // a later uncertain attempt through another sender does not move the pin
    outbox
        .record(&s.id, Attempt::uncertain("graph", "lost"))
        .unwrap();
    env.clock.advance(10 * MIN);
    assert_eq!(
        claim_one(&outbox).pinned_sender.as_deref(),
        Some("smtp-office")
    );
    assert_eq!(
        outbox.show(&s.id).unwrap().summary.pinned_sender.as_deref(),
        Some("smtp-office")
    );
}

#[test]
fn accepted_recipients_are_never_owed_again() {
    let env = Env::new();
    let outbox = env.open();
    let id = outbox
        .submit(email(&[
            "a@example.test",
            "b@example.test",
            "c@example.test",
            "a@example.test",
        ]))
        .unwrap()
        .id;
    let item = claim_one(&outbox);
    assert_eq!(
        item.recipients_owed,
        ["a@example.test", "b@example.test", "c@example.test"]
    );
    let attempt = Attempt::delivered("smtp", "250 queued as 1")
        .with_recipient("a@example.test", RecipientVerdict::Accepted, "250 ok")
        .with_recipient(
            "b@example.test",
            RecipientVerdict::RefusedForNow,
            "452 mailbox full",
        )
        .with_recipient(
            "c@example.test",
            RecipientVerdict::RefusedForGood,
            "550 no such user",
        );
    // b is still owed: queued again, for b only
    assert_eq!(outbox.record(&id, attempt).unwrap(), State::Queued);
    env.clock.advance(5 * MIN);
    let item = claim_one(&outbox);
    assert_eq!(item.recipients_owed, ["b@example.test"]);
    // a temporary failure that says a was refused cannot make a owed again
    let attempt = Attempt::temporary("smtp", "451", None).with_recipient(
        "a@example.test",
        RecipientVerdict::RefusedForNow,
        "452",
    );
    outbox.record(&id, attempt).unwrap();
    env.clock.advance(10 * MIN);
    assert_eq!(claim_one(&outbox).recipients_owed, ["b@example.test"]);
    assert_eq!(
        outbox
            .record(&id, Attempt::delivered("smtp", "250"))
            .unwrap(),
        State::Delivered
    );
    let d = outbox.show(&id).unwrap();
    let states: Vec<(&str, RecipientState)> = d
        .recipients
        .iter()
        .map(|r| (r.address.as_str(), r.state))
        .collect();
    assert_eq!(
        states,
        [
            ("a@example.test", RecipientState::Accepted),
            ("b@example.test", RecipientState::Accepted),
            ("c@example.test", RecipientState::Refused),
        ]
    );
    assert_eq!(d.recipients[2].detail.as_deref(), Some("550 no such user"));
}

#[test]
fn every_recipient_refused_for_good_is_failed() {
    let env = Env::new();
    let outbox = env.open();
    let id = outbox.submit(email(&["a@example.test"])).unwrap().id;
    claim_one(&outbox);
    let attempt = Attempt::temporary("smtp", "no recipient accepted", None).with_recipient(
        "a@example.test",
        RecipientVerdict::RefusedForGood,
        "550",
    );
    assert_eq!(outbox.record(&id, attempt).unwrap(), State::Failed);
}

#[test]
fn a_claim_of_a_live_handle_is_left_alone_until_its_lease_runs_out_then_delivered_once() {
    let env = Env::new();
    let stuck = env.open();
    let id = stuck.submit(email(&["a@example.test"])).unwrap().id;
    let claimed = claim_one(&stuck);
    assert_eq!(
        claimed.locked_until.duration_since(env.now()).unwrap(),
        15 * MIN
    );

    // another handle within the lease: the claim is live, so it is left alone
    env.clock.advance(MIN);
    let other = env.open();
    assert_eq!(other.show(&id).unwrap().summary.state, State::Sending);
    assert!(other.claim_due(10).unwrap().is_empty());

    // after the lease: queued again at the next claim (the holder overran it), due at once
    env.clock.advance(15 * MIN);
    let again = claim_one(&other);
    assert_eq!(again.id, id);
    assert_eq!(again.message_id, claimed.message_id);
    assert_eq!(
        other
            .record(&id, Attempt::delivered("smtp", "250"))
            .unwrap(),
        State::Delivered
    );
    env.clock.advance(Duration::from_secs(86_400));
    assert!(other.claim_due(10).unwrap().is_empty());
    let attempts = other.show(&id).unwrap().attempts;
    let outcomes: Vec<&str> = attempts.iter().map(|a| a.outcome.as_str()).collect();
    assert_eq!(outcomes, ["interrupted", "delivered"]);
    assert!(
        attempts[0].detail.contains("lease ran out"),
        "{}",
        attempts[0].detail
    );
    drop(stuck);
}

#[test]
fn a_claim_of_a_dropped_handle_is_queued_again_at_the_next_open_without_waiting_for_its_lease() {
    let env = Env::new();
    let outbox = env.open();
    let id = outbox.submit(email(&["a@example.test"])).unwrap().id;
    let claimed = claim_one(&outbox);
    drop(outbox); // the handle, and any delivery it made, is gone

    env.clock.advance(Duration::from_secs(1));
    let outbox = env.open();
    assert_eq!(outbox.show(&id).unwrap().summary.state, State::Queued);
    let again = claim_one(&outbox);
    assert_eq!(
        (again.id.as_str(), again.message_id.as_str()),
        (id.as_str(), claimed.message_id.as_str())
    );
    let attempts = outbox.show(&id).unwrap().attempts;
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].outcome, "interrupted");
    assert!(
        attempts[0].detail.contains("process delivering it stopped"),
        "{}",
        attempts[0].detail
    );
}

/// In a child process a test re-executes: the outbox in the folder `dir_env` names and the file
/// `OUTBOX_TEST_OUT` names for what it says; none when the test runner runs it.
fn child_outbox(dir_env: &str) -> Option<(Outbox, std::ffi::OsString)> {
    let dir = std::env::var_os(dir_env)?;
    let out = std::env::var_os("OUTBOX_TEST_OUT")?;
    let outbox = Outbox::open_with(
        &dir,
        Options::default(),
        Arc::new(ManualClock::at_a_fixed_instant()),
    )
    .unwrap();
    Some((outbox, out))
}

/// Run by `a_claim_of_a_killed_process_is_queued_again_at_once_and_its_file_swept` in a child
/// process (this test binary, re-executed): claims one email, says so, and is killed while it
/// holds it. Does nothing when run by the test runner.
#[test]
fn child_process_claim_and_hang() {
    let Some((outbox, out)) = child_outbox("OUTBOX_TEST_HANG_DIR") else {
        return;
    };
    let claimed = outbox.claim_due(1).unwrap();
    fs::write(&out, claimed[0].id.as_bytes()).unwrap();
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[test]
fn a_claim_of_a_killed_process_is_queued_again_at_once_and_its_file_swept() {
    let env = Env::new();
    let setup = env.open();
    let id = setup.submit(email(&["a@example.test"])).unwrap().id;
    drop(setup);
    let out = env.tmp.path().join("claimed");
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_process_claim_and_hang",
            "--test-threads=1",
        ])
        .env("OUTBOX_TEST_HANG_DIR", env.data())
        .env("OUTBOX_TEST_OUT", &out)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while fs::read_to_string(&out).unwrap_or_default() != id {
        assert!(
            std::time::Instant::now() < deadline,
            "the child did not claim within 30 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let owners = || fs::read_dir(env.data().join("owners")).unwrap().count();

    // alive and holding it: another handle leaves it alone
    let outbox = env.open();
    assert_eq!(outbox.show(&id).unwrap().summary.state, State::Sending);
    assert!(outbox.claim_due(10).unwrap().is_empty());
    assert_eq!(owners(), 2, "the child's file and this handle's");

    // SIGKILL: no destructor runs, its file stays, unlocked; the next claim gives the email
    // back at once (the same clock instant: no lease has run out)
    child.kill().unwrap();
    child.wait().unwrap();
    let again = claim_one(&outbox);
    assert_eq!(again.id, id);
    let outcomes: Vec<String> = outbox
        .show(&id)
        .unwrap()
        .attempts
        .into_iter()
        .map(|a| a.outcome)
        .collect();
    assert_eq!(outcomes, ["interrupted"]);
    assert_eq!(owners(), 2, "a claim does not sweep");
    drop(outbox);
    let _outbox = env.open();
    assert_eq!(
        owners(),
        1,
        "only the live handle's file is left after an open"
    );
}

#[test]
fn delete_removes_the_rows_and_the_spool_files_but_not_while_sending() {
    let env = Env::new();
    let outbox = env.open();
    let mut sub = email(&["a@example.test"]);
    sub.attachments
        .push(attach("a.pdf", &env.file("a.pdf", b"a")));
    let id = outbox.submit(sub).unwrap().id;
    let item = claim_one(&outbox);
    let err = outbox.delete(&id).unwrap_err();
    assert!(
        matches!(
            err,
            OutboxError::WrongState {
                state: State::Sending,
                ..
            }
        ),
        "{err}"
    );
    outbox
        .record(&id, Attempt::temporary("smtp", "451", None))
        .unwrap();
    outbox.delete(&id).unwrap();
    assert!(!item.attachments[0].path.exists());
    assert!(spool_entries(&env).is_empty());
    assert!(matches!(
        outbox.show(&id),
        Err(OutboxError::NotFound { .. })
    ));
    assert!(matches!(
        outbox.delete(&id),
        Err(OutboxError::NotFound { .. })
    ));
}

#[test]
fn purge_removes_delivered_emails_after_the_retention_period_only() {
    let env = Env::new();
    let outbox = env.open();
    let mut sub = email(&["a@example.test"]);
    sub.attachments
        .push(attach("a.pdf", &env.file("a.pdf", b"a")));
    let delivered = outbox.submit(sub).unwrap().id;
    claim_one(&outbox);
    outbox
        .record(&delivered, Attempt::delivered("smtp", "250"))
        .unwrap();
    let queued = outbox.submit(email(&["b@example.test"])).unwrap().id;
    let retention = Duration::from_secs(7 * 86_400);

    env.clock.advance(retention - MIN);
    assert_eq!(outbox.purge_delivered(retention).unwrap(), 0);
    env.clock.advance(MIN);
    assert_eq!(outbox.purge_delivered(retention).unwrap(), 1);
    assert!(matches!(
        outbox.show(&delivered),
        Err(OutboxError::NotFound { .. })
    ));
    assert!(spool_entries(&env).is_empty());
    assert_eq!(outbox.show(&queued).unwrap().summary.state, State::Queued);
}

#[test]
fn a_folder_as_an_attachment_leaves_nothing_half_written() {
    let env = Env::new();
    let outbox = env.open();
    let folder = env.tmp.path().join("a-folder");
    fs::create_dir(&folder).unwrap();
    let mut sub = email(&["a@example.test"]);
    sub.idempotency_key = Some("k".into());
    sub.attachments
        .push(attach("first.pdf", &env.file("first.pdf", b"copied first")));
    sub.attachments.push(attach("folder.pdf", &folder));
    let err = outbox.submit(sub.clone()).unwrap_err();
    assert!(
        matches!(err, OutboxError::AttachmentNotAFile { ref name, .. } if name == "folder.pdf"),
        "{err}"
    );
    assert!(outbox.list(None).unwrap().is_empty());
    assert!(spool_entries(&env).is_empty(), "{:?}", spool_entries(&env));
    // the key was not taken: a corrected submit with it goes through
    sub.attachments.pop();
    assert!(!outbox.submit(sub).unwrap().duplicate);
}

#[test]
fn a_missing_attachment_is_an_error_that_names_it() {
    let env = Env::new();
    let outbox = env.open();
    let mut sub = email(&["a@example.test"]);
    sub.attachments
        .push(attach("gone.pdf", &env.tmp.path().join("gone.pdf")));
    let err = outbox.submit(sub).unwrap_err();
    assert!(
        matches!(err, OutboxError::AttachmentUnreadable { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("gone.pdf"), "{err}");
    assert!(outbox.list(None).unwrap().is_empty());
    assert!(spool_entries(&env).is_empty());
}

#[test]
fn attachments_over_the_bound_leave_nothing_half_written() {
    let env = Env::new();
    let outbox = env.open_with(Options {
        max_message_bytes: 10,
        ..Options::default()
    });
    let mut sub = email(&["a@example.test"]);
    sub.attachments
        .push(attach("a.pdf", &env.file("a.pdf", b"123456")));
    sub.attachments
        .push(attach("b.pdf", &env.file("b.pdf", b"123456")));
    let err = outbox.submit(sub).unwrap_err();
    assert!(
        matches!(err, OutboxError::TooLarge { limit: 10, .. }),
        "{err}"
    );
    assert!(outbox.list(None).unwrap().is_empty());
    assert!(spool_entries(&env).is_empty());
    // exactly at the bound is fine
    let mut sub = email(&["a@example.test"]);
    sub.attachments
        .push(attach("c.pdf", &env.file("c.pdf", b"1234567890")));
    outbox.submit(sub).unwrap();
}

#[test]
fn a_submission_without_recipients_is_refused() {
    let env = Env::new();
    let outbox = env.open();
    let err = outbox
        .submit(Submission::new(json!({}), Vec::<String>::new()))
        .unwrap_err();
    assert!(matches!(err, OutboxError::Invalid(_)), "{err}");
}

#[test]
fn two_handles_on_one_folder_never_claim_the_same_email() {
    let env = Env::new();
    let setup = env.open();
    let total = 60;
    for n in 0..total {
        setup
            .submit(email(&[&format!("r{n}@example.test")]))
            .unwrap();
    }
    drop(setup);
    let handles: Vec<Outbox> = (0..2).map(|_| env.open()).collect();
    let claimed: Vec<Vec<String>> = std::thread::scope(|s| {
        let workers: Vec<_> = handles
            .iter()
            .map(|outbox| {
                s.spawn(move || {
                    let mut mine = Vec::new();
                    loop {
                        let batch = outbox.claim_due(3).unwrap();
                        if batch.is_empty() {
                            return mine;
                        }
                        mine.extend(batch.into_iter().map(|c| c.id));
                    }
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let all: Vec<&String> = claimed.iter().flatten().collect();
    let unique: HashSet<&String> = all.iter().copied().collect();
    assert_eq!(
        all.len(),
        total,
        "claimed {} times for {total} emails",
        all.len()
    );
    assert_eq!(unique.len(), total);
}

#[test]
fn hold_parks_an_email_and_release_queues_it_again() {
    let env = Env::new();
    let outbox = env.open();
    let id = outbox.submit(email(&["a@example.test"])).unwrap().id;
    outbox.hold(&id).unwrap();
    assert!(outbox.claim_due(10).unwrap().is_empty());
    assert_eq!(outbox.list(Some(State::Held)).unwrap()[0].id, id);
    assert!(matches!(
        outbox.release("nope"),
        Err(OutboxError::NotFound { .. })
    ));
    outbox.release(&id).unwrap();
    assert_eq!(claim_one(&outbox).id, id);
    assert!(matches!(
        outbox.release(&id),
        Err(OutboxError::WrongState {
            state: State::Sending,
            ..
        })
    ));
}

#[test]
fn retry_failed_queues_failed_emails_now_with_refused_recipients_owed_again() {
    let env = Env::new();
    let outbox = env.open();
    let id = outbox
        .submit(email(&["a@example.test", "b@example.test"]))
        .unwrap()
        .id;
    claim_one(&outbox);
    let attempt = Attempt::permanent("smtp", "550 relay denied")
        .with_recipient("a@example.test", RecipientVerdict::Accepted, "250")
        .with_recipient("b@example.test", RecipientVerdict::RefusedForGood, "550");
    assert_eq!(outbox.record(&id, attempt).unwrap(), State::Failed);
    env.clock.advance(6 * 86_400 * Duration::from_secs(1));
    assert_eq!(outbox.retry_failed().unwrap(), 1);
    let item = claim_one(&outbox);
    assert_eq!(item.recipients_owed, ["b@example.test"]);
    // a fresh lifetime: a temporary failure now is queued, not failed
    assert_eq!(
        outbox
            .record(&id, Attempt::temporary("smtp", "451", None))
            .unwrap(),
        State::Queued
    );
    outbox.retry(&id).unwrap();
    assert_eq!(claim_one(&outbox).id, id);
    assert_eq!(
        outbox
            .record(&id, Attempt::delivered("smtp", "250"))
            .unwrap(),
        State::Delivered
    );
    assert!(matches!(
        outbox.retry(&id),
        Err(OutboxError::WrongState {
            state: State::Delivered,
            ..
        })
    ));
}

struct Scripted {
    calls: AtomicUsize,
}

impl Deliver for Scripted {
    fn deliver(&self, item: &Claimed) -> impl Future<Output = Attempt> + Send {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        let subject = item.payload["subject"].as_str().unwrap_or("").to_string();
        async move {
            match subject.as_str() {
                "later" => Attempt::temporary("smtp", "451 later", None),
                "never" => Attempt::permanent("smtp", "554 no"),
                _ => Attempt::delivered("smtp", format!("250 ok #{n}")),
            }
        }
    }
}

#[tokio::test]
async fn flush_delivers_everything_due_once_and_records_each_attempt() {
    let env = Env::new();
    let outbox = env.open();
    for subject in ["ok", "later", "never", "ok"] {
        outbox
            .submit(Submission::new(
                json!({ "subject": subject }),
                ["a@example.test"],
            ))
            .unwrap();
    }
    let not_due = outbox.submit(email(&["b@example.test"])).unwrap().id;
    outbox.hold(&not_due).unwrap();

    let deliverer = Scripted {
        calls: AtomicUsize::new(0),
    };
    let mut seen = Vec::new();
    let report = outbox
        .flush(&deliverer, |f| seen.push((f.outcome, f.state)))
        .await
        .unwrap();
    assert_eq!(
        (report.delivered, report.deferred, report.failed),
        (2, 1, 1)
    );
    assert_eq!(
        deliverer.calls.load(Ordering::SeqCst),
        4,
        "the deferred email was met twice"
    );
    assert_eq!(seen.len(), 4);
    assert!(seen.contains(&("temporary", State::Queued)));
    for s in outbox.list(None).unwrap() {
        let attempts = outbox.show(&s.id).unwrap().attempts.len();
        assert_eq!(attempts, usize::from(s.state != State::Held), "{s:?}");
    }

    // queue flush: everything queued is made due and tried again
    assert_eq!(outbox.make_all_due().unwrap(), 1);
    let report = outbox.flush(&deliverer, |_| {}).await.unwrap();
    assert_eq!(report.deferred, 1);
    assert_eq!(deliverer.calls.load(Ordering::SeqCst), 5);
}

/// Run by `two_processes_on_one_folder_never_claim_the_same_email` in child processes (this
/// test binary, re-executed); does nothing when run by the test runner.
#[test]
fn child_process_claim_worker() {
    let Some((outbox, out)) = child_outbox("OUTBOX_TEST_DIR") else {
        return;
    };
    // start together: the parent creates `go` once both children are running
    let go = Path::new(&out).with_file_name("go");
    while !go.exists() {
        std::thread::sleep(Duration::from_millis(2));
    }
    let mut mine = Vec::new();
    loop {
        let batch = outbox.claim_due(1).unwrap();
        if batch.is_empty() {
            break;
        }
        mine.extend(batch.into_iter().map(|c| c.id));
    }
    // written whole, then named: the parent reads it once it exists
    let part = Path::new(&out).with_extension("part");
    fs::write(&part, mine.join("\n")).unwrap();
    fs::rename(&part, &out).unwrap();
    // alive until the parent has both lists: a process that is gone gives its claims back,
    // and the other would claim them again
    let done = Path::new(&out).with_file_name("done");
    while !done.exists() {
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn two_processes_on_one_folder_never_claim_the_same_email() {
    let env = Env::new();
    let setup = env.open();
    let total = 80;
    for n in 0..total {
        setup
            .submit(email(&[&format!("r{n}@example.test")]))
            .unwrap();
    }
    drop(setup);
    let exe = std::env::current_exe().unwrap();
    let children: Vec<(std::process::Child, PathBuf)> = (0..2)
        .map(|n| {
            let out = env.tmp.path().join(format!("claimed-{n}"));
            let child = std::process::Command::new(&exe)
                .args(["--exact", "child_process_claim_worker", "--test-threads=1"])
                .env("OUTBOX_TEST_DIR", env.data())
                .env("OUTBOX_TEST_OUT", &out)
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap();
            (child, out)
        })
        .collect();
    // both children opened the outbox (or are about to) before either claims
    std::thread::sleep(Duration::from_millis(300));
    fs::write(env.tmp.path().join("go"), b"").unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !children.iter().all(|(_, out)| out.exists()) {
        assert!(
            std::time::Instant::now() < deadline,
            "the claiming processes did not finish within 60 s"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    fs::write(env.tmp.path().join("done"), b"").unwrap();
    let mut all = Vec::new();
    for (mut child, out) in children {
        assert!(child.wait().unwrap().success(), "a claiming process failed");
        let text = fs::read_to_string(out).unwrap();
        all.extend(text.lines().filter(|l| !l.is_empty()).map(String::from));
    }
    let unique: HashSet<&String> = all.iter().collect();
    assert_eq!(
        all.len(),
        total,
        "claimed {} times for {total} emails",
        all.len()
    );
    assert_eq!(unique.len(), total);
    // both processes ended without recording: each claim is given back once, at this open
    let outbox = env.open();
    let queued = outbox.list(Some(State::Queued)).unwrap();
    assert_eq!(queued.len(), total);
    assert!(queued.iter().all(|s| s.attempts == 1), "{queued:?}");
}

#[test]
fn an_idempotency_key_over_256_bytes_is_refused_and_nothing_is_queued() {
    let env = Env::new();
    let outbox = env.open();
    let mut sub = email(&["a@example.test"]);
    sub.idempotency_key = Some("k".repeat(257));
    let err = outbox.submit(sub).unwrap_err();
    assert!(err.to_string().contains("1 to 256 bytes"), "{err}");
    let mut sub = email(&["a@example.test"]);
    sub.idempotency_key = Some("k".repeat(256));
    outbox.submit(sub).unwrap();
    assert_eq!(outbox.list(None).unwrap().len(), 1);
}

#[test]
fn a_servers_words_are_kept_to_4000_characters_per_attempt() {
    let env = Env::new();
    let outbox = env.open();
    let id = outbox.submit(email(&["a@example.test"])).unwrap().id;
    claim_one(&outbox);
    let flood = "é".repeat(1 << 20);
    outbox
        .record(&id, Attempt::temporary("smtp", flood, None))
        .unwrap();
    let attempts = outbox.show(&id).unwrap().attempts;
    assert_eq!(attempts.len(), 1);
    assert!(attempts[0].detail.chars().count() <= 4001, "kept whole");
    assert!(attempts[0].detail.starts_with("éé"));
}

#[test]
fn a_renewed_claim_outlives_its_first_lease_and_a_lost_one_cannot_be_renewed() {
    let env = Env::new();
    let outbox = env.open();
    let id = outbox.submit(email(&["a@example.test"])).unwrap().id;
    let claimed = claim_one(&outbox);
    env.clock.advance(10 * MIN);
    let renewed = outbox.renew(&id, claimed.locked_until).unwrap().unwrap();
    assert_eq!(renewed.duration_since(env.now()).unwrap(), 15 * MIN);
    // Past the first lease, within the renewed one: still claimed, not handed to another.
    env.clock.advance(10 * MIN);
    assert!(outbox.claim_due(10).unwrap().is_empty());
    assert_eq!(outbox.show(&id).unwrap().summary.state, State::Sending);
    // The old end is no longer the claim's: a stale renewal changes nothing.
    assert_eq!(outbox.renew(&id, claimed.locked_until).unwrap(), None);

    // Not renewed again: the lease runs out, the email is claimed anew, the old holder lost it.
    env.clock.advance(10 * MIN);
    let again = claim_one(&outbox);
    assert_eq!(outbox.renew(&id, renewed).unwrap(), None);
    assert!(!outbox.hand_back(&id, renewed).unwrap());
    assert!(outbox.renew(&id, again.locked_until).unwrap().is_some());
}

#[test]
fn a_claim_handed_back_is_queued_as_it_was_without_an_attempt() {
    let env = Env::new();
    let outbox = env.open();
    let id = outbox.submit(email(&["a@example.test"])).unwrap().id;
    let claimed = claim_one(&outbox);
    assert!(outbox.hand_back(&id, claimed.locked_until).unwrap());
    let detail = outbox.show(&id).unwrap();
    assert_eq!(detail.summary.state, State::Queued);
    assert!(detail.attempts.is_empty(), "{:?}", detail.attempts);
    assert_eq!(detail.summary.attempts, 0);
    // Due at once, by the next claimant (a moment later).
    env.clock.advance(Duration::from_secs(1));
    assert_eq!(claim_one(&outbox).id, id);
    // A second hand-back of the first, stale claim changes nothing.
    assert!(!outbox.hand_back(&id, claimed.locked_until).unwrap());
}

#[test]
fn a_list_can_stop_at_its_first_emails_and_the_states_are_counted_without_listing() {
    let env = Env::new();
    let outbox = env.open();
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(outbox.submit(email(&["a@example.test"])).unwrap().id);
        env.clock.advance(Duration::from_secs(n + 1));
    }
    let first: Vec<String> = outbox
        .list_first(None, 2)
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(first, ids[..2], "the oldest two, in the list's order");
    assert_eq!(outbox.list_first(None, 100).unwrap().len(), 5);
    let claimed = outbox.claim_due(1).unwrap().pop().unwrap().id;
    outbox
        .record(&claimed, Attempt::delivered("smtp", "250"))
        .unwrap();
    let counts = outbox.count_by_state().unwrap();
    assert_eq!(counts.len(), State::ALL.len(), "every state, zero included");
    let of = |state| counts.iter().find(|(s, _)| *s == state).unwrap().1;
    assert_eq!(
        (of(State::Queued), of(State::Delivered), of(State::Failed)),
        (4, 1, 0)
    );
    assert_eq!(
        outbox.list_first(Some(State::Queued), 1).unwrap()[0].id,
        ids[1]
    );
}

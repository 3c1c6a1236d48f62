//! The crash test: `serve` killed with SIGKILL at random moments while it delivers 500 emails to
//! the real SMTP test server, restarted on the same data folder each time, until the queue is
//! empty. At the end every email reached the server at least once (none lost) and is
//! `delivered` in `GET /v1/messages`; every copy the server holds carries its email's own
//! Message-ID; and the duplicates are counted, reported and bounded by the one window the outbox
//! promises: a server's final acceptance before the commit that records it, so an email has an
//! extra copy only if a kill interrupted its delivery, and a kill makes at most one per delivery
//! in flight.
//!
//! The kills come from a seeded PRNG; the seed is printed, and `SCAN2X_CRASH_SEED=<seed>` replays
//! the same kill delays (the moments they land on depend on timing all the same).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::os::unix::process::ExitStatusExt as _;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::served::{Served, outcomes, relay};

/// How many emails are delivered through the kills.
const EMAILS: usize = 500;
/// How many kills, at least and at most (the PRNG picks).
const KILLS: (u64, u64) = (5, 8);
/// How long a started `serve` delivers before it is killed, in milliseconds, at least and at most.
const KILL_AFTER_MS: (u64, u64) = (200, 2000);
/// The deliveries one `serve` carries at once (the sender's `max_concurrent`): a kill can catch
/// at most this many emails between the server's acceptance and the commit.
const IN_FLIGHT: usize = 4;
/// How long the server may still take, after a kill, to store a message whose end it had
/// already received (the copies it holds are counted at each kill).
const SETTLE: Duration = Duration::from_millis(100);
/// How long the last `serve` may take to deliver what is left.
const DRAIN: Duration = Duration::from_secs(60);
/// The environment variable that replays a run's kill delays.
const SEED_ENV: &str = "SCAN2X_CRASH_SEED";

/// SplitMix64: a few lines, seeded, the same sequence everywhere.
struct Prng(u64);

impl Prng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `low..=high`.
    fn between(&mut self, (low, high): (u64, u64)) -> u64 {
        low + self.next() % (high - low + 1)
    }
}

impl Served {
    /// SIGKILL, as a crash: no handler runs, nothing is finished or handed back. Returns what it
    /// said before.
    fn kill9(&mut self) -> String {
        let mut child = self.child.take().expect("serve is running");
        child.kill().unwrap();
        let status = child.wait().unwrap();
        assert_eq!(
            status.signal(),
            Some(9),
            "serve ended before its kill: {status}"
        );
        self.seen.extend(self.stderr.try_iter());
        self.seen.join("\n")
    }
}

/// The subject of email `n`: what tells the copies at the server apart.
fn subject(n: usize) -> String {
    format!("crash test {n:03}")
}

fn states(list: &[Value]) -> BTreeMap<String, usize> {
    let mut count = BTreeMap::new();
    for entry in list {
        *count
            .entry(entry["state"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    count
}

#[test]
fn serve_killed_at_random_moments_delivers_every_email_and_duplicates_only_within_the_window() {
    let test =
        "serve_killed_at_random_moments_delivers_every_email_and_duplicates_only_within_the_window";
    let extra = format!("max_concurrent = {IN_FLIGHT}\nmax_per_minute = 100000\n");
    let Some((server, mail)) = relay(test, &extra) else {
        return;
    };
    let began = Instant::now();
    let seed = match std::env::var(SEED_ENV) {
        Ok(seed) => seed
            .parse()
            .unwrap_or_else(|e| panic!("{SEED_ENV}={seed:?} is not a whole number: {e}")),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    };
    let mut prng = Prng(seed);
    let replay = format!("seed {seed}; {SEED_ENV}={seed} replays the kill delays");
    let data = mail.dir().join("data");
    let mut served = Served::start(&mail, &data, &[]);
    let started = Instant::now();

    // Killed at random moments from the first submit on, restarted on the same folder each
    // time: while the API takes the emails and the worker already delivers them, then while it
    // delivers the rest. A kill comes between two requests, never during one.
    let kills = prng.between(KILLS);
    let mut next_kill = Instant::now() + Duration::from_millis(prng.between(KILL_AFTER_MS));
    let mut delivered_at_kill = Vec::new();
    let mut kill_due = |served: &mut Served, wait: bool| {
        if delivered_at_kill.len() as u64 == kills {
            return false;
        }
        if wait {
            std::thread::sleep(next_kill.saturating_duration_since(Instant::now()));
        } else if Instant::now() < next_kill {
            return true;
        }
        let said = served.kill9();
        mail.assert_no_secret_in(&said);
        std::thread::sleep(SETTLE);
        delivered_at_kill.push(server.received().len());
        *served = Served::start(&mail, &data, &[]);
        next_kill = Instant::now() + Duration::from_millis(prng.between(KILL_AFTER_MS));
        true
    };

    // Submitted through the API, each under its own idempotency key, as a client sends them.
    let mut message_ids = Vec::with_capacity(EMAILS);
    let mut ids = Vec::with_capacity(EMAILS);
    for n in 0..EMAILS {
        kill_due(&mut served, false);
        let email = json!({
            "to": [format!("r{n}@example.test")],
            "subject": subject(n),
            "text": format!("email {n} of the crash test"),
        });
        let (status, submitted) = served.post(&email, Some(&format!("crash-{n}")));
        assert_eq!(status, 201, "email {n}: {submitted}");
        ids.push(submitted["id"].as_str().unwrap().to_string());
        message_ids.push(submitted["message_id"].as_str().unwrap().to_string());
    }
    let submitting = started.elapsed();
    while kill_due(&mut served, true) {}

    // The last one delivers what is left.
    let deadline = Instant::now() + DRAIN;
    let list = loop {
        let list = served.list();
        let states = states(&list);
        if states.get("delivered") == Some(&EMAILS) {
            break list;
        }
        assert!(
            Instant::now() < deadline,
            "not all delivered within {DRAIN:?} of the last restart ({replay}): {states:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let delivering = started.elapsed();
    assert_eq!(list.len(), EMAILS, "{replay}");

    // What the server holds: every copy carries its own email's Message-ID, none is lost.
    let mut copies = vec![0usize; EMAILS];
    // Where each email's copies are in the server's order of acceptance.
    let mut arrivals = vec![Vec::new(); EMAILS];
    for (i, received) in server.received().into_iter().enumerate() {
        let parsed = received.parsed();
        let subject = parsed.subject().unwrap_or_default().to_string();
        let n = (0..EMAILS)
            .find(|&n| self::subject(n) == subject)
            .unwrap_or_else(|| panic!("a message the test did not send: {subject:?}"));
        assert_eq!(
            parsed.message_id(),
            Some(message_ids[n].as_str()),
            "a copy of email {n} with another Message-ID ({replay})"
        );
        assert_eq!(received.rcpt_tos, [format!("r{n}@example.test")]);
        copies[n] += 1;
        arrivals[n].push(i);
    }
    let lost: Vec<usize> = (0..EMAILS).filter(|&n| copies[n] == 0).collect();
    assert!(lost.is_empty(), "emails lost ({replay}): {lost:?}");

    // Each extra copy is a delivery a kill interrupted after the server took it: the email
    // carries an `interrupted` attempt for it; and a kill interrupts at most IN_FLIGHT.
    let by_id: BTreeMap<&str, &Value> = list
        .iter()
        .map(|e| (e["id"].as_str().unwrap(), e))
        .collect();
    let mut interrupted = 0;
    let mut duplicated = Vec::new();
    let mut duplicates_by_kill = vec![0usize; delivered_at_kill.len()];
    for n in 0..EMAILS {
        let entry = by_id[ids[n].as_str()];
        assert_eq!(entry["state"], "delivered", "{entry}");
        if entry["attempts"].as_u64().unwrap() <= 1 && copies[n] == 1 {
            continue;
        }
        let (status, show) = served.call("GET", &format!("/v1/messages/{}", ids[n]), "");
        assert_eq!(status, 200, "{show}");
        let outcomes = outcomes(&show);
        let kills_of_it = outcomes.iter().filter(|&&o| o == "interrupted").count();
        assert_eq!(
            outcomes.last(),
            Some(&"delivered"),
            "email {n} ({replay}): {show}"
        );
        assert!(
            copies[n] <= 1 + kills_of_it,
            "email {n} reached the server {} times but only {kills_of_it} of its deliveries \
             were interrupted ({replay}): {show}",
            copies[n]
        );
        interrupted += kills_of_it;
        if copies[n] > 1 {
            duplicated.push(format!("{} x{}", message_ids[n], copies[n]));
            // The kill that made it is the first after the server took it, and the copy
            // again came after that kill's restart.
            let first = arrivals[n][0];
            let kill = delivered_at_kill
                .iter()
                .position(|&held| first < held)
                .unwrap_or_else(|| {
                    panic!("email {n} was taken twice with no kill between ({replay}): {show}")
                });
            assert!(
                arrivals[n][1] >= delivered_at_kill[kill],
                "email {n}'s second copy came before the kill that interrupted the first \
                 ({replay}): copies at {:?}, kills at {delivered_at_kill:?}",
                arrivals[n]
            );
            duplicates_by_kill[kill] += copies[n] - 1;
        }
    }
    let duplicates: usize = copies.iter().map(|c| c - 1).sum();
    assert!(
        duplicates_by_kill.iter().all(|&d| d <= IN_FLIGHT),
        "a kill made more duplicates than the {IN_FLIGHT} deliveries a serve has in flight \
         ({replay}): {duplicates_by_kill:?}"
    );
    assert!(
        interrupted >= 1,
        "no kill caught a delivery in flight ({replay}): the kills came after the last \
         delivery, so this run tested nothing; delivered by each kill: {delivered_at_kill:?}"
    );

    let (code, said) = served.stop();
    assert_eq!(code, 0, "{said}");
    mail.assert_no_secret_in(&said);

    let line = format!(
        "crash test: {EMAILS} emails, {kills} kills ({replay}), {} delivered, {interrupted} \
         deliveries interrupted, {duplicates} duplicates (Message-IDs {duplicated:?}), by kill \
         {duplicates_by_kill:?}; at the kills the server held {delivered_at_kill:?}; submitted in {submitting:.1?}, all \
         delivered after {delivering:.1?}, {:.1?} in all",
        EMAILS - lost.len(),
        began.elapsed()
    );
    // On the real stderr: the harness shows a passing test's own output only with --nocapture.
    let _ = writeln!(std::io::stderr(), "{line}");
}

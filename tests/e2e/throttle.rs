//! Each sender's limits on deliveries from the outbox, through `serve` against a scripted SMTP
//! server that takes 1 s to accept each message and logs how many sessions were open as each
//! began: never more sessions at once than `max_concurrent`, and as many as it allows; no more
//! deliveries started in a minute than `max_per_minute`, the next one waiting its turn and, when
//! the service stops meanwhile, handed back untried (no attempt recorded, queued again).

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::Scan2xMail;
use crate::support::hostile_smtp::HostileSmtp;
use crate::support::served::{DEADLINE, Served};

/// The most sessions the slow server saw open at once.
fn most_open(server: &HostileSmtp) -> u64 {
    let log = std::fs::read_to_string(server.dir().join("sessions.log")).unwrap_or_default();
    log.lines()
        .map(|line| {
            serde_json::from_str::<Value>(line).unwrap()["open"]
                .as_u64()
                .unwrap()
        })
        .max()
        .unwrap_or(0)
}

fn email(n: usize) -> Value {
    json!({
        "to": [format!("user{n}@example.test")],
        "subject": format!("scan {n}"),
        "text": "throttled",
    })
}

/// Posts `count` emails; their ids.
fn post(served: &Served, count: usize) -> Vec<String> {
    (0..count)
        .map(|n| {
            let (status, submitted) = served.post(&email(n), None);
            assert_eq!(status, 201, "{submitted}");
            submitted["id"].as_str().unwrap().to_string()
        })
        .collect()
}

/// The states of every email in the outbox, by id.
fn states(served: &Served) -> Vec<(String, String)> {
    let mut states: Vec<(String, String)> = served
        .list()
        .iter()
        .map(|e| {
            (
                e["id"].as_str().unwrap().to_string(),
                e["state"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    states.sort();
    states
}

fn wait_delivered(served: &Served, count: usize, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let states = states(served);
        if states.iter().filter(|(_, s)| s == "delivered").count() == count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not {count} delivered within {within:?}: {states:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn deliveries_through_a_sender_never_outnumber_its_max_concurrent_and_reach_it() {
    let server = HostileSmtp::start("slow");
    let mail = Scan2xMail::new(
        &server.plaintext_settings("relay", "max_concurrent = 3\nmax_per_minute = 1000\n"),
    );
    let data = mail.dir().join("data");
    let mut served = Served::start(&mail, &data, &[]);
    let started = Instant::now();
    post(&served, 9);
    wait_delivered(&served, 9, DEADLINE);
    let took = started.elapsed();
    assert_eq!(server.data().len(), 9, "each delivered once");
    assert_eq!(most_open(&server), 3, "three at once, never four");
    // Nine emails of 1 s each, three at a time: three rounds at least.
    assert!(took >= Duration::from_secs(3), "{took:?}");
    let (code, said) = served.stop();
    assert_eq!(code, 0, "{said}");
}

#[test]
fn by_default_a_sender_carries_two_at_once() {
    let server = HostileSmtp::start("slow");
    let mail = Scan2xMail::new(&server.plaintext_settings("relay", ""));
    let data = mail.dir().join("data");
    let mut served = Served::start(&mail, &data, &[]);
    post(&served, 4);
    wait_delivered(&served, 4, DEADLINE);
    assert_eq!(most_open(&server), 2, "the default max_concurrent");
    let (code, said) = served.stop();
    assert_eq!(code, 0, "{said}");
}

#[test]
fn past_max_per_minute_an_email_waits_and_a_stop_hands_it_back_untried() {
    let server = HostileSmtp::start("slow");
    let mail = Scan2xMail::new(
        &server.plaintext_settings("relay", "max_concurrent = 4\nmax_per_minute = 2\n"),
    );
    let data = mail.dir().join("data");
    let mut served = Served::start(&mail, &data, &[]);
    let ids = post(&served, 3);
    wait_delivered(&served, 2, DEADLINE);
    // The third waits for the minute to turn: claimed, no session opened for it.
    std::thread::sleep(Duration::from_secs(3));
    let now = states(&served);
    assert_eq!(
        now.iter().filter(|(_, s)| s == "delivered").count(),
        2,
        "{now:?}"
    );
    assert_eq!(server.data().len(), 2, "the third was not sent");
    let waiting: Vec<&String> = now
        .iter()
        .filter(|(_, s)| s != "delivered")
        .map(|(id, _)| id)
        .collect();
    assert_eq!(waiting.len(), 1, "{now:?}");
    let waiting = waiting[0].clone();
    assert!(ids.contains(&waiting));
    assert_eq!(
        now.iter().find(|(id, _)| *id == waiting).unwrap().1,
        "sending",
        "claimed while it waits its turn"
    );

    let stopped = Instant::now();
    let (code, said) = served.stop();
    assert_eq!(code, 0, "{said}");
    assert!(
        stopped.elapsed() < Duration::from_secs(20),
        "the stop did not wait for the minute: {:?}",
        stopped.elapsed()
    );
    // Handed back: queued, due, and no attempt recorded for it.
    let show = mail.run([
        "--data-dir",
        data.to_str().unwrap(),
        "queue",
        "show",
        &waiting,
        "--json",
    ]);
    assert_eq!(show.code, 0, "{show}");
    let shown: Value = serde_json::from_str(&show.stdout).unwrap();
    assert_eq!(shown["state"], "queued", "{shown}");
    assert_eq!(shown["attempts"], json!([]), "{shown}");
    assert_eq!(server.data().len(), 2);
}

//! `serve` end to end: the real binary listening on 127.0.0.1 (a port it picks), spoken to over
//! plain HTTP/1.1 (`support::served`): an email posted is delivered to the real SMTP
//! server by the service's own worker; a missing or wrong token, malformed JSON, a wrong type,
//! an unknown field, a body over the bound and an attachment outside the allowed folders are
//! each refused with the error shape and nothing queued, the service still answering; a
//! repeated idempotency key gives the same id; SIGTERM exits 0 and loses nothing, a delivery in
//! flight finishing and its attempt recorded first. The settings' endpoints answer what
//! `check`, `plugins`, `route` and `test` print, `/v1/send` sends without the queue (503 for a
//! server down), `/metrics` counts a delivery, and a reload refuses a broken file (the old
//! senders still delivering) and takes a good one (the next email to the new server). Three
//! emails through a Graph sender take one token: it stays warm across the emails. The settings'
//! `[service]` table gives the address and the attachment folders; the flags replace them.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::graph_server::{CLIENT_SECRET, CLIENT_SECRET_ENV, GraphSender, GraphServer};
use crate::support::hostile_smtp::HostileSmtp;
use crate::support::ports::free_port;
use crate::support::served::{DEADLINE, Served, http, http_text, outcomes, relay};
use crate::support::{
    PASSWORD, PASSWORD_ENV, Scan2xMail, SmtpSender, SmtpServer, SmtpServerOptions, USER,
};

fn email() -> Value {
    json!({
        "to": ["user@example.test"],
        "subject": "Scan from the service",
        "text": "posted to /v1/messages",
    })
}

/// The settings of a sender whose server is down, with the data folder beside them.
fn down() -> (Scan2xMail, PathBuf) {
    let mail = Scan2xMail::new(&SmtpSender::new(free_port()).named("relay").toml())
        .env(PASSWORD_ENV, PASSWORD)
        .credentials(USER, PASSWORD);
    let data = mail.dir().join("data");
    (mail, data)
}

/// The error of an answer: its kind and message, asserting the shape.
#[track_caller]
fn error_of(answer: &Value) -> (&str, &str) {
    let error = &answer["error"];
    (
        error["kind"]
            .as_str()
            .unwrap_or_else(|| panic!("no error kind: {answer}")),
        error["message"]
            .as_str()
            .unwrap_or_else(|| panic!("no error message: {answer}")),
    )
}

#[test]
fn an_email_posted_is_delivered_by_the_service_with_one_attempt() {
    let test = "an_email_posted_is_delivered_by_the_service_with_one_attempt";
    let Some((server, mail)) = relay(test, "") else {
        return;
    };
    let data = mail.dir().join("data");
    let mut served = Served::start(&mail, &data, &[]);

    let (status, submitted) = served.post(&email(), None);
    assert_eq!(status, 201, "{submitted}");
    assert_eq!(submitted["duplicate"], false);
    let id = submitted["id"].as_str().unwrap().to_string();
    let message_id = submitted["message_id"].as_str().unwrap().to_string();

    let show = served.wait_delivered(&id);
    let attempts = show["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1, "{show}");
    assert_eq!(attempts[0]["outcome"], "delivered");
    assert_eq!(attempts[0]["sender"], "relay");
    let received = server.only_received();
    assert_eq!(received.rcpt_tos, ["user@example.test"]);
    assert_eq!(received.parsed().message_id(), Some(message_id.as_str()));

    // The metrics say it: one email delivered, one attempt, one delivery time.
    let bearer = served.bearer();
    let (status, metrics) = http_text(
        served.port,
        "GET",
        "/metrics",
        &[("Authorization", &bearer)],
        b"",
    );
    assert_eq!(status, 200, "{metrics}");
    for line in [
        "scan2x_mail_queue_messages{state=\"delivered\"} 1",
        "scan2x_mail_queue_messages{state=\"queued\"} 0",
        "scan2x_mail_attempts_total{sender=\"relay\",outcome=\"delivered\"} 1",
        "scan2x_mail_delivery_seconds_count 1",
        "scan2x_mail_delivery_seconds_bucket{le=\"+Inf\"} 1",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "no {line:?} in\n{metrics}"
        );
    }
    let (status, _) = http_text(served.port, "GET", "/metrics", &[], b"");
    assert_eq!(status, 401, "the metrics need the token");

    let (status, missing) = served.call("GET", "/v1/messages/no-such-id", "");
    assert_eq!(
        (status, error_of(&missing).0),
        (404, "not-found"),
        "{missing}"
    );

    let (code, said) = served.stop();
    assert_eq!(code, 0, "{said}");
    mail.assert_no_secret_in(&said);
    assert!(said.contains(&id) && said.contains("delivered"), "{said}");
}

#[test]
fn bad_requests_are_refused_with_the_error_shape_and_nothing_is_queued() {
    let (mail, data) = down();
    let allowed = mail.dir().join("allowed");
    std::fs::create_dir(&allowed).unwrap();
    let outside = mail.write_file("outside.pdf", b"%PDF-1.4 not for the service");
    #[cfg(unix)]
    std::os::unix::fs::symlink(&outside, allowed.join("link.pdf")).unwrap();
    let allowed_arg = allowed.to_string_lossy().into_owned();
    let served = Served::start(&mail, &data, &["--attachments-from", &allowed_arg]);
    let body = email().to_string();

    // No token, a wrong one, another scheme.
    let wrong = format!("Bearer {}", "0".repeat(64));
    for headers in [
        vec![],
        vec![("Authorization", wrong.as_str())],
        vec![("Authorization", "Basic YWxpY2U6cGFzcw==")],
    ] {
        let (status, answer) = http(
            served.port,
            "POST",
            "/v1/messages",
            &headers,
            body.as_bytes(),
        );
        assert_eq!(
            (status, error_of(&answer).0),
            (401, "unauthorized"),
            "{answer}"
        );
        let (status, _) = http(served.port, "GET", "/v1/messages", &headers, b"");
        assert_eq!(status, 401);
    }

    // Malformed JSON, a wrong type, an unknown field: 400, the problem named.
    for (bad, says, field) in [
        (
            r#"{"to": ["user@example.test"], "subject": "#.to_string(),
            "line 1",
            None,
        ),
        (
            r#"{"to": "user@example.test"}"#.to_string(),
            "expected a sequence",
            Some("to"),
        ),
        (
            r#"{"to": ["user@example.test"], "priority": "high"}"#.to_string(),
            "unknown field `priority`",
            Some("priority"),
        ),
    ] {
        let (status, answer) = served.call("POST", "/v1/messages", &bad);
        let (kind, message) = error_of(&answer);
        assert_eq!((status, kind), (400, "usage"), "{bad}: {answer}");
        assert!(message.contains(says), "{bad}: {message}");
        if let Some(field) = field {
            assert_eq!(answer["error"]["field"], field, "{answer}");
        }
        served.assert_up();
    }

    // A body over the bound (1 MiB).
    let huge = json!({"to": ["user@example.test"], "text": "x".repeat(1024 * 1024 + 100)});
    let (status, answer) = served.call("POST", "/v1/messages", &huge.to_string());
    assert_eq!(
        (status, error_of(&answer).0),
        (413, "too-large"),
        "{answer}"
    );
    served.assert_up();

    // Attachments outside the allowed folder: directly, through `..`, through a symlink.
    let dotdot = allowed.join("..").join("outside.pdf");
    let mut outside_paths = vec![outside.clone(), dotdot];
    #[cfg(unix)]
    outside_paths.push(allowed.join("link.pdf"));
    for path in &outside_paths {
        let mut with = email();
        with["attachments"] = json!([path]);
        let (status, answer) = served.post(&with, None);
        let (kind, message) = error_of(&answer);
        assert_eq!((status, kind), (400, "usage"), "{answer}");
        assert!(
            message.contains(&*path.to_string_lossy()),
            "names the path: {message}"
        );
        assert_eq!(answer["error"]["field"], "attachments");
    }
    // A bad address is the message's fault: 422, as `submit` exits 4.
    let (status, answer) = served.post(&json!({"to": ["not an address"], "subject": "x"}), None);
    assert_eq!(
        (status, error_of(&answer).0),
        (422, "invalid-message"),
        "{answer}"
    );

    assert!(
        served.list().is_empty(),
        "nothing queued by a refused request"
    );
    served.assert_up();

    // An attachment inside the folder is taken; the same key twice is the same email.
    let inside = allowed.join("scan.pdf");
    std::fs::write(&inside, b"%PDF-1.4 scan").unwrap();
    let mut with = email();
    with["attachments"] = json!([inside]);
    let (first, one) = served.post(&with, Some("job-42"));
    assert_eq!(first, 201, "{one}");
    let (again, two) = served.post(&with, Some("job-42"));
    assert_eq!(again, 200, "{two}");
    assert_eq!(two["duplicate"], true);
    assert_eq!(one["id"], two["id"]);
    assert_eq!(one["message_id"], two["message_id"]);
    let listed = served.list();
    assert_eq!(listed.len(), 1, "{listed:?}");
    let (_, show) = served.call(
        "GET",
        &format!("/v1/messages/{}", one["id"].as_str().unwrap()),
        "",
    );
    assert_eq!(show["attachments"][0]["name"], "scan.pdf", "{show}");
}

#[test]
fn sigterm_stops_the_service_with_exit_0_and_loses_nothing() {
    let (mail, data) = down();
    let mut served = Served::start(&mail, &data, &[]);
    let (status, submitted) = served.post(&email(), None);
    assert_eq!(status, 201, "{submitted}");
    let id = submitted["id"].as_str().unwrap().to_string();
    let (code, said) = served.stop();
    assert_eq!(code, 0, "{said}");
    mail.assert_no_secret_in(&said);

    let data_arg = data.to_string_lossy().into_owned();
    let run = mail.run(["--data-dir", data_arg.as_str(), "queue", "list", "--json"]);
    run.assert_code(0);
    let listed = run.json();
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 1, "{run}");
    assert_eq!(listed[0]["id"], id.as_str());
    assert_eq!(
        listed[0]["state"], "queued",
        "queued for a later try, not lost: {run}"
    );
}

#[test]
fn sigterm_during_a_delivery_lets_it_finish_and_records_its_attempt() {
    // A server that stops reading the message: the delivery in flight ends, temporary, at the
    // SMTP data bound (scaled down), after SIGTERM has arrived.
    let server = HostileSmtp::start("stall-reading-data");
    let mail = server.plaintext_sender();
    let data = mail.dir().join("data");
    let folder = mail.dir().join("scans");
    std::fs::create_dir(&folder).unwrap();
    // Far more than the loopback socket buffers hold, so the writes block.
    let scan: Vec<u8> = (0..24u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let attachment = folder.join("scan.pdf");
    std::fs::write(&attachment, scan).unwrap();
    let folder_arg = folder.to_string_lossy().into_owned();
    let mut served = Served::start(&mail, &data, &["--attachments-from", &folder_arg]);
    let mut with = email();
    with["attachments"] = json!([attachment]);
    let (status, submitted) = served.post(&with, None);
    assert_eq!(status, 201, "{submitted}");
    let id = submitted["id"].as_str().unwrap().to_string();

    // In flight: the plugin has begun the message (the server stalls after DATA). A delivery
    // claimed but not yet begun would be handed back untried instead.
    let deadline = Instant::now() + DEADLINE;
    while !server.dir().join("stalled.log").exists() {
        let (_, show) = served.call("GET", &format!("/v1/messages/{id}"), "");
        assert!(
            show["state"] != "delivered" && show["state"] != "failed" && Instant::now() < deadline,
            "the delivery should be in flight: {show}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let (_, show) = served.call("GET", &format!("/v1/messages/{id}"), "");
    assert_eq!(show["state"], "sending", "{show}");
    let (code, said) = served.stop();
    assert_eq!(code, 0, "{said}");
    assert!(said.contains(&id) && said.contains("temporary"), "{said}");

    let data_arg = data.to_string_lossy().into_owned();
    let run = mail.run([
        "--data-dir",
        data_arg.as_str(),
        "queue",
        "show",
        &id,
        "--json",
    ]);
    run.assert_code(0);
    let show = run.json();
    assert_eq!(
        show["state"], "queued",
        "handed back for a later try: {run}"
    );
    let outcomes = outcomes(&show);
    assert_eq!(
        outcomes,
        ["temporary"],
        "the attempt in flight was recorded: {run}"
    );
}

#[test]
fn the_settings_endpoints_answer_what_the_commands_print() {
    let test = "the_settings_endpoints_answer_what_the_commands_print";
    let Some((server, mail)) = relay(test, "") else {
        return;
    };
    let data = mail.dir().join("data");
    let mut served = Served::start(&mail, &data, &[]);

    for (path, command) in [
        ("/v1/senders", vec!["check", "--json"]),
        ("/v1/plugins", vec!["plugins", "--json"]),
        (
            "/v1/route?event=saved-scan-copy&job=Scan%201",
            vec![
                "route",
                "--json",
                "--event",
                "saved-scan-copy",
                "--job",
                "Scan 1",
            ],
        ),
    ] {
        let run = mail.run(&command);
        let (status, answer) = served.call("GET", path, "");
        assert_eq!(status, 200, "{path}: {answer}");
        assert_eq!(answer, run.json(), "{path} is `{}`", command.join(" "));
    }
    // Without the token, none of them.
    for (method, path) in [
        ("GET", "/v1/senders"),
        ("GET", "/v1/plugins"),
        ("GET", "/v1/route"),
        ("POST", "/v1/senders/relay/test"),
        ("POST", "/v1/send"),
    ] {
        let (status, answer) = http(served.port, method, path, &[], b"{}");
        assert_eq!(
            (status, error_of(&answer).0),
            (401, "unauthorized"),
            "{path}"
        );
    }
    // A job recipient the sender may not take: refused as `route` refuses it (exit 3).
    let (status, answer) = served.call("GET", "/v1/route?job_recipient=a%40example.test", "");
    let (kind, message) = error_of(&answer);
    assert_eq!((status, kind), (500, "invalid-settings"), "{answer}");
    assert!(message.contains("allow_job_recipients"), "{message}");
    let (status, answer) = served.call("GET", "/v1/route?job_source_sender=x", "");
    assert_eq!((status, error_of(&answer).0), (400, "usage"), "{answer}");
    assert_eq!(answer["error"]["field"], "job_source_sender");

    let (status, tested) = served.call("POST", "/v1/senders/relay/test", "");
    assert_eq!(status, 200, "{tested}");
    let run = mail.run(["test", "relay", "--json"]);
    assert_eq!(
        (&tested["sender"], &tested["plugin"], &tested["ok"]),
        (&run.json()["sender"], &run.json()["plugin"], &json!(true))
    );
    let (status, answer) = served.call("POST", "/v1/senders/nobody/test", "");
    assert_eq!(
        (status, error_of(&answer).0),
        (404, "not-found"),
        "{answer}"
    );
    assert!(error_of(&answer).1.contains("relay"), "{answer}");

    // Sent now, without the queue.
    let (status, sent) = served.call("POST", "/v1/send", &email().to_string());
    assert_eq!(status, 200, "{sent}");
    assert_eq!(sent["sender"], "relay", "{sent}");
    assert_eq!(
        sent["receipt"]["accepted"],
        json!(["user@example.test"]),
        "{sent}"
    );
    let received = server.only_received();
    assert_eq!(received.rcpt_tos, ["user@example.test"]);
    let reported = sent["message_id"].as_str().unwrap();
    assert_eq!(
        received.parsed().message_id(),
        Some(reported.trim_start_matches('<').trim_end_matches('>'))
    );
    assert!(served.list().is_empty(), "nothing queued by a send");
    let (status, answer) = served.call("POST", "/v1/send", r#"{"to": ["not an address"]}"#);
    assert_eq!(
        (status, error_of(&answer).0),
        (422, "invalid-message"),
        "{answer}"
    );

    let (code, said) = served.stop();
    assert_eq!(code, 0, "{said}");
    mail.assert_no_secret_in(&said);
}

#[test]
fn a_send_to_a_server_that_is_down_is_503_with_the_not_sent_report() {
    let (mail, data) = down();
    let served = Served::start(&mail, &data, &[]);
    let (status, answer) = served.call("POST", "/v1/send", &email().to_string());
    assert_eq!(
        (status, error_of(&answer).0),
        (503, "temporary"),
        "{answer}"
    );
    assert_eq!(answer["sender"], "relay", "{answer}");
    assert_eq!(
        answer["attempts"].as_array().map(Vec::len),
        Some(1),
        "{answer}"
    );
    assert!(served.list().is_empty(), "nothing queued by a send");
}

impl Served {
    /// Posts `email()` and waits until it is delivered.
    fn deliver_one(&self) {
        let (status, submitted) = self.post(&email(), None);
        assert_eq!(status, 201, "{submitted}");
        self.wait_delivered(submitted["id"].as_str().unwrap());
    }
}

#[test]
fn a_reload_refuses_a_broken_file_and_takes_a_good_one() {
    let test = "a_reload_refuses_a_broken_file_and_takes_a_good_one";
    let options = || SmtpServerOptions::new().starttls().user(USER, PASSWORD);
    let Some(first) = SmtpServer::start_or_skip(test, options()) else {
        return;
    };
    let Some(second) = SmtpServer::start_or_skip(test, options()) else {
        return;
    };
    let sender = |server: &SmtpServer, name: &str| {
        SmtpSender::new(server.starttls_port())
            .named(name)
            .ca_file(&server.ca_file())
            .toml()
    };
    let mail = Scan2xMail::new(&sender(&first, "relay"))
        .env(PASSWORD_ENV, PASSWORD)
        .credentials(USER, PASSWORD);
    let data = mail.dir().join("data");
    let mut served = Served::start(&mail, &data, &[]);

    // A broken file: refused by SIGHUP (said on stderr) and by the API (422, the errors said).
    std::fs::write(mail.settings_path(), "[[senders]\nname = ").unwrap();
    served.hang_up();
    served.wait_said("the settings were not reloaded");
    let (status, answer) = served.call("POST", "/v1/reload", "");
    assert_eq!(
        (status, error_of(&answer).0),
        (422, "invalid-settings"),
        "{answer}"
    );
    served.deliver_one();
    assert_eq!(first.received().len(), 1, "the old senders keep serving");

    // Fixed, pointing at the second server: the next email goes there.
    std::fs::write(mail.settings_path(), sender(&second, "relay2")).unwrap();
    let (status, answer) = served.call("POST", "/v1/reload", "");
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer, json!({"reloaded": true, "senders": ["relay2"]}));
    served.deliver_one();
    assert_eq!(second.received().len(), 1);
    assert_eq!(first.received().len(), 1);

    // SIGHUP with a good file is said too.
    served.hang_up();
    served.wait_said("settings reloaded: senders relay2");
    let (code, said) = served.stop();
    assert_eq!(code, 0, "{said}");
    mail.assert_no_secret_in(&said);
}

#[test]
fn the_graph_token_stays_warm_across_the_emails_serve_delivers() {
    let server = GraphServer::start();
    let sender = GraphSender::new(&server);
    // One delivery at a time, so no two first sends race for a token.
    let mail = Scan2xMail::new(&format!("{}max_concurrent = 1\n", sender.toml()))
        .secrets_issued_in(sender.issued_secrets.clone())
        .env(CLIENT_SECRET_ENV, CLIENT_SECRET)
        .secret(CLIENT_SECRET);
    let data = mail.dir().join("data");
    let mut served = Served::start(&mail, &data, &[]);
    for _ in 0..3 {
        served.deliver_one();
    }
    assert_eq!(server.count("sendMail"), 3, "{}", server.requests_text());
    assert_eq!(
        server.count("token"),
        1,
        "one token for the three emails: {}",
        server.requests_text()
    );
    let (code, said) = served.stop();
    assert_eq!(code, 0, "{said}");
    mail.assert_no_secret_in(&said);
}

#[test]
fn the_service_table_gives_the_address_and_the_folders_and_the_command_line_replaces_them() {
    let port = free_port();
    let settings = format!(
        "{}\n[service]\nlisten = \"127.0.0.1:{port}\"\nattachments_from = [\"scans\"]\n",
        SmtpSender::new(free_port()).named("relay").toml()
    );
    let mail = Scan2xMail::new(&settings)
        .env(PASSWORD_ENV, PASSWORD)
        .credentials(USER, PASSWORD);
    let scans = mail.dir().join("scans");
    std::fs::create_dir(&scans).unwrap();
    std::fs::write(scans.join("scan.pdf"), b"%PDF-1.4 a scan").unwrap();
    std::fs::write(mail.dir().join("elsewhere.pdf"), b"%PDF-1.4 not a scan").unwrap();
    let data = mail.dir().join("data");

    // Without --listen: the settings' address.
    let data_arg = data.to_string_lossy().into_owned();
    let mut child = mail.spawn(["--data-dir", data_arg.as_str(), "serve"]);
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stderr.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(
        line.trim_end(),
        format!("listening on http://127.0.0.1:{port}")
    );

    // The settings' folders: a scan inside is taken, a file beside them is not.
    let served = Served::start(&mail, &data, &[]);
    let mut inside = email();
    inside["attachments"] = json!([scans.join("scan.pdf")]);
    let (status, answer) = served.post(&inside, None);
    assert_eq!(status, 201, "{answer}");
    let mut outside = email();
    outside["attachments"] = json!([mail.dir().join("elsewhere.pdf")]);
    let (status, answer) = served.post(&outside, None);
    assert_eq!(status, 400, "{answer}");
    let (_, message) = error_of(&answer);
    assert!(
        message.contains("outside the folders") && message.contains(&*scans.to_string_lossy()),
        "{message}"
    );
    drop(served);

    // --attachments-from replaces them.
    let other = mail.dir().join("other");
    std::fs::create_dir(&other).unwrap();
    let other_arg = other.to_string_lossy().into_owned();
    let served = Served::start(&mail, &data, &["--attachments-from", &other_arg]);
    let (status, answer) = served.post(&inside, None);
    assert_eq!(
        status, 400,
        "the settings' folder is not taken any more: {answer}"
    );
}

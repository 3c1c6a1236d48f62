//! Sender choice end to end: several SMTP senders, each against its own real test server, and the
//! email lands where the routing rules say — or the send fails with the reason. Failover tries
//! the next sender only when asked to and only for temporary failures.

use serde_json::Value;

use crate::support::ports::free_port;
use crate::support::{
    PASSWORD, PASSWORD_ENV, Scan2xMail, SmtpSender, SmtpServer, SmtpServerOptions, USER,
};

fn start(test: &str) -> Option<SmtpServer> {
    SmtpServer::start_or_skip(
        test,
        SmtpServerOptions::new().starttls().user(USER, PASSWORD),
    )
}

/// A sender table for `server` (or a closed port), with extra host-owned keys.
fn sender(name: &str, port: u16, ca: &std::path::Path, extra: &str) -> String {
    format!(
        "{}{extra}\n",
        SmtpSender::new(port).named(name).ca_file(ca).toml()
    )
}

fn scan2x(settings: &str) -> Scan2xMail {
    Scan2xMail::new(settings)
        .env(PASSWORD_ENV, PASSWORD)
        .credentials(USER, PASSWORD)
}

fn attempts(json: &Value) -> Vec<(String, String)> {
    json["attempts"]
        .as_array()
        .unwrap_or_else(|| panic!("no attempts in {json}"))
        .iter()
        .map(|a| {
            (
                a["sender"].as_str().unwrap().to_string(),
                a["result"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn a_pin_request_goes_through_the_preferred_sender() {
    let test = "a_pin_request_goes_through_the_preferred_sender";
    let (Some(office), Some(backup)) = (start(test), start(test)) else {
        return;
    };
    let settings = sender("office", office.starttls_port(), &office.ca_file(), "")
        + &sender(
            "backup",
            backup.starttls_port(),
            &backup.ca_file(),
            "preferred = true",
        );
    let run = scan2x(&settings).run([
        "send",
        "--json",
        "--event",
        "pin-request",
        "--to",
        "user@example.test",
        "--subject",
        "Your PIN",
        "--text",
        "1234",
    ]);
    run.assert_code(0);
    assert_eq!(run.json()["sender"], "backup", "{run}");
    assert_eq!(backup.only_received().rcpt_tos, ["user@example.test"]);
    assert!(
        office.received().is_empty(),
        "the non-preferred server got mail"
    );
}

#[test]
fn job_recipients_go_only_through_a_sender_that_allows_them() {
    let test = "job_recipients_go_only_through_a_sender_that_allows_them";
    let (Some(office), Some(jobs)) = (start(test), start(test)) else {
        return;
    };
    let settings = sender(
        "office",
        office.starttls_port(),
        &office.ca_file(),
        "preferred = true",
    ) + &sender(
        "jobs",
        jobs.starttls_port(),
        &jobs.ca_file(),
        "allow_job_recipients = true",
    );
    let mail = scan2x(&settings);
    let run = mail.run([
        "send",
        "--json",
        "--job",
        "Invoices",
        "--job-recipient",
        "team@example.test",
        "--to",
        "scanner-user@example.test",
        "--subject",
        "Invoices scanned",
        "--text",
        "attached",
    ]);
    run.assert_code(0);
    let json = run.json();
    assert_eq!(json["sender"], "jobs", "{run}");
    assert_eq!(json["job"]["name"], "Invoices", "{run}");
    let received = jobs.only_received();
    assert_eq!(
        received.rcpt_tos,
        ["scanner-user@example.test", "team@example.test"]
    );
    assert!(office.received().is_empty());

    // The same email without job recipients goes the usual way: the preferred sender.
    mail.run([
        "send",
        "--to",
        "scanner-user@example.test",
        "--subject",
        "Own copy",
        "--text",
        "x",
    ])
    .assert_code(0);
    assert_eq!(office.received().len(), 1);
}

#[test]
fn a_job_source_sender_is_used_only_with_allow_job_source() {
    let test = "a_job_source_sender_is_used_only_with_allow_job_source";
    let (Some(office), Some(dept)) = (start(test), start(test)) else {
        return;
    };
    let args = [
        "send",
        "--json",
        "--job",
        "HR scans",
        "--job-source",
        "dept",
        "--to",
        "hr@example.test",
        "--subject",
        "Scan",
        "--text",
        "x",
    ];
    // Without allow_job_source the job's choice is set aside, and `route` says why.
    let settings = sender(
        "office",
        office.starttls_port(),
        &office.ca_file(),
        "preferred = true",
    ) + &sender("dept", dept.starttls_port(), &dept.ca_file(), "");
    let mail = scan2x(&settings);
    let route = mail.run(["route", "--json", "--job-source", "dept"]);
    route.assert_code(0);
    let json = route.json();
    assert_eq!(json["chosen"], "office", "{route}");
    let dept_verdict = &json["senders"][1];
    assert_eq!(dept_verdict["sender"], "dept");
    assert!(
        dept_verdict["reason"]
            .as_str()
            .unwrap()
            .contains("allow_job_source is off"),
        "{route}"
    );
    mail.run(args).assert_code(0);
    assert_eq!(office.received().len(), 1);
    assert!(dept.received().is_empty());

    // With allow_job_source the job's sender carries it.
    let settings = sender(
        "office",
        office.starttls_port(),
        &office.ca_file(),
        "preferred = true",
    ) + &sender(
        "dept",
        dept.starttls_port(),
        &dept.ca_file(),
        "allow_job_source = true",
    );
    let run = scan2x(&settings).run(args);
    run.assert_code(0);
    assert_eq!(run.json()["sender"], "dept", "{run}");
    assert_eq!(dept.received().len(), 1);
    assert_eq!(office.received().len(), 1, "office got a second message");
}

#[test]
fn a_queue_notification_and_a_named_sender_go_where_asked() {
    let test = "a_queue_notification_and_a_named_sender_go_where_asked";
    let (Some(office), Some(other)) = (start(test), start(test)) else {
        return;
    };
    let settings = sender("office", office.starttls_port(), &office.ca_file(), "")
        + &sender("other", other.starttls_port(), &other.ca_file(), "");
    let mail = scan2x(&settings);
    // No preferred sender: the first SMTP sender in the file.
    let run = mail.run([
        "send",
        "--json",
        "--event",
        "queue-notification",
        "--to",
        "user@example.test",
        "--subject",
        "2 drafts left",
        "--text",
        "x",
    ]);
    run.assert_code(0);
    assert_eq!(run.json()["event"], "queue-notification");
    assert_eq!(office.received().len(), 1);
    // --sender overrides the rules.
    mail.run([
        "send",
        "--sender",
        "other",
        "--to",
        "user@example.test",
        "--subject",
        "x",
        "--text",
        "x",
    ])
    .assert_code(0);
    assert_eq!(other.received().len(), 1);
    // An unknown sender is a settings error naming the senders there are.
    let run = mail.run([
        "send",
        "--sender",
        "nope",
        "--to",
        "user@example.test",
        "--subject",
        "x",
        "--text",
        "x",
    ]);
    run.assert_code(3);
    assert!(
        run.stderr.contains("no sender named 'nope'") && run.stderr.contains("office, other"),
        "{run}"
    );
}

#[test]
fn no_eligible_sender_fails_with_each_senders_reason() {
    let test = "no_eligible_sender_fails_with_each_senders_reason";
    let Some(office) = start(test) else {
        return;
    };
    let settings = sender(
        "office",
        office.starttls_port(),
        &office.ca_file(),
        "preferred = true",
    );
    let mail = scan2x(&settings);
    for command in ["route", "send"] {
        let run = mail.run([
            command,
            "--job-recipient",
            "team@example.test",
            "--to",
            "a@example.test",
            "--subject",
            "x",
        ]);
        run.assert_code(3);
        assert!(
            run.stderr.contains("office: the email has recipients from the job configuration and allow_job_recipients is off"),
            "{run}"
        );
    }
    assert!(office.received().is_empty());
}

#[test]
fn failover_carries_the_email_through_the_next_sender_when_the_preferred_is_down() {
    let test = "failover_carries_the_email_through_the_next_sender_when_the_preferred_is_down";
    let Some(backup) = start(test) else {
        return;
    };
    let down = free_port();
    let senders = sender("office", down, &backup.ca_file(), "preferred = true")
        + &sender("backup", backup.starttls_port(), &backup.ca_file(), "");
    let args = [
        "send",
        "--json",
        "--to",
        "user@example.test",
        "--subject",
        "Scan",
        "--text",
        "x",
    ];

    let run = scan2x(&format!("failover = true\n{senders}")).run(args);
    run.assert_code(0);
    let json = run.json();
    assert_eq!(json["sender"], "backup", "{run}");
    assert_eq!(
        attempts(&json),
        [
            ("office".to_string(), "temporary".to_string()),
            ("backup".to_string(), "sent".to_string())
        ]
    );
    assert_eq!(backup.only_received().rcpt_tos, ["user@example.test"]);

    // Off by default: the temporary failure is the answer.
    let run = scan2x(&senders).run(args);
    run.assert_code(7);
    assert_eq!(
        attempts(&run.json()),
        [("office".to_string(), "temporary".to_string())]
    );
    assert_eq!(
        backup.received().len(),
        1,
        "failover happened although it is off"
    );
}

#[test]
fn failover_does_not_retry_a_permanent_rejection() {
    let test = "failover_does_not_retry_a_permanent_rejection";
    let (Some(office), Some(backup)) = (start(test), start(test)) else {
        return;
    };
    let settings = format!(
        "failover = true\n{}{}",
        sender(
            "office",
            office.starttls_port(),
            &office.ca_file(),
            "preferred = true"
        ),
        sender("backup", backup.starttls_port(), &backup.ca_file(), "")
    );
    let run = scan2x(&settings).run([
        "send",
        "--json",
        "--to",
        "nobody@refused.test",
        "--subject",
        "x",
        "--text",
        "x",
    ]);
    run.assert_code(6);
    assert_eq!(
        attempts(&run.json()),
        [("office".to_string(), "rejected".to_string())]
    );
    assert!(backup.received().is_empty());
}

#[test]
fn a_message_file_hands_over_content_job_and_attachments() {
    let test = "a_message_file_hands_over_content_job_and_attachments";
    let (Some(office), Some(jobs)) = (start(test), start(test)) else {
        return;
    };
    let settings = sender(
        "office",
        office.starttls_port(),
        &office.ca_file(),
        "preferred = true",
    ) + &sender(
        "jobs",
        jobs.starttls_port(),
        &jobs.ca_file(),
        "allow_job_recipients = true",
    );
    let mail = scan2x(&settings);
    let scan: Vec<u8> = (0..50_000u32).map(|i| (i * 7 % 256) as u8).collect();
    mail.write_file("scan.pdf", &scan);
    let message = mail.write_file(
        "message.json",
        r#"{
            "event": "job-output",
            "to": ["Scanner User <user@example.test>"],
            "subject": "Scan from the message file",
            "text": "see attachment",
            "attachments": [{"path": "scan.pdf", "filename": "Lieferschein.pdf"}],
            "job": {"name": "Delivery notes", "recipients": ["archive@example.test"]}
        }"#,
    );
    let run = mail.run(["send", "--json", "--message", message.to_str().unwrap()]);
    run.assert_code(0);
    assert_eq!(run.json()["sender"], "jobs", "{run}");
    let received = jobs.only_received();
    assert_eq!(
        received.rcpt_tos,
        ["user@example.test", "archive@example.test"]
    );
    let parsed = received.parsed();
    assert_eq!(parsed.subject(), Some("Scan from the message file"));
    let attachment = parsed.attachments().next().expect("an attachment");
    use mail_parser::MimeHeaders;
    assert_eq!(attachment.attachment_name(), Some("Lieferschein.pdf"));
    assert_eq!(attachment.contents(), scan.as_slice());
}

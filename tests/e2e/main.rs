//! End-to-end tests of `scan2x-mail`: the real binary, its built-in SMTP plugin, and real mail
//! servers on 127.0.0.1 — the project's own aiosmtpd test server (`tests/servers/`).
//!
//! | module | claims about |
//! |---|---|
//! | [`graph`] | the Microsoft Graph sender against the Graph stand-in: sendMail, a 30 MB upload session, token reuse, Microsoft's refusals, the sandbox |
//! | [`imap`] | the IMAP sender against Dovecot: the message placed intact and \Seen in the right folder; its failures |
//! | [`imap_faults`] | APPEND's faults against a scripted IMAP server: an answer lost after the whole literal is `uncertain`, a literal cut off is `temporary`; the call limit while awaiting the answer |
//! | [`send`] | `send`: what arrives at the server, per-recipient refusals, exit codes |
//! | [`test_settings`] | `test` ("Test SMTP Settings"): success sends nothing; auth, network and TLS failures |
//! | [`tls`] | certificates are verified on every transport and mode: no `ca_file`, another CA, a leaf for another name, an expired leaf — exit 3 naming `ca_file` before any credential reaches the server |
//! | [`settings`] | settings-file errors: exit 3, the key and the line named |
//! | [`leaks`] | servers that echo secrets, plugins that try to read or spread them or to make the host hold their memory or forge its output |
//! | [`limits`] | the CPU limit counts CPU, not waiting; 10 000 recipients and 100 attachments within the default limit |
//! | [`plugins`] | `plugins`: the built-in SMTP plugin and its settings |
//! | [`cache`] | precompiled plugins: compiled once, then loaded; a folder others can write, a swapped entry or a planted symlink is never trusted |
//! | [`secrets`] | passwords from a file or the environment never reach any output |
//! | [`grants`] | numeric hosts are the addresses they mean, in settings and grants; a name that resolves to loopback is denied unless `allow_loopback_names` |
//! | [`sandbox`] | hostile plugins: denied destinations, limits, crashes, floods, WASI, integrity |
//! | [`hostile_servers`] | hostile SMTP servers: endless replies cut at a fixed cap, STARTTLS injection refused before a login, a plugin's bare-LF dot line stuffed; every stalled step temporary within its bound |
//! | [`faults`] | one fault per mode: each refusal at each step and its exit code; a lost answer after the whole message is `uncertain` and never failed over; recipients refused for now or for good; the call limit while waiting |
//! | [`vendor`] | a vendor's plugin as a file (the SendGrid example) used by the same binary; a built-in replaced by a file |
//! | [`stand_ins`] | the Graph and SendGrid stand-ins refuse what Microsoft and SendGrid refuse: one test a rule, status and error asserted |
//! | [`queue`] | the outbox: `submit`, then `queue run`/`flush` to the real servers — a server down then back, 5xx failed at once, 4xx then 250, failover with both attempts recorded, an idempotency key repeated, a bad email refused at submit, an attachment deleted after submit, a Graph Retry-After honoured, an uncertain email pinned to its sender |
//! | [`serve`] | `serve` and its local API over HTTP: an email posted delivered by the service's worker with one attempt; a missing or wrong token, malformed JSON, a wrong type, an unknown field, a body over the bound, an attachment outside the allowed folders each refused with the error shape and nothing queued; a repeated idempotency key; SIGTERM exits 0 and loses nothing, a delivery in flight finished and recorded first |
//! | [`throttle`] | each sender's `max_concurrent` and `max_per_minute` through `serve`: never more sessions at once, and as many as allowed; past the rate an email waits, and a stop hands it back untried |
//! | [`crash`] | `serve` killed with SIGKILL at random moments (a seeded PRNG, the seed printed) while it delivers 500 emails, restarted each time: none lost, every one `delivered`, each copy with its email's Message-ID, duplicates counted and only where a kill interrupted a delivery |
//! | [`serve_upload`] | `serve`'s multipart `POST /v1/messages`: an uploaded PDF arrives at the SMTP server with the same bytes and name, after the JSON's own attachment paths; an upload over 100 MiB is 413 with nothing queued; a client that hangs up mid-upload leaves nothing staged |
//! | [`routing`] | which sender carries each email (preferred, job options, events), failover, `route` |
//!
//! One test binary with submodules, so the binary is built once. Tests must never talk to
//! anything but 127.0.0.1, and never rely on the user's own settings or cache. Tests that need
//! the Python server say `SKIPPED` when aiosmtpd is missing (and fail under CI).

mod support;

mod cache;
mod crash;
mod faults;
mod grants;
mod graph;
mod hostile_servers;
mod imap;
mod imap_faults;
mod leaks;
mod limits;
mod plugins;
mod queue;
mod routing;
mod sandbox;
mod secrets;
mod send;
mod serve;
mod serve_upload;
mod settings;
mod stand_ins;
mod test_settings;
mod throttle;
mod tls;
mod vendor;

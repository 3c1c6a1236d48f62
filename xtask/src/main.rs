//! `cargo xtask <task>`: the project's build, test and demo tasks, in Rust so they need nothing
//! but cargo (the rust-analyzer xtask pattern; the alias lives in `.cargo/config.toml`).
//!
//! | task | module | does |
//! |---|---|---|
//! | `build` | [`build`] | the release binary with the default plugins embedded, and every plugin crate as a `.wasm` |
//! | `new-plugin` | [`new_plugin`] | a new plugin crate under `plugins/`, written with the kit |
//! | `test`  | [`test`]  | every test, with a Python that has aiosmtpd for the mail-server tests |
//! | `demo`  | [`demo`]  | a scan sent through the built-in SMTP plugin to a loopback server; then queued by `serve` while the server is down, and delivered once it is back |
//! | `bench` | [`bench`] | what the plugin design costs, against bare lettre; `target/bench/summary.md` |
//!
//! This file only parses arguments and dispatches. xtask keeps few dependencies so it builds
//! fast, and it never installs anything outside the rustup toolchain and `target/`.

mod bench;
mod bench_servers;
mod build;
mod certs;
mod demo;
mod new_plugin;
mod process;
mod python;
mod smtp_server;
mod test;
mod toolchain;

use std::process::ExitCode;

const HELP: &str = "\
Project tasks for scan2x-mail.

Usage: cargo xtask <TASK> [ARGS...]

Tasks:
  build         Add the wasm32-wasip2 target if it is missing, build scan2x-mail in release
                mode (its build script builds the default plugins and embeds them), build every
                plugin crate under plugins/ and examples/ into a .wasm, and print where the
                binary and the plugins are.
  new-plugin NAME
                Write plugins/NAME, a sender plugin crate written with the plugin kit that
                builds and passes its own test as generated, and add it to the workspace
                members (never to the plugins embedded in the binary). Never overwrites.
  test [ARGS]   Add the wasm32-wasip2 target if it is missing, make the test Python
                (target/test-python, a venv with aiosmtpd), then run
                `cargo test --workspace --exclude scan2x-mail-bench [ARGS]` with
                SCAN2X_TEST_PYTHON pointing at it (the bench harness has no tests: building it
                would only lengthen the run). ARGS go to cargo test, e.g.
                `cargo xtask test -- send`.
                Ends with the count of skipped tests and why; under CI a skip is a failure.
  demo          Build scan2x-mail, start the project's SMTP test server on 127.0.0.1 with a
                throw-away CA, and send a generated PDF scan through the built-in SMTP plugin:
                plugins, check, test, send; then show what the server received. Then the
                service: stop the server, run `serve`, post the scan to its API, show the
                temporary attempt, start the server, retry, show it delivered with both
                attempts and the same Message-ID, and stop `serve` with SIGTERM.
  bench [--quick] [--only service]
                Build scan2x-mail and the benchmark harness (bench/) in release mode, start
                local servers (Postfix with a discard transport, Dovecot, the Graph stand-in),
                measure the plugin path against bare lettre, start-up, large scans and `serve`
                against Postfix as the local queue (submit latency, emails/s; `--only service`
                runs that part alone), and write target/bench/summary.md. Only numbers, no
                thresholds: it never fails because a machine is slow. Postfix and Dovecot are
                used when installed.
  help          Print this text (also -h, --help).
";

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let task = args.next();
    let rest: Vec<String> = args.collect();
    let result = match task.as_deref() {
        Some("build") if rest.is_empty() => build::run(),
        Some("test") => test::run(&rest),
        Some("demo") if rest.is_empty() => demo::run(),
        Some("new-plugin") => new_plugin::run(&rest),
        Some("bench") => bench::run(&rest),
        Some("help" | "-h" | "--help") => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Some(task @ ("build" | "demo")) => {
            eprintln!("error: `{task}` takes no arguments\n\n{HELP}");
            return ExitCode::from(2);
        }
        Some(other) => {
            eprintln!("error: unknown task `{other}`\n\n{HELP}");
            return ExitCode::from(2);
        }
        None => {
            eprint!("{HELP}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

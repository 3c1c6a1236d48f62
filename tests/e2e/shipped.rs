//! The binary under test is the one users build: the host without its `bench` feature (the
//! benchmark stub that answers SMTP without a network). cargo unifies features within one
//! build, so a test run that also builds the bench harness would test a different binary;
//! `cargo xtask test` leaves the harness out.

#[test]
fn the_binary_under_test_is_built_without_the_benchmark_stub() {
    if cfg!(feature = "bench") {
        panic!(
            "scan2x-mail was built with its `bench` feature for these tests: run them with \
             `cargo xtask test` (or `cargo test --workspace --exclude scan2x-mail-bench`)"
        );
    }
}

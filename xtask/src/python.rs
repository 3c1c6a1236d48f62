//! The test Python: a venv at `target/test-python` with aiosmtpd, which the project's SMTP test
//! server (`tests/servers/smtp_server.py`) needs. Made once, reused while aiosmtpd imports.
//!
//! The venv is bootstrapped from `python3` (or `$PYTHON`). Never installs into the system or
//! user site-packages: only into the venv.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Result, bail};

use crate::process;

/// aiosmtpd 1.4: the server relies on how 1.4 reads command lines to log them.
const AIOSMTPD: &str = "aiosmtpd>=1.4,<1.5";

/// The venv's python, ready to import aiosmtpd.
pub fn ensure_test_python() -> Result<PathBuf> {
    let venv = process::target_dir().join("test-python");
    let python = if cfg!(windows) {
        venv.join("Scripts").join("python.exe")
    } else {
        venv.join("bin").join("python")
    };
    if has_aiosmtpd(&python) {
        return Ok(python);
    }
    if !python.exists() {
        let bootstrap = std::env::var_os("PYTHON").unwrap_or_else(|| "python3".into());
        let made = process::run(Command::new(&bootstrap).arg("-m").arg("venv").arg(&venv));
        if let Err(e) = made {
            bail!(
                "{e:#}\ncould not make the test Python venv; on Debian/Ubuntu `python3 -m venv` \
                 needs `apt-get install python3-venv`"
            );
        }
    }
    process::run(
        Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .arg(AIOSMTPD),
    )?;
    if !has_aiosmtpd(&python) {
        bail!(
            "{} still can't import aiosmtpd after installing it",
            python.display()
        );
    }
    Ok(python)
}

fn has_aiosmtpd(python: &PathBuf) -> bool {
    python.exists() && process::succeeds(Command::new(python).args(["-c", "import aiosmtpd"]))
}

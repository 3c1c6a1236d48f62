//! The precompiled-plugin cache: a cold cache compiles the plugin and stores it; the next run
//! with the same cache loads the stored code and compiles nothing.
//!
//! Uses only `plugins -v` (the info log says `compiled … cached …` or `loaded precompiled …`);
//! needs no server and must never open a connection.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::support::binary::Run;
use crate::support::test_plugins::wasm;
use crate::support::{
    PASSWORD, PASSWORD_ENV, Scan2xMail, SmtpSender, USER, say_skipped, toml_string,
};

/// Whether a log mentions compiling afresh: "compiled" not as part of "precompiled".
fn compiled_afresh(log: &str) -> bool {
    log.match_indices("compiled")
        .any(|(at, _)| !log[..at].ends_with("pre"))
}

#[test]
fn compiled_afresh_ignores_precompiled() {
    assert!(compiled_afresh(
        "plugin smtp: compiled in 1.2s, cached at x"
    ));
    assert!(!compiled_afresh("plugin smtp: loaded precompiled x"));
}

#[test]
fn plugin_is_compiled_once_then_loaded_precompiled() {
    let mail = Scan2xMail::new(&SmtpSender::new(10587).toml())
        .env(PASSWORD_ENV, PASSWORD)
        .credentials(USER, PASSWORD);

    let cold = mail.run(["-v", "plugins"]);
    cold.assert_code(0);
    assert!(
        compiled_afresh(&cold.stderr),
        "a cold cache should compile: {cold}"
    );
    let cached = fs::read_dir(mail.cache_dir())
        .map(|entries| entries.count())
        .unwrap_or(0);
    assert!(cached > 0, "nothing was stored in the cache dir: {cold}");

    let warm = mail.run(["-v", "plugins"]);
    warm.assert_code(0);
    assert!(
        warm.stderr.contains("loaded precompiled"),
        "a warm cache should be used: {warm}"
    );
    assert!(
        !compiled_afresh(&warm.stderr),
        "a warm cache should not compile again: {warm}"
    );
}

// --- a cache folder and entries an attacker can reach --------------------------------------------

/// Settings with one sender per plugin file, each pinned by its sha256. `plugins` loads every
/// plugin a sender names, so a run compiles or loads exactly these (and the built-ins).
fn pinned(plugins: &[&Path]) -> String {
    plugins
        .iter()
        .enumerate()
        .map(|(i, wasm)| {
            format!(
                "[senders.s{i}]\nplugin = {}\nsha256 = \"{}\"\n",
                toml_string(&wasm.to_string_lossy()),
                hex::encode(Sha256::digest(fs::read(wasm).unwrap()))
            )
        })
        .collect()
}

/// The id the plugin file `wasm` described itself with in `plugins --json`: which code ran.
fn id_of(run: &Run, wasm: &Path) -> String {
    let source = wasm.to_string_lossy();
    run.json()
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {run}"))
        .iter()
        .find(|p| p["source"].as_str().is_some_and(|s| s.contains(&*source)))
        .unwrap_or_else(|| panic!("{source} is not listed: {run}"))["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The cache entry (the artifact) of plugin file `wasm` in `dir`.
fn entry_of(dir: &Path, wasm: &Path) -> PathBuf {
    let sha256 = hex::encode(Sha256::digest(fs::read(wasm).unwrap()));
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.starts_with(&sha256) && name.ends_with(".cwasm")
        })
        .unwrap_or_else(|| panic!("no cache entry for {} in {}", wasm.display(), dir.display()))
}

/// The files beside `entry` that belong to it (`<entry>.<suffix>`: its checksum or MAC).
fn sidecars(entry: &Path) -> Vec<(String, PathBuf)> {
    let prefix = format!("{}.", entry.file_name().unwrap().to_string_lossy());
    let mut found: Vec<_> = fs::read_dir(entry.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter_map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let suffix = name.strip_prefix(&prefix)?.to_string();
            Some((suffix, p))
        })
        .collect();
    found.sort();
    found
}

/// Every file in `dir`, by name, with its bytes (a symlink as the path it points to).
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let path = e.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let bytes = match fs::read_link(&path) {
                Ok(target) => target.to_string_lossy().into_owned().into_bytes(),
                Err(_) => fs::read(&path).unwrap(),
            };
            (name, bytes)
        })
        .collect()
}

/// A cache that has compiled both `hostile` and the vendor build of smtp, with this run's key:
/// (the runner, hostile's entry, the vendor build's entry).
fn cache_with_hostile_and_vendor() -> (Scan2xMail, PathBuf, PathBuf) {
    let (hostile, vendor) = (wasm("hostile"), wasm("smtp-vendor-build"));
    let mail = Scan2xMail::new(&pinned(&[&hostile, &vendor]));
    let run = mail.run(["plugins", "--json"]);
    run.assert_code(0);
    assert_eq!(id_of(&run, &vendor), "smtp", "{run}");
    assert_eq!(id_of(&run, &hostile), "hostile", "{run}");
    let cache = mail.cache_dir();
    let (h, v) = (entry_of(&cache, &hostile), entry_of(&cache, &vendor));
    (mail, h, v)
}

#[test]
fn a_pinned_plugins_entry_swapped_for_another_plugins_entry_is_refused_and_recompiled() {
    let (mail, hostile_entry, vendor_entry) = cache_with_hostile_and_vendor();
    let vendor = wasm("smtp-vendor-build");
    let foreign = fs::read(&hostile_entry).unwrap();

    // The whole entry of another plugin — artifact and every file beside it, all written by
    // this installation — moved under the pinned plugin's name.
    fs::write(&vendor_entry, &foreign).unwrap();
    let own_name = vendor_entry
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    for (suffix, path) in sidecars(&hostile_entry) {
        fs::copy(
            path,
            vendor_entry.with_file_name(format!("{own_name}.{suffix}")),
        )
        .unwrap();
    }
    let run = mail.run(["-v", "plugins", "--json"]);
    run.assert_code(0);
    assert_eq!(
        id_of(&run, &vendor),
        "smtp",
        "the pinned plugin's own code runs: {run}"
    );
    assert!(run.stderr.contains("recompiling"), "{run}");

    // The other plugin's artifact with each checksum beside it recomputed for its bytes.
    fs::write(&vendor_entry, &foreign).unwrap();
    for (_, path) in sidecars(&vendor_entry) {
        fs::write(path, hex::encode(Sha256::digest(&foreign))).unwrap();
    }
    let run = mail.run(["-v", "plugins", "--json"]);
    run.assert_code(0);
    assert_eq!(
        id_of(&run, &vendor),
        "smtp",
        "the pinned plugin's own code runs: {run}"
    );
    assert!(run.stderr.contains("recompiling"), "{run}");

    let run = mail.run(["-v", "plugins", "--json"]);
    assert!(
        !compiled_afresh(&run.stderr),
        "the recompiled entries are used again: {run}"
    );
}

#[test]
fn a_cache_folder_others_can_write_is_not_used() {
    let (donor, hostile_entry, vendor_entry) = cache_with_hostile_and_vendor();
    let vendor = wasm("smtp-vendor-build");
    let foreign = fs::read(&hostile_entry).unwrap();

    let mail = Scan2xMail::new(&pinned(&[&vendor]));
    let cache = mail.cache_dir();
    fs::set_permissions(&cache, fs::Permissions::from_mode(0o777)).unwrap();
    // Planted by someone else: another plugin's artifact under the pinned plugin's entry name,
    // with a checksum recomputed for it under every name the donor's entry had beside it.
    let planted = cache.join(vendor_entry.file_name().unwrap());
    fs::write(&planted, &foreign).unwrap();
    for (suffix, _) in sidecars(&vendor_entry) {
        let name = format!(
            "{}.{suffix}",
            planted.file_name().unwrap().to_string_lossy()
        );
        fs::write(cache.join(name), hex::encode(Sha256::digest(&foreign))).unwrap();
    }
    drop(donor);
    let before = snapshot(&cache);

    for _ in 0..2 {
        let run = mail.run(["-v", "plugins", "--json"]);
        run.assert_code(0);
        assert_eq!(
            id_of(&run, &vendor),
            "smtp",
            "the pinned plugin's own code runs: {run}"
        );
        assert!(
            run.stderr.contains("cache not used") && run.stderr.contains("others can write"),
            "-v says why the cache is not used: {run}"
        );
        assert!(compiled_afresh(&run.stderr), "{run}");
        assert_eq!(snapshot(&cache), before, "nothing was written there: {run}");
    }
}

#[test]
fn a_cache_folder_owned_by_another_user_is_not_used() {
    if !running_as_root() {
        let why = "needs root, to give a folder to another user (`chown nobody`)";
        say_skipped("a_cache_folder_owned_by_another_user_is_not_used", why);
        return;
    }
    let mail = Scan2xMail::new(&pinned(&[&wasm("smtp-vendor-build")]));
    let cache = mail.cache_dir();
    fs::set_permissions(&cache, fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::chown(&cache, Some(NOBODY), Some(NOBODY)).unwrap();

    let run = mail.run(["-v", "plugins"]);
    run.assert_code(0);
    assert!(
        run.stderr.contains("cache not used") && run.stderr.contains(&format!("uid {NOBODY}")),
        "-v says why the cache is not used: {run}"
    );
    assert!(
        snapshot(&cache).is_empty(),
        "nothing was written there: {run}"
    );
}

#[test]
fn a_cache_write_never_follows_a_symlink_planted_at_its_names() {
    let vendor = wasm("smtp-vendor-build");
    let mail = Scan2xMail::new(&pinned(&[&vendor]));
    mail.run(["plugins"]).assert_code(0);
    let cache = mail.cache_dir();
    let entry = entry_of(&cache, &vendor);
    let victim = mail.write_file("victim", "not to be overwritten");

    // The entry's own names…
    let mut names: Vec<PathBuf> = sidecars(&entry).into_iter().map(|(_, p)| p).collect();
    names.push(entry.clone());
    for name in &names {
        fs::remove_file(name).unwrap();
    }
    // …and every temp-file name the next process could pick if it derived them from its pid.
    if let Ok(last) = fs::read_to_string("/proc/sys/kernel/ns_last_pid") {
        let last: u32 = last.trim().parse().unwrap();
        for pid in last + 1..last + 4096 {
            let tmp = entry.with_extension(format!("tmp{pid}"));
            let mut sidecar = tmp.clone().into_os_string();
            sidecar.push(".sha256");
            names.push(tmp);
            names.push(sidecar.into());
        }
    }
    for name in &names {
        std::os::unix::fs::symlink(&victim, name).unwrap();
    }

    let run = mail.run(["-v", "plugins"]);
    run.assert_code(0);
    assert_eq!(
        fs::read_to_string(&victim).unwrap(),
        "not to be overwritten",
        "a write followed a symlink: {run}"
    );
    assert!(
        !fs::symlink_metadata(&entry).unwrap().is_symlink(),
        "the entry was written in place of the symlink: {run}"
    );
    let run = mail.run(["-v", "plugins"]);
    assert!(run.stderr.contains("loaded precompiled"), "{run}");
}

const NOBODY: u32 = 65534;

fn running_as_root() -> bool {
    let probe = tempfile::tempfile().unwrap();
    probe.metadata().unwrap().uid() == 0
}

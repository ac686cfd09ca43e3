//! The programs the tests need besides Rust: `redis-server` and `redis-cli` (the tests start
//! their own servers on free ports) and `openssl` (the Redis TLS test makes its certificate).
//! Missing ones are installed with apt-get when this process may (root, or `sudo -n`);
//! otherwise the error says how to install them.

use std::env;
use std::path::Path;
use std::process::{Command, Stdio};

/// Each program the tests run, with the Debian package that provides it.
pub(crate) const TEST_TOOLS: [(&str, &str); 3] =
    [("redis-server", "redis-server"), ("redis-cli", "redis-tools"), ("openssl", "openssl")];

/// What this machine allows, as far as installing packages goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Host {
    /// This process runs as root.
    pub(crate) root: bool,
    /// `sudo -n true` succeeds (sudo without a password prompt).
    pub(crate) passwordless_sudo: bool,
    /// `apt-get` is on `PATH`.
    pub(crate) apt_get: bool,
}

impl Host {
    /// Asks this machine (runs `id -u` and `sudo -n true`).
    pub(crate) fn probe() -> Self {
        let root = Command::new("id")
            .arg("-u")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .is_some_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
        let passwordless_sudo = !root
            && on_path("sudo")
            && Command::new("sudo")
                .args(["-n", "true"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
        Host { root, passwordless_sudo, apt_get: on_path("apt-get") }
    }
}

/// What to do about the missing programs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Plan {
    /// Everything is installed.
    Ready,
    /// Run these commands (argv), in order, then check again.
    Install(Vec<Vec<String>>),
    /// Installing is not possible here: fail with this message.
    Explain(String),
}

/// Decides what to do when `missing` programs (from [`TEST_TOOLS`]) are not on `PATH`: the
/// same commands `.ci/run` used to run, as root directly or through `sudo -n`.
pub(crate) fn plan(missing: &[&str], host: Host) -> Plan {
    if missing.is_empty() {
        return Plan::Ready;
    }
    let why = if !host.apt_get {
        "apt-get is not available"
    } else if !host.root && !host.passwordless_sudo {
        "installing needs root or sudo without a password"
    } else {
        let packages = packages_for(missing);
        let prefix: &[&str] = if host.root { &[] } else { &["sudo", "-n"] };
        let apt = |args: &[&str], packages: &[String]| -> Vec<String> {
            let mut argv: Vec<String> = prefix
                .iter()
                .chain(&["env", "DEBIAN_FRONTEND=noninteractive", "apt-get"])
                .chain(args)
                .map(|s| s.to_string())
                .collect();
            argv.extend_from_slice(packages);
            argv
        };
        return Plan::Install(vec![
            apt(&["update"], &[]),
            apt(&["install", "-y", "--no-install-recommends"], &packages),
        ]);
    };
    Plan::Explain(how_to_install(missing, why))
}

/// The Debian packages that provide `missing`, in [`TEST_TOOLS`] order.
fn packages_for(missing: &[&str]) -> Vec<String> {
    TEST_TOOLS
        .iter()
        .filter(|(tool, _)| missing.contains(tool))
        .map(|(_, package)| package.to_string())
        .collect()
}

/// The error for programs that are missing and cannot be installed here (`why`).
pub(crate) fn how_to_install(missing: &[&str], why: &str) -> String {
    format!(
        "{} not found on PATH ({why}). The tests start their own Redis servers on free ports \
         (no server needs to be running) and the Redis TLS test makes its certificate with \
         openssl. Install them and rerun:\n    \
         Debian/Ubuntu: sudo apt-get install -y --no-install-recommends {}\n    \
         macOS:         brew install redis openssl",
        missing.join(", "),
        packages_for(missing).join(" ")
    )
}

/// The programs of [`TEST_TOOLS`] that are not on `PATH`.
pub(crate) fn missing_tools() -> Vec<&'static str> {
    TEST_TOOLS.iter().map(|(tool, _)| *tool).filter(|tool| !on_path(tool)).collect()
}

/// Whether `program` is an executable file in a directory of `PATH`.
pub(crate) fn on_path(program: &str) -> bool {
    let Some(path) = env::var_os("PATH") else { return false };
    env::split_paths(&path).any(|dir| is_executable(&dir.join(program)))
}

#[cfg(unix)]
fn is_executable(candidate: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(candidate).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(candidate: &Path) -> bool {
    candidate.is_file() || candidate.with_extension("exe").is_file()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT: Host = Host { root: true, passwordless_sudo: false, apt_get: true };
    const SUDO: Host = Host { root: false, passwordless_sudo: true, apt_get: true };
    const USER: Host = Host { root: false, passwordless_sudo: false, apt_get: true };
    const NO_APT: Host = Host { root: true, passwordless_sudo: false, apt_get: false };

    fn argv(line: &str) -> Vec<String> {
        line.split(' ').map(str::to_owned).collect()
    }

    #[test]
    fn nothing_to_do_when_everything_is_installed() {
        for host in [ROOT, SUDO, USER, NO_APT] {
            assert_eq!(plan(&[], host), Plan::Ready);
        }
    }

    #[test]
    fn root_installs_with_apt_get_directly() {
        assert_eq!(
            plan(&["redis-server", "redis-cli", "openssl"], ROOT),
            Plan::Install(vec![
                argv("env DEBIAN_FRONTEND=noninteractive apt-get update"),
                argv(
                    "env DEBIAN_FRONTEND=noninteractive apt-get install -y \
                     --no-install-recommends redis-server redis-tools openssl"
                ),
            ])
        );
    }

    #[test]
    fn passwordless_sudo_installs_only_what_is_missing() {
        assert_eq!(
            plan(&["redis-cli"], SUDO),
            Plan::Install(vec![
                argv("sudo -n env DEBIAN_FRONTEND=noninteractive apt-get update"),
                argv(
                    "sudo -n env DEBIAN_FRONTEND=noninteractive apt-get install -y \
                     --no-install-recommends redis-tools"
                ),
            ])
        );
    }

    #[test]
    fn otherwise_says_how_to_install() {
        let Plan::Explain(message) = plan(&["redis-server", "openssl"], USER) else {
            panic!("expected an explanation");
        };
        assert!(message.starts_with("redis-server, openssl not found on PATH"), "{message}");
        assert!(message.contains("root or sudo without a password"), "{message}");
        assert!(
            message.contains("apt-get install -y --no-install-recommends redis-server openssl"),
            "{message}"
        );
        assert!(message.contains("brew install redis openssl"), "{message}");
        let Plan::Explain(message) = plan(&["redis-cli"], NO_APT) else {
            panic!("expected an explanation");
        };
        assert!(message.contains("apt-get is not available"), "{message}");
    }

    #[test]
    fn finds_programs_on_path() {
        // The shell is on PATH wherever these tests run; a made-up name is not.
        assert!(on_path("sh"));
        assert!(!on_path("xtask-no-such-program"));
    }
}

//! Every example behaves like a command-line program: `--help` prints its usage and the
//! environment variables it reads, and exits 0; an unknown option is one line and status 2.

use std::path::PathBuf;
use std::process::Command;

const EXAMPLES: [&str; 8] = [
    "bench",
    "clear",
    "compression",
    "faults",
    "quickstart",
    "service",
    "stampede",
    "topologies",
];

/// `cargo test` builds the examples next to the test binaries (`target/<profile>/examples`).
fn example(name: &str) -> PathBuf {
    let deps = std::env::current_exe().expect("the test binary's path");
    let path = deps
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps")
        .join("examples")
        .join(name);
    assert!(path.exists(), "{} is not built", path.display());
    path
}

#[test]
fn help_prints_usage_and_exits_zero() {
    for name in EXAMPLES {
        let output = Command::new(example(name)).arg("--help").output().unwrap();
        let stdout = String::from_utf8(output.stdout).unwrap();
        assert!(output.status.success(), "{name}: {:?}", output.status);
        assert!(stdout.contains("usage: cargo run"), "{name}: {stdout}");
    }
    let service = Command::new(example("service")).arg("-h").output().unwrap();
    let usage = String::from_utf8(service.stdout).unwrap();
    for variable in ["REDIS_URL", "PORT", "ADMIN_TOKEN", "--load"] {
        assert!(
            usage.contains(variable),
            "service documents {variable}: {usage}"
        );
    }
}

#[test]
fn an_unknown_option_is_one_line_and_status_two() {
    for name in EXAMPLES {
        let output = Command::new(example(name))
            .arg("--frobnicate")
            .output()
            .unwrap();
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(output.status.code(), Some(2), "{name}: {stderr}");
        assert_eq!(
            stderr,
            format!("{name}: unknown argument \"--frobnicate\" (see --help)\n")
        );
    }
    let output = Command::new(example("service"))
        .args(["--load", "soon"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        String::from_utf8(output.stderr).unwrap(),
        "service: --load \"soon\": not a valid value (see --help)\n"
    );
}

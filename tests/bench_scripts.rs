//! Runs the fan-out benchmark scripts once at a tiny size (two clients,
//! 6 s measurements), so a change that breaks them shows up in the test
//! suite. The figures of such a run mean nothing and are not checked;
//! the tests check that every run happened and that the tables are whole.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};

/// Returns a loopback port that is free, and whose next port is free too
/// (the fan-out script puts the server's telemetry there).
fn free_port_pair() -> u16 {
    for _ in 0..50 {
        let first = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let port = first.local_addr().unwrap().port();
        if port < u16::MAX && TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
    panic!("found no two free neighbouring loopback ports in 50 tries");
}

/// Runs `script` from the repository root with `env` and returns its
/// output, failing the test with its stderr when it exits with an error.
fn run_script(script: &str, out_dir: &Path, env: &[(&str, String)]) -> Output {
    let mut command = Command::new("bash");
    command
        .arg(script)
        .arg(out_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("RESONATE_BIN", env!("CARGO_BIN_EXE_resonate"))
        .env("DURATION", "6")
        .env("PORT", free_port_pair().to_string());
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command.output().expect("run bash");
    assert!(
        output.status.success(),
        "{script} failed with {}:\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Splits the rows of a Markdown table into their cells.
fn table_rows(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .filter(|line| line.starts_with("| ") && !line.starts_with("|---"))
        .map(|line| {
            line.trim_matches('|')
                .split(" | ")
                .map(|cell| cell.trim().to_string())
                .collect()
        })
        .collect()
}

/// Lines of the raw CSV a script wrote, split into fields.
fn raw_rows(out_dir: &Path) -> Vec<Vec<String>> {
    let raw = std::fs::read_to_string(out_dir.join("raw.csv")).expect("read raw.csv");
    raw.lines()
        .map(|line| line.split(',').map(str::to_string).collect())
        .collect()
}

#[test]
fn fanout_script_runs_tiny() {
    let out = tempfile::tempdir().unwrap();
    let output = run_script(
        "benches/fanout.sh",
        out.path(),
        &[
            ("COUNTS", "2".into()),
            ("CODECS", "pcm".into()),
            ("MODES", "idle streaming".into()),
        ],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let rows = table_rows(&stdout);
    assert_eq!(rows[0][0], "server", "{stdout}");
    let runs = &rows[1..];
    assert_eq!(runs.len(), 2, "one idle and one streaming run: {stdout}");
    for (run, mode) in runs.iter().zip(["idle", "streaming"]) {
        assert_eq!(run[0], "resonate", "{stdout}");
        assert_eq!(run[1], mode, "{stdout}");
        assert_eq!(run[3], "2", "clients: {stdout}");
        assert_eq!(run[4], "2", "clients joined: {stdout}");
    }
    let streaming_judged: u64 = runs[1][5].parse().expect("chunks judged is a number");
    assert!(
        streaming_judged > 0,
        "the players judged no chunk: {stdout}"
    );

    let raw = raw_rows(out.path());
    assert_eq!(raw.len(), 2, "{raw:?}");
    assert!(raw.iter().all(|row| row.len() == 14), "{raw:?}");
    assert_eq!(raw[1][..4], ["resonate", "streaming", "pcm", "2"]);
    assert!(out.path().join("resonate-streaming-pcm-2.json").is_file());
}

#[test]
fn side_by_side_script_runs_tiny() {
    let Some(peers_run) = std::env::var_os("RESONATE_PEERS_RUN") else {
        eprintln!(
            "skipping side_by_side_script_runs_tiny: RESONATE_PEERS_RUN is not set; \
             set it to the peers root's run script to run aiosendspin"
        );
        return;
    };
    let out = tempfile::tempdir().unwrap();
    let output = run_script(
        "benches/side_by_side.sh",
        out.path(),
        &[
            (
                "RESONATE_PEERS_RUN",
                peers_run.to_string_lossy().into_owned(),
            ),
            ("IDLE_COUNT", "2".into()),
            ("RESONATE_COUNTS", "2".into()),
            ("AIOSENDSPIN_COUNTS", "2".into()),
            ("SOURCE_SECONDS", "3".into()),
        ],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let rows = table_rows(&stdout);

    let runs: Vec<_> = rows
        .iter()
        .filter(|row| row[0] == "resonate" || row[0] == "aiosendspin")
        .collect();
    let modes: Vec<(&str, &str)> = runs
        .iter()
        .map(|row| (row[0].as_str(), row[1].as_str()))
        .collect();
    assert_eq!(
        modes,
        [
            ("resonate", "idle"),
            ("resonate", "streaming"),
            ("aiosendspin", "idle"),
            ("aiosendspin", "streaming"),
        ],
        "{stdout}"
    );
    for run in &runs {
        assert_eq!(run[4], "2", "clients joined: {stdout}");
    }

    let figures: Vec<&str> = rows.iter().map(|row| row[0].as_str()).collect();
    assert!(figures.contains(&"figure"), "no ratio table: {stdout}");
    assert!(
        figures.contains(&"PCM players fed in real time (largest count tried)"),
        "{stdout}"
    );
    assert!(
        figures.contains(&"RSS growth per idle session, 2 sessions"),
        "{stdout}"
    );
    assert_eq!(raw_rows(out.path()).len(), 4);
}

#[test]
fn player_cost_script_runs_tiny() {
    let out = tempfile::tempdir().unwrap();
    let output = run_script(
        "benches/player_cost.sh",
        out.path(),
        &[("DURATION", "3".into()), ("CODECS", "pcm opus".into())],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.starts_with("binary: "), "{stdout}");
    let rows = table_rows(&stdout);
    assert_eq!(rows[0][0], "dialect", "{stdout}");
    let runs: Vec<(&str, &str)> = rows[1..]
        .iter()
        .map(|row| (row[0].as_str(), row[1].as_str()))
        .collect();
    assert_eq!(
        runs,
        [
            ("sendspin-v1", "pcm"),
            ("sendspin-v1", "opus"),
            ("sendspin", "pcm"),
            ("sendspin", "opus"),
        ],
        "{stdout}"
    );
    for row in &rows[1..] {
        assert!(row[2].ends_with(" us"), "CPU column: {stdout}");
        assert!(row[4].ends_with(" s"), "start-up column: {stdout}");
    }
}

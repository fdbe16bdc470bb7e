//! The quick-start demonstration runs on embedded defaults and reports
//! players that played audio with clocks close to the truth.

use std::process::Command;

#[test]
fn demo_reports_synced_players() {
    let output = Command::new(env!("CARGO_BIN_EXE_resonate"))
        .args([
            "serve",
            "--dialect",
            "sendspin-v1",
            "--demo",
            "--demo-seconds",
            "3",
            "--demo-players",
            "3",
            "--json",
        ])
        .output()
        .expect("run resonate serve --demo");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "demo failed: {stderr}");

    let rows: Vec<serde_json::Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("demo prints JSON lines"))
        .collect();
    assert_eq!(rows.len(), 3, "one row per player: {rows:?}");
    for row in &rows {
        assert_eq!(row["event"], "demo_player");
        assert_eq!(row["converged"], true, "{row}");
        let played = row["played_s"].as_f64().unwrap();
        assert!(played > 0.5, "played only {played} s: {row}");
        // Server and players share one clock, so the true offset is 0; a
        // loopback estimate is within a few milliseconds of it.
        let offset = row["offset_us"].as_f64().unwrap();
        assert!(offset.abs() < 5_000.0, "offset {offset} us: {row}");
    }
}

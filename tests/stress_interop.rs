//! Test of `resonate stress` against the aiosendspin 10.2.1 server in
//! cleartext transition mode. Every scenario must run to the end against
//! this real implementation, and the stress run must find its known weakness.

#[path = "support/peers.rs"]
mod peers;

use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

use peers::{peer_command, require_peers_root};

/// Long enough that the peer server is still playing when the last
/// scenario ends.
const SOURCE_SECONDS: &str = "120";

/// Time in seconds after which the peer server exits by itself.
const PEER_TIMEOUT_S: &str = "240";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stress_all_scenarios_against_aiosendspin() -> anyhow::Result<()> {
    let Some(root) = require_peers_root() else {
        return Ok(());
    };
    let peers = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers");
    let dir = tempfile::Builder::new().prefix("resonate-stress-interop").tempdir_in("/tmp")?;
    let wav = dir.path().join("tone.wav");
    let make_wav = std::process::Command::new("python3")
        .arg(peers.join("make_wav.py"))
        .args(["--out", wav.to_str().unwrap(), "--seconds", SOURCE_SECONDS])
        .output()
        .context("running make_wav.py")?;
    assert!(make_wav.status.success(), "make_wav.py failed: {}", String::from_utf8_lossy(&make_wav.stderr));

    let mut server = peer_command(&root, "venv-sendspin", &peers, "python3")
        .arg("aiosendspin_server.py")
        .arg("--wav")
        .arg(&wav)
        .args(["--port", "0", "--timeout", PEER_TIMEOUT_S])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("starting the aiosendspin server in the peers root failed (entering the root needs root privileges)")?;
    let mut lines = BufReader::new(server.stdout.take().context("stdout not piped")?).lines();
    let url = loop {
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .context("timed out after 60 s waiting for the aiosendspin server's listening line")??;
        let Some(line) = line else {
            bail!("the aiosendspin server exited before listening");
        };
        let event: Value = serde_json::from_str(&line).unwrap_or_default();
        if event["event"] == "listening" {
            break event["url"].as_str().context("listening line is missing \"url\"")?.to_string();
        }
    };
    // Keep reading the server's lines so its pipe never fills.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_resonate"))
        .args(["stress", "--server", &url, "--scenario", "all", "--duration", "1", "--clients", "8"])
        .args(["--bound", "6", "--seed", "5", "--json"])
        .env_remove("RUST_LOG")
        .output()
        .await
        .context("running resonate stress")?;
    let _ = server.start_kill();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let report: Value = serde_json::from_slice(&output.stdout).with_context(|| format!("no JSON report; stderr: {stderr}"))?;
    assert!(matches!(output.status.code(), Some(0 | 1)), "stress failed to run: {stderr}");

    let scenarios = report["scenarios"].as_array().context("no scenarios in the report")?;
    assert_eq!(scenarios.len(), 8, "{report:#}");
    for scenario in scenarios {
        let name = &scenario["scenario"];
        assert!(scenario["handshakes"].as_u64().unwrap_or(0) > 0, "{name} completed no handshake with the peer: {scenario:#}");
        assert!(scenario.get("server").is_none(), "{name}: a foreign server has no counters");
    }
    // aiosendspin 10.2.1 keeps writing to a player that stopped reading;
    // it logs the stalls but never drops the connection.
    let slow = scenarios.iter().find(|s| s["scenario"] == "slow-consumer").unwrap();
    assert!(
        slow["violations"].get("slow_consumer_kept").is_some(),
        "the slow consumer was dropped; update docs/stress.md: {slow:#}"
    );
    Ok(())
}

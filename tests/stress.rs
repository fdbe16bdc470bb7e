//! Tests of `resonate stress` against the embedded server and a listening
//! `resonate play`, which must pass clean, and against a deliberately faulty
//! server and player, whose faults it must find.

use std::process::{Command, Output};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message as WsMessage;

fn stress(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_resonate"))
        .arg("stress")
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run resonate stress")
}

fn report_of(output: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(&stdout).unwrap_or_else(|err| {
        panic!(
            "stress --json printed no JSON report ({err}); stdout: {stdout}\nstderr: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

fn violation_kinds(report: &Value) -> Vec<String> {
    let mut kinds: Vec<String> = report["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| {
            s["violations"]
                .as_object()
                .unwrap()
                .keys()
                .cloned()
                .collect::<Vec<_>>()
        })
        .collect();
    kinds.sort();
    kinds.dedup();
    kinds
}

/// Runs every scenario against the embedded server with virtual clients of
/// `dialect`, which find it at `path`. Expects no violation, and no open
/// session, client or task on the server after each scenario.
fn embedded_server_survives_every_scenario_clean(dialect: &str, path: &str) {
    let output = stress(&[
        "--scenario",
        "all",
        "--duration",
        "1",
        "--clients",
        "8",
        "--seed",
        "42",
        "--bound",
        "8",
        "--dialect",
        dialect,
        "--json",
    ]);
    let report = report_of(&output);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(report["dialect"], dialect);
    assert!(
        report["target"].as_str().unwrap().ends_with(path),
        "{}",
        report["target"]
    );

    let kinds = violation_kinds(&report);
    assert!(
        kinds.is_empty(),
        "violations {kinds:?} in {report:#}\nstderr: {stderr}"
    );
    assert_eq!(output.status.code(), Some(0), "stderr: {stderr}");

    let scenarios = report["scenarios"].as_array().unwrap();
    let names: Vec<&str> = scenarios
        .iter()
        .map(|s| s["scenario"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "handshake-storm",
            "churn",
            "same-id",
            "goodbyes",
            "slow-consumer",
            "reconnect-flap",
            "time-flood",
            "concurrent-control",
            "noise-abuse"
        ]
    );
    for scenario in scenarios {
        let name = scenario["scenario"].as_str().unwrap();
        if name == "noise-abuse" && dialect != "sendspin" {
            // Only Sendspin 1.0 has a Noise handshake to abuse.
            assert_eq!(scenario["sessions_opened"], 0, "{scenario:#}");
            assert!(
                scenario["notes"][0]
                    .as_str()
                    .unwrap()
                    .contains("only with --dialect sendspin"),
                "{scenario:#}"
            );
            continue;
        }
        assert!(
            scenario["handshakes"].as_u64().unwrap() > 0,
            "{name} completed no handshake: {scenario:#}"
        );
        let server = &scenario["server"];
        assert_eq!(server["sessions_live"], 0, "{name}: {server}");
        assert_eq!(server["clients_live"], 0, "{name}: {server}");
        assert_eq!(server["tasks_live"], 0, "{name}: {server}");
    }

    // Each scenario exercised its case: audio reached churning players,
    // replacements happened, slow consumers were dropped, time replies arrived.
    let by_name = |name: &str| scenarios.iter().find(|s| s["scenario"] == name).unwrap();
    assert!(by_name("churn")["audio_chunks"].as_u64().unwrap() > 0);
    assert!(
        by_name("same-id")["server"]["closed_by_cause"]["replaced"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert!(
        by_name("slow-consumer")["server"]["closed_by_cause"]["slow_consumer"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert!(by_name("time-flood")["time_replies"].as_u64().unwrap() > 100);
    assert!(
        by_name("handshake-storm")["latency"]["handshake"]["count"]
            .as_u64()
            .unwrap()
            > 0
    );
    if dialect == "sendspin" {
        // The server closed the abusers as protocol errors.
        let abuse = by_name("noise-abuse");
        assert!(abuse["sessions_opened"].as_u64().unwrap() > abuse["handshakes"].as_u64().unwrap());
        let closed = &abuse["server"]["closed_by_cause"];
        assert!(
            closed["protocol_error"].as_u64().unwrap_or(0) > 0,
            "{closed}"
        );
    }
}

#[test]
fn embedded_server_survives_every_scenario_clean_in_sendspin_v1() {
    embedded_server_survives_every_scenario_clean("sendspin-v1", "/sendspin");
}

/// Sendspin 1.0 clients run the Noise handshake, unpaired, with the
/// embedded server, which admits them.
#[test]
fn embedded_server_survives_every_scenario_clean_in_sendspin() {
    embedded_server_survives_every_scenario_clean("sendspin", "/sendspin");
}

/// Legacy Resonate clients reach the embedded server at /resonate.
#[test]
fn embedded_server_survives_every_scenario_clean_in_legacy_resonate() {
    embedded_server_survives_every_scenario_clean("resonate", "/resonate");
}

/// The report names the seed, so a run can be repeated, and the target.
#[test]
fn report_names_seed_and_target() {
    let output = stress(&[
        "--scenario",
        "time-flood",
        "--duration",
        "0.5",
        "--clients",
        "1",
        "--seed",
        "7",
        "--json",
    ]);
    let report = report_of(&output);
    assert_eq!(report["seed"], 7);
    assert!(
        report["target"]
            .as_str()
            .unwrap()
            .starts_with("ws://127.0.0.1:"),
        "{report}"
    );
    assert_eq!(report["dialect"], "sendspin-v1");

    // Without --seed, the seed comes from the wall clock.
    let output = stress(&[
        "--scenario",
        "time-flood",
        "--duration",
        "0.2",
        "--clients",
        "1",
        "--json",
    ]);
    let seed = report_of(&output)["seed"].as_u64().unwrap();
    assert!(
        seed > 1_000_000_000,
        "seed {seed} is not taken from the clock"
    );
}

/// Runs a server that breaks the protocol in known ways. It sends
/// `server/hello` twice, replies to `client/time` with a stamp it was never
/// sent, and drops the connection without a close frame when the client closes.
async fn faulty_server(listener: TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        tokio::spawn(async move {
            let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                return;
            };
            while let Some(Ok(frame)) = ws.next().await {
                let WsMessage::Text(text) = frame else {
                    // A close frame: drop the connection without replying.
                    return;
                };
                let message: Value = serde_json::from_str(&text).unwrap_or_default();
                let reply = match message["type"].as_str() {
                    Some("client/hello") => {
                        let roles = message["payload"]["supported_roles"].clone();
                        let hello = json!({"type": "server/hello", "payload": {
                            "server_id": "faulty", "name": "faulty", "version": 1,
                            "active_roles": roles, "connection_reason": "playback"}});
                        vec![hello.clone(), hello]
                    }
                    Some("client/time") => {
                        let sent = message["payload"]["client_transmitted"]
                            .as_i64()
                            .unwrap_or(0);
                        vec![json!({"type": "server/time", "payload": {
                            "client_transmitted": sent + 1, "server_received": 10, "server_transmitted": 20}})]
                    }
                    _ => Vec::new(),
                };
                for reply in reply {
                    if ws
                        .send(WsMessage::Text(reply.to_string().into()))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        });
    }
}

#[test]
fn faulty_server_violations_exit_1() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    runtime.spawn(faulty_server(listener));
    let url = format!("ws://{addr}/sendspin");
    let output = stress(&[
        "--server",
        &url,
        "--scenario",
        "handshake-storm",
        "--duration",
        "0.5",
        "--clients",
        "4",
        "--seed",
        "3",
        "--bound",
        "2",
        "--json",
    ]);
    let report = report_of(&output);
    assert_eq!(
        output.status.code(),
        Some(1),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );

    let kinds = violation_kinds(&report);
    for expected in ["duplicate_hello", "foreign_time_reply", "unclean_close"] {
        assert!(
            kinds.iter().any(|k| k == expected),
            "{expected} not found among {kinds:?}"
        );
    }

    let storm = &report["scenarios"][0];
    assert!(
        storm.get("server").is_none(),
        "a foreign server has no counters to show: {storm}"
    );
    let example = &storm["violations"]["duplicate_hello"]["examples"][0];
    assert!(
        example["message"]
            .as_str()
            .unwrap()
            .contains("server/hello"),
        "{example}"
    );
}

/// Virtual servers dial a waiting player, several at once, stream to it and
/// drop it in every way. The player must keep to the protocol, complete
/// every close handshake and still accept servers afterwards.
#[test]
fn listening_player_survives_a_server_storm() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let mut player = Command::new(env!("CARGO_BIN_EXE_resonate"))
        .args([
            "play",
            "--dialect",
            "sendspin-v1",
            "--listen",
            &listen,
            "--no-mdns",
            "--output",
            "null",
            "--client-id",
            "storm-target",
            "-q",
        ])
        .env_remove("RUST_LOG")
        .spawn()
        .expect("start resonate play --listen");
    let url = format!("ws://{listen}/sendspin");
    // The player needs a moment to bind; stress's preflight retries nothing,
    // so wait until the port accepts.
    let ready = (0..100).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(50));
        std::net::TcpStream::connect(&listen).is_ok()
    });
    assert!(ready, "play --listen did not start listening on {listen}");

    let output = stress(&[
        "--player",
        &url,
        "--scenario",
        "all",
        "--duration",
        "1",
        "--clients",
        "4",
        "--seed",
        "9",
        "--json",
    ]);
    let still_running = player.try_wait().unwrap().is_none();
    let _ = player.kill();
    let _ = player.wait();
    let report = report_of(&output);
    let kinds = violation_kinds(&report);
    assert!(kinds.is_empty(), "violations {kinds:?} in {report:#}");
    assert_eq!(
        output.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(still_running, "the player exited during the storm");

    let scenarios = report["scenarios"].as_array().unwrap();
    assert_eq!(scenarios.len(), 9, "{report:#}");
    for scenario in scenarios {
        if scenario["scenario"] == "noise-abuse" {
            // It needs a Sendspin 1.0 server, so it only leaves a note.
            assert_eq!(scenario["sessions_opened"], 0, "{scenario:#}");
            assert_eq!(
                scenario["notes"].as_array().unwrap().len(),
                1,
                "{scenario:#}"
            );
            continue;
        }
        assert!(scenario["handshakes"].as_u64().unwrap() > 0, "{scenario:#}");
        assert!(
            scenario["notes"].as_array().unwrap().is_empty(),
            "the player obeys volume and mute: {scenario:#}"
        );
    }
    let by_name = |name: &str| scenarios.iter().find(|s| s["scenario"] == name).unwrap();
    assert!(by_name("handshake-storm")["audio_chunks"].as_u64().unwrap() > 0);
    assert!(by_name("churn")["audio_chunks"].as_u64().unwrap() > 0);
    assert!(
        by_name("time-flood")["time_replies"].as_u64().unwrap() > 100,
        "stray server/time messages were sent"
    );
    assert!(by_name("reconnect-flap")["handshakes"].as_u64().unwrap() > 4);
}

/// Serves as a listening player that gets wrong everything the player
/// scenarios look for: it keeps every server it is given, ignores
/// commands, and drops a connection without a close frame when the server
/// closes it.
async fn faulty_player(listener: TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        tokio::spawn(async move {
            let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                return;
            };
            let hello = json!({"type": "client/hello", "payload": {
                "client_id": "faulty-player", "name": "faulty", "version": 1,
                "supported_roles": ["player@v1"],
                "player@v1_support": {
                    "supported_formats": [{"codec": "pcm", "sample_rate": 48000, "channels": 2, "bit_depth": 16}],
                    "buffer_capacity": 1_000_000, "supported_commands": ["volume", "mute"]}}});
            if ws
                .send(WsMessage::Text(hello.to_string().into()))
                .await
                .is_err()
            {
                return;
            }
            let state = json!({"type": "client/state", "payload": {
                "state": "synchronized", "player": {"volume": 50, "muted": false}}});
            while let Some(Ok(frame)) = ws.next().await {
                match frame {
                    // A close frame: drop the connection without replying.
                    WsMessage::Close(_) => return,
                    WsMessage::Text(text) if text.contains("server/hello") => {
                        if ws
                            .send(WsMessage::Text(state.to_string().into()))
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                    _ => {}
                }
            }
        });
    }
}

#[test]
fn faulty_player_violations_exit_1() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    runtime.spawn(faulty_player(listener));
    let url = format!("ws://{addr}/sendspin");
    let output = stress(&[
        "--player",
        &url,
        "--scenario",
        "same-id",
        "--scenario",
        "concurrent-control",
        "--duration",
        "0.5",
        "--clients",
        "4",
        "--seed",
        "3",
        "--bound",
        "1",
        "--json",
    ]);
    let report = report_of(&output);
    assert_eq!(
        output.status.code(),
        Some(1),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let scenarios = report["scenarios"].as_array().unwrap();
    let same_id = &scenarios[0]["violations"];
    let detail = same_id["survivor_count"]["examples"][0]["detail"]
        .as_str()
        .unwrap();
    assert!(detail.starts_with("4 of 4 connections"), "{detail}");
    assert!(same_id.get("unclean_close").is_some(), "{same_id:#}");
    let control = &scenarios[1]["violations"];
    assert!(control.get("inconsistent_state").is_some(), "{control:#}");
}

/// A `resonate serve` in its own process, playing a looping sine tone,
/// ended when dropped.
struct ServeProcess {
    child: std::process::Child,
    url: String,
}

impl ServeProcess {
    fn start(extra: &[&str]) -> ServeProcess {
        use std::io::BufRead;

        let mut child = Command::new(env!("CARGO_BIN_EXE_resonate"))
            .args([
                "serve",
                "--dialect",
                "sendspin-v1",
                "--tone",
                "sine",
                "--loop",
                "--no-mdns",
                "--json",
            ])
            .args(["--listen", "127.0.0.1:0"])
            .args(extra)
            .env_remove("RUST_LOG")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start resonate serve");
        let stdout = child.stdout.take().unwrap();
        let url = std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .filter_map(|line| serde_json::from_str::<Value>(&line).ok())
            .find(|event| event["event"] == "listening")
            .and_then(|event| event["url"].as_str().map(str::to_string))
            .expect("serve --json printed no listening event");
        ServeProcess { child, url }
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the fan-out scenario once at a tiny size against a serve process,
/// for each codec, and checks that its counts add up.
#[test]
fn fan_out_reports_chunk_counts() {
    for codec in ["pcm", "flac", "opus"] {
        let server = ServeProcess::start(&["--codec", codec]);
        let output = stress(&[
            "--server",
            &server.url,
            "--scenario",
            "fan-out",
            "--duration",
            "2",
            "--clients",
            "3",
            "--seed",
            "4",
            "--json",
        ]);
        let report = report_of(&output);
        let scenarios = report["scenarios"].as_array().unwrap();
        assert_eq!(scenarios.len(), 1, "{report:#}");
        let fan_out = &scenarios[0];
        assert_eq!(fan_out["scenario"], "fan-out");
        assert_eq!(fan_out["handshakes"], 3, "{codec}: {fan_out:#}");
        assert_eq!(fan_out["sessions_closed"], 3, "{codec}: {fan_out:#}");
        let judged = fan_out["chunks_judged"].as_u64().unwrap();
        let late = fan_out["chunks_late"].as_u64().unwrap();
        let received = fan_out["audio_chunks"].as_u64().unwrap();
        // Three players, 2 s, 20 ms chunks: 300 chunks in real time, and
        // the server sends ahead of that. Half of it allows for a slow
        // start on a loaded machine.
        assert!(
            judged >= 150,
            "{codec}: {judged} chunks judged: {fan_out:#}"
        );
        assert!(received >= judged, "{codec}: {fan_out:#}");
        assert!(late <= judged, "{codec}: {fan_out:#}");
        let late_violations = fan_out["violations"]["audio_late"]["count"]
            .as_u64()
            .unwrap_or(0);
        assert_eq!(late_violations, late, "{codec}: {fan_out:#}");
        let lead = &fan_out["latency"]["min_chunk_lead"];
        if late == 0 {
            assert_eq!(lead["count"], 3, "{codec}: {fan_out:#}");
        }
    }
}

/// Fan-out with controller-only clients keeps idle sessions open and
/// judges no audio.
#[test]
fn fan_out_of_controllers_judges_no_audio() {
    let server = ServeProcess::start(&[]);
    let output = stress(&[
        "--server",
        &server.url,
        "--scenario",
        "fan-out",
        "--roles",
        "controller",
        "--duration",
        "1",
        "--clients",
        "3",
        "--json",
    ]);
    let report = report_of(&output);
    let fan_out = &report["scenarios"][0];
    assert_eq!(fan_out["handshakes"], 3, "{fan_out:#}");
    assert_eq!(fan_out["chunks_judged"], 0, "{fan_out:#}");
    assert_eq!(fan_out["audio_chunks"], 0, "{fan_out:#}");
    assert_eq!(
        output.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn fan_out_against_player_is_rejected() {
    let output = stress(&[
        "--player",
        "ws://127.0.0.1:9/sendspin",
        "--scenario",
        "fan-out",
    ]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("fan-out"), "{stderr}");
}

//! Bad input gets exit status 2 and a message that names the value and the
//! next step.

use std::process::{Command, Output};

fn resonate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_resonate"))
        .args(args)
        // Sendspin 1.0, the default, keeps its identity in the state
        // directory: never the user's own here.
        .env(
            "RESONATE_STATE_DIR",
            concat!(env!("CARGO_TARGET_TMPDIR"), "/cli-errors-state"),
        )
        .env_remove("RUST_LOG")
        .output()
        .expect("run resonate")
}

/// Asserts exit status 2 and that stderr contains every one of `needles`.
fn assert_usage_error(args: &[&str], needles: &[&str]) {
    let output = resonate(args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
    for needle in needles {
        assert!(
            stderr.contains(needle),
            "{args:?}: {needle:?} missing from {stderr}"
        );
    }
}

#[test]
fn missing_file_is_named() {
    assert_usage_error(
        &["serve", "/no/such/file.wav"],
        &["/no/such/file.wav", "not found"],
    );
}

#[test]
fn non_audio_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.wav");
    std::fs::write(&path, "these are not samples").unwrap();
    let path = path.to_str().unwrap();
    assert_usage_error(
        &["serve", path],
        &[path, "not a recognized audio file", "convert"],
    );
}

#[test]
fn empty_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.flac");
    std::fs::write(&path, b"").unwrap();
    let path = path.to_str().unwrap();
    assert_usage_error(&["serve", path], &[path]);
}

#[test]
fn malformed_url_is_named() {
    assert_usage_error(
        &["play", "--server", "http://127.0.0.1/", "--output", "null"],
        &["http://127.0.0.1/", "ws://HOST:PORT/PATH"],
    );
}

#[test]
fn unknown_output_lists_valid_forms() {
    assert_usage_error(
        &[
            "play",
            "--server",
            "ws://127.0.0.1:1",
            "--output",
            "speaker",
        ],
        &["speaker", "wav:PATH", "null"],
    );
}

#[test]
fn unreachable_server_is_explained_after_retries() {
    // Port 1 on loopback refuses connections.
    assert_usage_error(
        &[
            "play",
            "--server",
            "ws://127.0.0.1:1/sendspin",
            "--output",
            "null",
            "--connect-attempts",
            "2",
        ],
        &[
            "cannot reach the server at ws://127.0.0.1:1/sendspin after 2 attempt(s)",
            "check that the server runs",
        ],
    );
}

#[test]
fn occupied_port_is_named() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let wav = write_silent_wav(dir.path());
    assert_usage_error(
        &["serve", wav.to_str().unwrap(), "--listen", &addr],
        &[&addr, "--listen"],
    );
}

/// Writes 0.1 s of 8 kHz mono silence to `a.wav` in `dir`.
fn write_silent_wav(dir: &std::path::Path) -> std::path::PathBuf {
    let wav = dir.join("a.wav");
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::create(&wav, spec).unwrap();
    for _ in 0..800 {
        writer.write_sample(0i16).unwrap();
    }
    writer.finalize().unwrap();
    wav
}

#[test]
fn monitor_rejects_non_websocket_url() {
    assert_usage_error(
        &["monitor", "http://127.0.0.1:8930", "--plain"],
        &["http://127.0.0.1:8930", "ws://HOST:PORT"],
    );
}

#[test]
fn monitor_names_unreachable_feed() {
    // Port 1 on loopback refuses connections.
    assert_usage_error(
        &["monitor", "ws://127.0.0.1:1", "--plain"],
        &[
            "ws://127.0.0.1:1",
            "check that the process publishing telemetry runs",
        ],
    );
}

#[test]
fn monitor_rejects_zero_interval() {
    assert_usage_error(
        &["monitor", "ws://127.0.0.1:1", "--interval", "0"],
        &["--interval 0", "0.1"],
    );
}

#[test]
fn monitor_names_unwritable_log_file() {
    assert_usage_error(
        &[
            "monitor",
            "ws://127.0.0.1:1",
            "--log-file",
            "/no/such/dir/monitor.log",
        ],
        &["/no/such/dir/monitor.log", "--log-file"],
    );
}

#[test]
fn play_names_bad_dialect_arguments() {
    assert_usage_error(
        &["play", "--dialect", "carrier-pigeon"],
        &["\"carrier-pigeon\"", "resonate"],
    );
    assert_usage_error(
        &["play", "--dialect", "resonate", "--listen", "127.0.0.1:0"],
        &["--dialect resonate", "--listen", "--server", "/resonate"],
    );
    assert_usage_error(
        &["stress", "--dialect", "carrier-pigeon"],
        &["\"carrier-pigeon\"", "sendspin-v1", "resonate"],
    );
}

#[test]
fn stress_names_bad_arguments() {
    assert_usage_error(
        &["stress", "--scenario", "thunder"],
        &["\"thunder\"", "handshake-storm"],
    );
    assert_usage_error(
        &["stress", "--duration", "0"],
        &["--duration 0", "seconds from"],
    );
    assert_usage_error(&["stress", "--rate=-5"], &["--rate -5", "per second"]);
    assert_usage_error(
        &["stress", "--dialect", "carrier-pigeon"],
        &["\"carrier-pigeon\"", "sendspin-v1"],
    );
    assert_usage_error(
        &["stress", "--server", "http://127.0.0.1:1/"],
        &["http://127.0.0.1:1/", "ws://"],
    );
}

#[test]
fn stress_of_an_unreachable_server_exits_2() {
    // A port that was free a moment ago; nothing listens on it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("ws://127.0.0.1:{port}/sendspin");
    assert_usage_error(
        &["stress", "--server", &url, "--duration", "1"],
        &[&format!("127.0.0.1:{port}"), "Without --server"],
    );
}

#[test]
fn play_that_never_connects_exits_2() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("ws://127.0.0.1:{port}/sendspin");
    assert_usage_error(
        &[
            "play",
            "--server",
            &url,
            "--output",
            "null",
            "--duration",
            "0.5",
        ],
        &["never connected", &url],
    );
}

#[test]
fn listen_address_errors_show_the_form() {
    assert_usage_error(
        &["play", "--listen", "localhost:18930", "--output", "null"],
        &["\"localhost:18930\"", "IP:PORT"],
    );
    assert_usage_error(
        &["serve", "--demo", "--listen", "127.0.0.1"],
        &["\"127.0.0.1\"", "IP:PORT"],
    );
}

#[test]
fn serve_path_needs_a_leading_slash() {
    let dir = tempfile::tempdir().unwrap();
    let wav = write_silent_wav(dir.path());
    let args = [
        "serve",
        wav.to_str().unwrap(),
        "--no-mdns",
        "--path",
        "nopath",
    ];
    assert_usage_error(&args, &["\"nopath\"", "starts with /"]);
}

#[test]
fn stress_of_an_absent_player_exits_2() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("ws://127.0.0.1:{port}");
    assert_usage_error(
        &["stress", "--player", &url, "--duration", "1"],
        &[&format!("127.0.0.1:{port}"), "play --listen"],
    );
}

#[test]
fn discover_timeout_must_be_positive() {
    assert_usage_error(&["discover", "--timeout=-1"], &["\"-1\"", "seconds"]);
    assert_usage_error(&["discover", "--timeout", "soon"], &["soon", "seconds"]);
}

#[test]
fn unknown_interface_is_named() {
    assert_usage_error(
        &["discover", "--interface", "nosuch0"],
        &["\"nosuch0\"", "not found", "ip link"],
    );
}

#[test]
fn serve_client_url_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let wav = write_silent_wav(dir.path());
    let args = [
        "serve",
        wav.to_str().unwrap(),
        "--no-mdns",
        "--client",
        "http://127.0.0.1:8928/",
    ];
    assert_usage_error(&args, &["http://127.0.0.1:8928/", "--client", "ws://"]);
}

#[test]
fn invalid_flag_value_exits_2() {
    assert_usage_error(
        &["play", "--server", "ws://127.0.0.1", "--volume", "101"],
        &["--volume", "101"],
    );
}

#[test]
fn impossible_wav_header_is_an_error_not_a_crash() {
    // A WAV header stating 0 Hz, 2 channels, 16-bit, with 4 frames of data.
    let mut bytes = Vec::new();
    bytes.extend_from_slice(b"RIFF");
    bytes.extend_from_slice(&(36u32 + 16).to_le_bytes());
    bytes.extend_from_slice(b"WAVEfmt ");
    bytes.extend_from_slice(&16u32.to_le_bytes());
    bytes.extend_from_slice(&1u16.to_le_bytes());
    bytes.extend_from_slice(&2u16.to_le_bytes());
    bytes.extend_from_slice(&0u32.to_le_bytes());
    bytes.extend_from_slice(&0u32.to_le_bytes());
    bytes.extend_from_slice(&4u16.to_le_bytes());
    bytes.extend_from_slice(&16u16.to_le_bytes());
    bytes.extend_from_slice(b"data");
    bytes.extend_from_slice(&16u32.to_le_bytes());
    bytes.extend_from_slice(&[0u8; 16]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("zero_hz.wav");
    std::fs::write(&path, bytes).unwrap();
    let path = path.to_str().unwrap();
    assert_usage_error(&["serve", path], &[path, "corrupt"]);
}

#[test]
fn bad_format_request_is_named() {
    assert_usage_error(
        &[
            "play",
            "--server",
            "ws://127.0.0.1:1",
            "--output",
            "null",
            "--request-format",
            "aac:48000",
        ],
        &["aac", "pcm, flac or opus"],
    );
    assert_usage_error(
        &[
            "play",
            "--server",
            "ws://127.0.0.1:1",
            "--output",
            "null",
            "--request-format",
            "flac:fast",
        ],
        &["fast", "whole number"],
    );
}

#[test]
fn codec_without_usable_format_is_named() {
    assert_usage_error(
        &[
            "play",
            "--server",
            "ws://127.0.0.1:1",
            "--output",
            "null",
            "--codec",
            "opus",
            "--sample-rate",
            "44100",
        ],
        &["opus", "44100", "48000"],
    );
}

#[test]
fn opus_bitrate_out_of_range_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.wav");
    assert_usage_error(
        &["serve", path.to_str().unwrap(), "--opus-bitrate", "100"],
        &["100", "500..=512000"],
    );
}

#[test]
fn sink_options_name_their_limits() {
    assert_usage_error(
        &[
            "play",
            "--server",
            "ws://127.0.0.1:1",
            "--output",
            "null",
            "--sink-drift-ppm",
            "5000",
        ],
        &["5000", "-2000 to 2000"],
    );
    assert_usage_error(
        &[
            "play",
            "--server",
            "ws://127.0.0.1:1",
            "--output",
            "null",
            "--sink-latency-ms",
            "-1",
        ],
        &["-1", "0 to 1000"],
    );
    assert_usage_error(
        &[
            "play",
            "--server",
            "ws://127.0.0.1:1",
            "--output",
            "device:speaker",
            "--sink-drift-ppm",
            "20",
        ],
        &["--sink-drift-ppm", "device:speaker", "wav:PATH and null"],
    );
}

#[test]
fn sync_log_in_missing_directory_is_named() {
    assert_usage_error(
        &[
            "play",
            "--server",
            "ws://127.0.0.1:1",
            "--output",
            "null",
            "--sync-log",
            "/no/such/dir/sync.jsonl",
        ],
        &["/no/such/dir/sync.jsonl", "directory"],
    );
}

#[test]
fn non_loopback_telemetry_is_rejected() {
    let file = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/sine440_mono_44100_16bit.flac"
    );
    assert_usage_error(
        &[
            "serve",
            file,
            "--listen",
            "127.0.0.1:0",
            "--no-mdns",
            "--telemetry",
            "0.0.0.0:0",
        ],
        &["0.0.0.0:0", "not a loopback address", "127.0.0.1:PORT"],
    );
}

#[test]
fn legacy_path_is_not_the_sendspin_path() {
    let file = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/sine440_mono_44100_16bit.flac"
    );
    assert_usage_error(
        &[
            "serve",
            file,
            "--legacy",
            "--path",
            "/resonate",
            "--listen",
            "127.0.0.1:0",
            "--no-mdns",
        ],
        &["--path /resonate", "--legacy", "/sendspin"],
    );
}

#[test]
fn sendspin_dialect_arguments_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let wav = write_silent_wav(dir.path());
    let wav = wav.to_str().unwrap();
    let state = dir.path().join("state");
    let state = state.to_str().unwrap();
    assert_usage_error(
        &[
            "stress",
            "--dialect",
            "sendspin",
            "--player",
            "ws://127.0.0.1:9/sendspin",
        ],
        &["--dialect sendspin", "--player", "sendspin-v1"],
    );
    assert_usage_error(
        &[
            "play",
            "--dialect",
            "sendspin",
            "--client-id",
            "x",
            "--server",
            "ws://127.0.0.1:1",
            "--state-dir",
            state,
        ],
        &["--client-id", "--state-dir"],
    );
    assert_usage_error(
        &[
            "play",
            "--dialect",
            "sendspin",
            "--suite",
            "25519_Nope",
            "--server",
            "ws://127.0.0.1:1",
            "--state-dir",
            state,
        ],
        &["\"25519_Nope\"", "25519_ChaChaPoly_SHA256"],
    );
    assert_usage_error(
        &["serve", wav, "--dialect", "sendspin-v1", "--allow-unpaired"],
        &["--allow-unpaired", "Sendspin 1.0", "--dialect sendspin-v1"],
    );
    // Sendspin 1.0 is the default dialect, so ids of the cleartext dialect
    // are rejected unless it is chosen, and the error names the flag.
    assert_usage_error(
        &["serve", wav, "--server-id", "x", "--state-dir", state],
        &["--server-id", "default dialect", "--dialect sendspin-v1"],
    );
    assert_usage_error(
        &[
            "play",
            "--client-id",
            "x",
            "--server",
            "ws://127.0.0.1:1",
            "--state-dir",
            state,
        ],
        &["--client-id", "default dialect", "--dialect sendspin-v1"],
    );
    assert_usage_error(
        &[
            "serve",
            wav,
            "--dialect",
            "sendspin",
            "--approve",
            "not-a-key",
            "--state-dir",
            state,
        ],
        &["--approve", "\"not-a-key\""],
    );
    assert_usage_error(
        &[
            "serve",
            "clients",
            "--revoke",
            "not-a-key",
            "--state-dir",
            state,
        ],
        &["--revoke", "\"not-a-key\""],
    );
    assert_usage_error(
        &[
            "serve",
            "clients",
            "--pair-code",
            "1234-5678",
            "--state-dir",
            state,
        ],
        &["--pair-code", "CLIENT_ID=CODE"],
    );
    let paired_nowhere = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let two_codes = [
        format!("{paired_nowhere}=1111-1111"),
        format!("{paired_nowhere}=2222-2222"),
    ];
    assert_usage_error(
        &[
            "serve",
            "clients",
            "--pair-code",
            &two_codes[0],
            "--pair-code",
            &two_codes[1],
            "--state-dir",
            state,
        ],
        &[paired_nowhere, "more than one pairing request"],
    );
    assert_usage_error(
        &[
            "serve",
            "clients",
            "--pair-code",
            &format!("{paired_nowhere}=1234"),
            "--state-dir",
            state,
        ],
        &["--pair-code", "\"1234\""],
    );
    assert_usage_error(
        &[
            "serve",
            "clients",
            "--unpair",
            paired_nowhere,
            "--state-dir",
            state,
        ],
        &["--unpair", paired_nowhere, "no pairing record"],
    );
    assert_usage_error(
        &[
            "serve",
            wav,
            "--dialect",
            "sendspin",
            "--pair-token",
            "SP:1AAAA",
            "--state-dir",
            state,
        ],
        &["invalid pairing token", "SP:1AAAA"],
    );
    assert_usage_error(
        &[
            "serve",
            wav,
            "--dialect",
            "sendspin",
            "--server-id",
            "x",
            "--state-dir",
            state,
        ],
        &["--server-id", "--state-dir"],
    );
    assert_usage_error(
        &[
            "monitor",
            "--server",
            "ws://127.0.0.1:1",
            "--dialect",
            "sendspin",
        ],
        &[
            "ws://127.0.0.1:1/sendspin",
            "check that a Sendspin server listens",
        ],
    );
}

#[test]
fn serve_rejects_zero_and_absurd_socket_limits() {
    for (flag, value, range) in [
        ("--write-timeout-ms", "0", "100..=600000"),
        ("--late-audio-ms", "0", "10..=60000"),
        ("--late-audio-ms", "3600000", "10..=60000"),
        ("--send-buffer-bytes", "0", "4096..=67108864"),
        ("--send-buffer-bytes", "1073741824", "4096..=67108864"),
    ] {
        assert_usage_error(
            &["serve", "--tone", "sine", flag, value],
            &[flag, value, range],
        );
    }
}

/// A refused connection is named once, not once per level of the error's
/// chain.
#[test]
fn refused_connection_named_once() {
    let state = tempfile::tempdir().unwrap();
    let args = [
        "play",
        "pair",
        "--server",
        "ws://127.0.0.1:1/sendspin",
        "--window",
        "2",
        "--state-dir",
        state.path().to_str().unwrap(),
    ];
    assert_usage_error(&args, &["ws://127.0.0.1:1/sendspin", "refused"]);
    let stderr = String::from_utf8_lossy(&resonate(&args).stderr).into_owned();
    assert_eq!(stderr.matches("refused").count(), 1, "{stderr}");
}

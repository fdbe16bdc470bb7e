//! Interop with the `sendspin` 9.0.0 command-line tool (venv `venv-sendspin`
//! of the peers root):
//!
//! - `sendspin serve SOURCE.wav` streams to `resonate play`, which records
//!   what it plays to a WAV file that must repeat the source sample for
//!   sample (the CLI loops its source forever);
//! - `sendspin daemon --url` joins `resonate serve` as a player and gets the
//!   whole stream in PCM, played to an ALSA `file` plugin device. The daemon
//!   needs PortAudio, and the test skips with the reason when the peers root
//!   has none. What it plays is not checked: the untimed device makes it
//!   play silence.
//!
//! Both CLI programs advertise over mDNS, so every test runs them in a
//! network namespace of its own, whose only interface is loopback. The tests
//! skip with a printed reason when `RESONATE_PEERS_RUN` is unset or a
//! namespace cannot be created. Every wait has a generous time limit, and
//! every process is killed when its handle drops.

mod support;

#[path = "support/netns.rs"]
mod netns;
#[path = "support/process.rs"]
mod process;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use netns::Netns;
use process::spawn;
use support::{read_recording, write_test_wav};

const RATE: u32 = 48_000;
const CHANNELS: u16 = 2;
const BIT_DEPTH: u16 = 16;

/// Length of the source file. `sendspin serve` loops it, so a recording of
/// more than two source lengths also checks the seam between loops.
const SOURCE_SECONDS: f64 = 2.0;

/// How long a test waits for one expected thing before failing. Python
/// start-up inside the peers root is slow on a loaded machine.
const PATIENCE: Duration = Duration::from_secs(60);

/// Returns the peers root's launcher, or None after printing why the test
/// skips.
fn peers_run() -> Option<PathBuf> {
    match std::env::var_os("RESONATE_PEERS_RUN") {
        Some(run) => Some(PathBuf::from(run)),
        None => {
            let thread = thread::current();
            let test = thread.name().unwrap_or("sendspin CLI interop test");
            eprintln!(
                "skipping {test}: RESONATE_PEERS_RUN is unset; set it to the peers root's \
                 `run` launcher to run the sendspin 9.0.0 CLI"
            );
            None
        }
    }
}

/// A `sendspin` CLI process whose stdout and stderr lines are collected,
/// because it prints plain text and Python logging, not JSON.
struct CliProc {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl CliProc {
    /// Runs `sendspin ARGS` from `venv-sendspin` inside `netns`, with `dir`
    /// visible in the peers root at its host path and `env` set.
    fn start(netns: &Netns, run: &Path, dir: &Path, args: &[&str], env: &[(&str, &Path)]) -> Self {
        let mut command = netns.command(run);
        command
            .arg("venv-sendspin")
            .arg("--cwd")
            .arg(dir)
            .arg("sendspin")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().unwrap_or_else(|err| {
            panic!(
                "starting `sendspin {}` in the peers root failed: {err}",
                args.join(" ")
            )
        });
        let (tx, lines) = mpsc::channel();
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let tx = tx.clone();
            thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    eprintln!("sendspin: {line}");
                    if tx.send(line).is_err() {
                        return;
                    }
                }
            });
        }
        CliProc {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits up to `patience` for a line that contains `needle`, and
    /// returns it.
    fn wait_line(&mut self, needle: &str, patience: Duration) -> String {
        if let Some(line) = self.seen.iter().find(|line| line.contains(needle)) {
            return line.clone();
        }
        let deadline = Instant::now() + patience;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "sendspin printed no line with {needle:?} within {patience:?}; it printed {:?}",
                    self.seen
                ),
            }
        }
    }

    /// Sends SIGINT, which both CLI programs handle as Ctrl-C, and waits
    /// for the exit status.
    fn interrupt(&mut self) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -INT failed");
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "sendspin {} did not exit within {PATIENCE:?} of SIGINT",
                self.child.id()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for CliProc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Returns the first source frame at which `probe` (whole frames) occurs in
/// the source looped, so a probe that spans the end of the source is found.
fn find_in_loop(source: &[i32], probe: &[i32]) -> Option<usize> {
    let channels = usize::from(CHANNELS);
    let frames = source.len() / channels;
    (0..frames).find(|&start| {
        probe
            .iter()
            .enumerate()
            .all(|(index, &sample)| source[(start * channels + index) % source.len()] == sample)
    })
}

/// Returns the number of leading frames of `samples` that are all zero.
fn leading_silent_frames(samples: &[i32]) -> usize {
    samples
        .chunks_exact(usize::from(CHANNELS))
        .take_while(|frame| frame.iter().all(|&sample| sample == 0))
        .count()
}

/// Checks that `recorded` is the source looped, from the place its first
/// frames occur, sample for sample, and returns that place.
fn assert_source_looped(label: &str, source: &[i32], recorded: &[i32]) -> usize {
    let channels = usize::from(CHANNELS);
    let probe = &recorded[..recorded.len().min(64 * channels)];
    let start = find_in_loop(source, probe).unwrap_or_else(|| {
        panic!(
            "{label}: the first recorded frames {:?} occur nowhere in the source",
            &probe[..probe.len().min(8)]
        )
    });
    let mismatch = recorded
        .iter()
        .enumerate()
        .find(|&(index, &sample)| source[(start * channels + index) % source.len()] != sample);
    if let Some((index, &sample)) = mismatch {
        let expected = source[(start * channels + index) % source.len()];
        panic!(
            "{label}: recorded frame {} (channel {}) is {sample}, but the looped source has \
             {expected} there; the recording starts at source frame {start} and has {} frames",
            index / channels,
            index % channels,
            recorded.len() / channels
        );
    }
    start
}

/// Returns an estimate of the data bytes in a WAV file being written: its
/// size on disk less a canonical 44-byte header. Chunks the writer adds
/// besides the data make it an overestimate, so callers check the frame
/// count of the finished file too.
fn wav_data_bytes(path: &Path) -> u64 {
    std::fs::metadata(path)
        .map(|meta| meta.len().saturating_sub(44))
        .unwrap_or(0)
}

#[test]
fn sendspin_serve_streams_pcm_to_play() {
    let Some(run) = peers_run() else { return };
    let Some(netns) = Netns::create() else { return };
    // The peers root shares the host's /tmp, so the source is written there.
    let dir = tempfile::Builder::new()
        .prefix("resonate-sendspin-cli")
        .tempdir_in("/tmp")
        .unwrap();
    let source_path = dir.path().join("source.wav");
    let source = write_test_wav(&source_path, RATE, CHANNELS, BIT_DEPTH, SOURCE_SECONDS);
    let source_frames = source.len() / usize::from(CHANNELS);

    // The namespace is private, so the CLI's default port is free. When a
    // port is taken, the CLI tries the next one and logs the port it bound.
    let mut server = CliProc::start(
        &netns,
        &run,
        dir.path(),
        &[
            "serve",
            source_path.to_str().unwrap(),
            "--port",
            "8927",
            "--name",
            "CLI Server",
        ],
        &[],
    );
    let started = server.wait_line("Sendspin server started successfully on", PATIENCE);
    let port = started
        .rsplit(':')
        .next()
        .and_then(|port| port.trim().parse::<u16>().ok())
        .unwrap_or_else(|| panic!("no port in the CLI's start line {started:?}"));
    let url = format!("ws://127.0.0.1:{port}/sendspin");

    // Default dialect: Sendspin 1.0, unpaired. `sendspin serve` approves
    // every unpaired client for playback.
    let played_path = dir.path().join("played.wav");
    let output = format!("wav:{}", played_path.display());
    let state_dir = dir.path().join("state");
    let rate = RATE.to_string();
    let bits = BIT_DEPTH.to_string();
    let channels = CHANNELS.to_string();
    let mut play = spawn(netns.resonate(&[
        "play",
        "--server",
        &url,
        "--state-dir",
        state_dir.to_str().unwrap(),
        "--output",
        &output,
        "--codec",
        "pcm",
        "--sample-rate",
        &rate,
        "--bit-depth",
        &bits,
        "--channels",
        &channels,
        "--no-drift-correction",
        "--json",
    ]));
    let connected = play.wait_event("connected", PATIENCE);
    assert_eq!(connected["dialect"], "sendspin", "{connected}");
    let stream = play.wait_event("stream_started", PATIENCE);
    assert_eq!(stream["codec"], "pcm", "{stream}");
    assert_eq!(stream["sample_rate"], RATE, "{stream}");
    assert_eq!(stream["bit_depth"], BIT_DEPTH, "{stream}");
    assert_eq!(stream["channels"], CHANNELS, "{stream}");

    // Record until the WAV file contains about 2.5 source lengths, so the
    // check below covers a whole loop and the seam between two loops.
    let target_bytes = (source.len() as u64 * u64::from(BIT_DEPTH / 8)) * 5 / 2;
    let deadline = Instant::now() + PATIENCE;
    while wav_data_bytes(&played_path) < target_bytes {
        assert!(
            Instant::now() < deadline,
            "resonate play wrote {} of {target_bytes} bytes within {PATIENCE:?}; events {:?}",
            wav_data_bytes(&played_path),
            play.seen
        );
        thread::sleep(Duration::from_millis(100));
    }
    let status = play.interrupt();
    assert!(
        status.success(),
        "resonate play exited with {status} after SIGINT"
    );
    let status = server.interrupt();
    assert!(
        status.success(),
        "sendspin serve exited with {status} after SIGINT"
    );

    let recording = read_recording(&played_path);
    assert_eq!(recording.spec.sample_rate, RATE);
    assert_eq!(recording.spec.channels, CHANNELS);
    assert_eq!(recording.spec.bits_per_sample, BIT_DEPTH);
    let label = "sendspin serve to resonate play";
    let silent = leading_silent_frames(&recording.samples);
    let audible = &recording.samples[silent * usize::from(CHANNELS)..];
    let recorded_frames = audible.len() / usize::from(CHANNELS);
    assert!(
        recorded_frames > 2 * source_frames,
        "{label}: recorded {recorded_frames} frames after {silent} silent ones, \
         not more than two source lengths ({source_frames} frames each)"
    );
    let start = assert_source_looped(label, &source, audible);
    eprintln!(
        "{label}: {silent} silent frames, then {recorded_frames} frames equal to the source \
         looped from frame {start}"
    );
}

/// Returns the first line of `text` that contains `needle`, trimmed.
fn line_with<'a>(text: &'a str, needle: &str) -> Option<&'a str> {
    text.lines()
        .find(|line| line.contains(needle))
        .map(str::trim)
}

/// Writes an ALSA configuration with one PCM device, `resonate_capture`: the
/// `file` plugin over the `null` plugin, which writes what is played to
/// `capture` as raw PCM. PortAudio lists the devices of `~/.asoundrc`.
fn write_asoundrc(home: &Path, capture: &Path) {
    let config = format!(
        "pcm.resonate_capture {{\n    type file\n    slave.pcm \"null\"\n    file \"{}\"\n    format \"raw\"\n}}\n",
        capture.display()
    );
    std::fs::write(home.join(".asoundrc"), config).expect("write .asoundrc");
}

#[test]
fn sendspin_daemon_plays_from_serve() {
    let Some(run) = peers_run() else { return };
    let Some(netns) = Netns::create() else { return };
    let dir = tempfile::Builder::new()
        .prefix("resonate-sendspin-daemon")
        .tempdir_in("/tmp")
        .unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    // NOTE: the PCM the daemon plays is thrown away, not checked. The
    // `null` plugin takes frames as fast as they are written, not at the
    // sample rate, and a trial capture of 3 MB through the `file` plugin
    // held only silence from sendspin 9.0.0. docs/protocol-notes.md has the
    // details. A timed sink needs a sound server or the snd-aloop module.
    write_asoundrc(&home, Path::new("/dev/null"));

    // The daemon opens every output through PortAudio, even an ALSA plugin
    // device, and exits at once when the library is missing.
    let listing = netns
        .command(&run)
        .arg("venv-sendspin")
        .arg("--cwd")
        .arg(dir.path())
        .args(["sendspin", "audio-devices", "list"])
        .env("HOME", &home)
        .stdin(Stdio::null())
        .output()
        .expect("run sendspin audio-devices list in the peers root");
    let listing = String::from_utf8_lossy(&listing.stdout).into_owned()
        + &String::from_utf8_lossy(&listing.stderr);
    if let Some(error) = line_with(&listing, "PortAudio library not found") {
        eprintln!(
            "skipping sendspin_daemon_plays_from_serve: sendspin daemon 9.0.0 cannot run here \
             because it prints {error:?}. It opens every audio output, even ALSA's null and \
             file plugins, through PortAudio, and the peers root has no libportaudio2"
        );
        return;
    }
    assert!(
        listing.contains("resonate_capture"),
        "sendspin audio-devices list does not list the ALSA device of {}: {listing}",
        home.join(".asoundrc").display()
    );

    let source_path = dir.path().join("source.wav");
    write_test_wav(&source_path, RATE, CHANNELS, BIT_DEPTH, SOURCE_SECONDS);
    let serve_state = dir.path().join("serve-state");
    let mut serve = spawn(netns.resonate(&[
        "serve",
        source_path.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--allow-unpaired",
        "--state-dir",
        serve_state.to_str().unwrap(),
        "--json",
    ]));
    let listening = serve.wait_event("listening", PATIENCE);
    assert_eq!(listening["dialect"], "sendspin", "{listening}");
    let url = listening["url"]
        .as_str()
        .expect("listening url")
        .to_string();

    let settings = dir.path().join("daemon-settings");
    let format = format!("pcm:{RATE}:{BIT_DEPTH}:{CHANNELS}");
    let mut daemon = CliProc::start(
        &netns,
        &run,
        dir.path(),
        &[
            "daemon",
            "--url",
            &url,
            "--settings-dir",
            settings.to_str().unwrap(),
            "--audio-device",
            "resonate_capture",
            "--audio-format",
            &format,
            "--disable-mpris",
            "--name",
            "CLI Daemon",
        ],
        &[("HOME", &home)],
    );
    let starting = daemon.wait_line("Starting Sendspin daemon:", PATIENCE);
    let client_id = starting.rsplit(": ").next().unwrap().trim().to_string();

    let joined = serve.wait_event("client_joined", PATIENCE);
    assert_eq!(joined["client_id"], client_id.as_str(), "{joined}");
    assert_eq!(
        joined["active_roles"],
        serde_json::json!(["player@v1"]),
        "{joined}"
    );
    let stream = serve.wait_event("stream_started", PATIENCE);
    assert_eq!(stream["client_id"], client_id.as_str(), "{stream}");
    assert_eq!(stream["codec"], "pcm", "{stream}");
    assert_eq!(stream["sample_rate"], RATE, "{stream}");
    assert_eq!(stream["bit_depth"], BIT_DEPTH, "{stream}");
    assert_eq!(stream["channels"], CHANNELS, "{stream}");
    daemon.wait_line(
        &format!("Audio format: pcm {RATE}Hz/{BIT_DEPTH}-bit/{CHANNELS}ch"),
        PATIENCE,
    );

    // serve sends the whole file, then ends the stream: 20 ms chunks.
    let ended = serve.wait_event("stream_ended", PATIENCE);
    assert_eq!(ended["client_id"], client_id.as_str(), "{ended}");
    let source_frames = (f64::from(RATE) * SOURCE_SECONDS) as u64;
    let chunk_frames = u64::from(RATE) / 50;
    assert_eq!(
        ended["chunks_sent"],
        source_frames.div_ceil(chunk_frames),
        "{ended}"
    );
    serve.wait_event("program_ended", PATIENCE);

    let status = daemon.interrupt();
    assert!(
        status.success(),
        "sendspin daemon exited with {status} after SIGINT"
    );
    let closed = serve.wait_event("session_closed", PATIENCE);
    assert_eq!(closed["client_id"], client_id.as_str(), "{closed}");
    assert!(serve.interrupt().success());
}

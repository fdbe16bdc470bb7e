//! Interop with the `sendspin` 9.0.0 command-line tool (venv `venv-sendspin`
//! of the peers root):
//!
//! - `sendspin serve SOURCE.wav` streams to `resonate play`, which records
//!   what it plays to a WAV file that must repeat the source sample for
//!   sample (the CLI loops its source forever);
//! - `sendspin daemon --url` joins `resonate serve` as a player and plays
//!   the stream to an ALSA `file` plugin device that writes into a FIFO,
//!   which the test reads at the sample rate. The captured PCM must be the
//!   looped source, split only where the daemon repeats or drops a frame to
//!   keep sync. The daemon needs PortAudio, and the test skips with the
//!   reason when the peers root has none.
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
    // The listing opens the device once, so it writes to /dev/null here.
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

    // The device writes what the daemon plays into a FIFO, which the test
    // reads at the sample rate. The `null` plugin alone takes frames as fast
    // as they are written, and a daemon writing faster than real time drops
    // everything as late, so the paced reader is the clock of this device.
    let capture = dir.path().join("capture.fifo");
    let status = Command::new("mkfifo")
        .arg(&capture)
        .status()
        .expect("run mkfifo");
    assert!(status.success(), "mkfifo {} failed", capture.display());
    write_asoundrc(&home, &capture);
    let captured = start_paced_capture(&capture, CAPTURE_SECONDS);

    let source_path = dir.path().join("source.wav");
    write_test_wav(&source_path, RATE, CHANNELS, BIT_DEPTH, SOURCE_SECONDS);
    let serve_state = dir.path().join("serve-state");
    let mut serve = spawn(netns.resonate(&[
        "serve",
        source_path.to_str().unwrap(),
        "--loop",
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

    // The daemon scales its output by its volume, 25 of 100 by default, so
    // it starts at 100 to play the stream unchanged.
    let settings = dir.path().join("daemon-settings");
    std::fs::create_dir(&settings).unwrap();
    std::fs::write(
        settings.join("settings-daemon.json"),
        r#"{"player_volume": 100, "player_muted": false}"#,
    )
    .unwrap();
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

    // The capture ends after CAPTURE_SECONDS of paced reading.
    let captured = captured
        .recv_timeout(PATIENCE + Duration::from_secs(CAPTURE_SECONDS))
        .expect("the paced capture did not finish");
    let status = daemon.interrupt();
    assert!(
        status.success(),
        "sendspin daemon exited with {status} after SIGINT"
    );
    let closed = serve.wait_event("session_closed", PATIENCE);
    assert_eq!(closed["client_id"], client_id.as_str(), "{closed}");
    assert!(serve.interrupt().success());

    let samples: Vec<i32> = captured
        .chunks_exact(2)
        .map(|pair| i32::from(i16::from_le_bytes([pair[0], pair[1]])))
        .collect();
    let source = read_recording_source(&source_path);
    let label = "resonate serve to sendspin daemon";
    let matched = assert_source_runs(label, &source, &samples);
    let source_frames = source.len() / usize::from(CHANNELS);
    assert!(
        matched >= source_frames,
        "{label}: only {matched} captured frames match the source, less than one source length \
         ({source_frames} frames)"
    );
}

/// Seconds of the daemon's output that the capture reads.
const CAPTURE_SECONDS: u64 = 10;

/// Reads the FIFO at `capture` at the sample rate of 16-bit stereo, as a
/// sound card would take frames, and sends the first `seconds` of bytes.
/// The device is opened and closed once while PortAudio lists devices, so
/// the FIFO is opened again after each end of file. The bytes after the
/// capture are read and dropped until the daemon closes the device.
fn start_paced_capture(capture: &Path, seconds: u64) -> mpsc::Receiver<Vec<u8>> {
    let bytes_per_second = u64::from(RATE) * u64::from(CHANNELS) * u64::from(BIT_DEPTH / 8);
    let total = (bytes_per_second * seconds) as usize;
    let capture = capture.to_path_buf();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut data = Vec::with_capacity(total);
        let mut started: Option<Instant> = None;
        let mut buffer = vec![0u8; 3840];
        while data.len() < total {
            let Ok(mut fifo) = std::fs::File::open(&capture) else {
                return;
            };
            loop {
                let start = *started.get_or_insert_with(Instant::now);
                let due =
                    start + Duration::from_secs_f64(data.len() as f64 / bytes_per_second as f64);
                thread::sleep(due.saturating_duration_since(Instant::now()));
                let want = buffer.len().min(total - data.len());
                match std::io::Read::read(&mut fifo, &mut buffer[..want]) {
                    Ok(0) | Err(_) => break,
                    Ok(read) => data.extend_from_slice(&buffer[..read]),
                }
                if data.len() == total {
                    let _ = tx.send(std::mem::take(&mut data));
                    let _ = std::io::copy(&mut fifo, &mut std::io::sink());
                    return;
                }
            }
        }
    });
    rx
}

/// Returns the samples of the source WAV file.
fn read_recording_source(path: &Path) -> Vec<i32> {
    hound::WavReader::open(path)
        .expect("open the source WAV")
        .samples::<i32>()
        .map(|sample| sample.expect("read a source sample"))
        .collect()
}

/// Checks that every frame of `captured` after its leading silence belongs
/// to a run of at least 8 frames that equals the looped source sample for
/// sample. A run that follows another without silence must start within 2
/// source frames of where the other ended. The daemon corrects
/// its sync by repeating or dropping single frames, which splits the runs.
/// Returns the number of frames in runs.
fn assert_source_runs(label: &str, source: &[i32], captured: &[i32]) -> usize {
    const PROBE_FRAMES: usize = 8;
    let channels = usize::from(CHANNELS);
    let source_frames = source.len() / channels;
    let frames = captured.len() / channels;
    let frame = |index: usize| &captured[index * channels..(index + 1) * channels];
    let source_frame = |index: usize| {
        let index = index % source_frames;
        &source[index * channels..(index + 1) * channels]
    };
    let silent = leading_silent_frames(captured);
    assert!(
        silent < frames,
        "{label}: the daemon played only silence ({frames} frames)"
    );

    let (mut index, mut matched, mut runs) = (silent, 0, 0);
    let mut previous_end: Option<usize> = None;
    while index < frames {
        if frame(index).iter().all(|&sample| sample == 0) {
            previous_end = None;
            index += 1;
            continue;
        }
        let probe_end = (index + PROBE_FRAMES).min(frames);
        let probe = &captured[index * channels..probe_end * channels];
        // A run after a repeated or dropped frame starts next to where the
        // previous run ended, so those places are tried before a search.
        let nearby = previous_end.and_then(|end| {
            [0, 1, source_frames - 1, 2, source_frames - 2]
                .into_iter()
                .map(|step| (end + step) % source_frames)
                .find(|&start| {
                    (0..probe.len() / channels).all(|k| frame(index + k) == source_frame(start + k))
                })
        });
        let start = nearby
            .or_else(|| find_in_loop(source, probe))
            .unwrap_or_else(|| {
                panic!(
                "{label}: captured frames {index}..{probe_end} {:?} occur nowhere in the source; \
                 {runs} runs matched before them",
                &probe[..probe.len().min(8)]
            )
            });
        if let Some(end) = previous_end {
            let distance = (start + source_frames - end % source_frames) % source_frames;
            assert!(
                distance <= 2 || distance >= source_frames - 2,
                "{label}: the run at captured frame {index} starts at source frame {start}, \
                 {distance} frames from the end of the previous run (source frame {})",
                end % source_frames
            );
        }
        let mut length = 0;
        while index + length < frames && frame(index + length) == source_frame(start + length) {
            length += 1;
        }
        assert!(
            length >= PROBE_FRAMES || index + length == frames,
            "{label}: a run of only {length} frames matches the source at captured frame {index}"
        );
        matched += length;
        runs += 1;
        previous_end = Some(start + length);
        index += length;
    }
    eprintln!(
        "{label}: {silent} silent frames, then {matched} of {} frames in {runs} runs equal to the \
         looped source",
        frames - silent
    );
    matched
}

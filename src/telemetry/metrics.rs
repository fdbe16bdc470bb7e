//! Prometheus text exposition (version 0.0.4) of a snapshot, served at
//! `/metrics` by the telemetry feed.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::{ClockView, Phase, Snapshot};

/// Content type of the exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Renders `snapshot` in the Prometheus text format.
///
/// Counters named `family.key` in the snapshot become one metric
/// `resonate_family_total` with a `key` label, so `closed.goodbye` and
/// `closed.replaced` are two series of `resonate_closed_total`.
pub fn render(snapshot: &Snapshot) -> String {
    let mut out = String::with_capacity(256 + snapshot.sessions.len() * 512);
    render_source(&mut out, snapshot);
    render_counters(&mut out, snapshot);
    render_gauges(&mut out, snapshot);
    render_sessions(&mut out, snapshot);
    render_groups(&mut out, snapshot);
    out
}

fn render_source(out: &mut String, snapshot: &Snapshot) {
    let source = &snapshot.source;
    header(
        out,
        "resonate_info",
        "gauge",
        "Source of this telemetry; the value is always 1.",
    );
    let labels = [
        ("kind", source.kind.as_str()),
        ("name", source.name.as_str()),
        ("target", source.target.as_str()),
    ];
    sample(out, "resonate_info", &labels, 1.0);

    let uptime = snapshot
        .taken_unix_ms
        .saturating_sub(source.started_unix_ms) as f64
        / 1000.0;
    header(
        out,
        "resonate_uptime_seconds",
        "gauge",
        "Seconds since the source started.",
    );
    sample(out, "resonate_uptime_seconds", &[], uptime);
}

fn render_counters(out: &mut String, snapshot: &Snapshot) {
    let mut families: BTreeMap<String, Vec<(Option<&str>, u64)>> = BTreeMap::new();
    for (name, value) in &snapshot.counters {
        let (family, key) = match name.split_once('.') {
            Some((family, key)) => (family, Some(key)),
            None => (name.as_str(), None),
        };
        families
            .entry(metric_name(family))
            .or_default()
            .push((key, *value));
    }
    for (family, series) in families {
        let name = format!("resonate_{family}_total");
        header(out, &name, "counter", "Total since the source started.");
        for (key, value) in series {
            match key {
                Some(key) => sample(out, &name, &[("key", key)], value as f64),
                None => sample(out, &name, &[], value as f64),
            }
        }
    }
}

fn render_gauges(out: &mut String, snapshot: &Snapshot) {
    for (name, value) in &snapshot.gauges {
        let name = format!("resonate_{}", metric_name(name));
        header(out, &name, "gauge", "Current value.");
        sample(out, &name, &[], *value);
    }
}

fn render_sessions(out: &mut String, snapshot: &Snapshot) {
    header(out, "resonate_sessions", "gauge", "Sessions by phase.");
    for phase in [
        Phase::Connecting,
        Phase::Handshaking,
        Phase::Active,
        Phase::Closing,
    ] {
        let count = snapshot
            .sessions
            .iter()
            .filter(|s| s.phase == phase)
            .count();
        sample(
            out,
            "resonate_sessions",
            &[("phase", phase.as_str())],
            count as f64,
        );
    }

    let clocks = [
        (
            "resonate_clock_offset_microseconds",
            "Server time minus client time.",
            Field::Offset,
        ),
        (
            "resonate_clock_rtt_microseconds",
            "Round-trip time between client and server.",
            Field::Rtt,
        ),
        (
            "resonate_clock_drift_ppm",
            "Rate of change of the clock offset.",
            Field::Drift,
        ),
        (
            "resonate_clock_error_microseconds",
            "Standard deviation of the offset estimate.",
            Field::Error,
        ),
    ];
    for (name, help, field) in clocks {
        header(out, name, "gauge", help);
        for row in &snapshot.sessions {
            let client_id = row.client_id.as_deref().unwrap_or("");
            let views = [
                ("server_estimate", row.server_clock),
                ("client_report", row.client_clock),
            ];
            for (estimate, view) in views {
                if let Some(value) = view.as_ref().and_then(|v| field.read(v)) {
                    let labels = [
                        ("session", row.session.as_str()),
                        ("client_id", client_id),
                        ("estimate", estimate),
                    ];
                    sample(out, name, &labels, value);
                }
            }
        }
    }

    header(
        out,
        "resonate_buffer_milliseconds",
        "gauge",
        "Audio buffered ahead of the play position.",
    );
    for row in &snapshot.sessions {
        if let Some(buffer_ms) = row.buffer_ms {
            sample(
                out,
                "resonate_buffer_milliseconds",
                &session_labels(row),
                buffer_ms,
            );
        }
    }
    header(
        out,
        "resonate_late_chunks",
        "gauge",
        "Audio chunks of the session that arrived after their play time.",
    );
    for row in &snapshot.sessions {
        sample(
            out,
            "resonate_late_chunks",
            &session_labels(row),
            row.late_chunks as f64,
        );
    }
    header(
        out,
        "resonate_dropped_chunks",
        "gauge",
        "Audio chunks of the session that were dropped.",
    );
    for row in &snapshot.sessions {
        sample(
            out,
            "resonate_dropped_chunks",
            &session_labels(row),
            row.dropped_chunks as f64,
        );
    }
}

fn render_groups(out: &mut String, snapshot: &Snapshot) {
    header(
        out,
        "resonate_group_members",
        "gauge",
        "Members of each group.",
    );
    for group in &snapshot.groups {
        let labels = [
            ("group", group.id.as_str()),
            ("playback", group.playback.as_str()),
        ];
        sample(
            out,
            "resonate_group_members",
            &labels,
            group.members.len() as f64,
        );
    }
    header(
        out,
        "resonate_group_volume",
        "gauge",
        "Group volume, 0 to 100.",
    );
    for group in &snapshot.groups {
        if let Some(volume) = group.volume {
            sample(
                out,
                "resonate_group_volume",
                &[("group", group.id.as_str())],
                f64::from(volume),
            );
        }
    }
}

#[derive(Clone, Copy)]
enum Field {
    Offset,
    Rtt,
    Drift,
    Error,
}

impl Field {
    fn read(self, view: &ClockView) -> Option<f64> {
        match self {
            Field::Offset => Some(view.offset_us),
            Field::Rtt => view.rtt_us,
            Field::Drift => view.drift_ppm,
            Field::Error => view.error_us,
        }
    }
}

fn session_labels(row: &super::SessionRow) -> [(&'static str, &str); 2] {
    [
        ("session", row.session.as_str()),
        ("client_id", row.client_id.as_deref().unwrap_or("")),
    ]
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: f64) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (label, value)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(label);
            out.push_str("=\"");
            escape_label(out, value);
            out.push('"');
        }
        out.push('}');
    }
    let _ = writeln!(out, " {}", format_value(value));
}

/// Escapes a label value: backslash, double quote and line feed.
fn escape_label(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn format_value(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value.is_infinite() {
        if value > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{value}")
    }
}

/// Turns a counter family into a valid metric name part: letters, digits
/// and underscores.
fn metric_name(family: &str) -> String {
    family
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::{GroupRow, SessionRow, SourceInfo};
    use super::*;

    fn snapshot() -> Snapshot {
        Snapshot {
            source: SourceInfo {
                kind: "serve".into(),
                name: "living \"room\"".into(),
                target: "127.0.0.1:8927".into(),
                started_unix_ms: 1_000,
            },
            taken_unix_ms: 11_000,
            sessions: vec![SessionRow {
                session: "s1".into(),
                client_id: Some("kitchen".into()),
                phase: Phase::Active,
                server_clock: Some(ClockView {
                    offset_us: -250.0,
                    rtt_us: Some(120.0),
                    ..Default::default()
                }),
                buffer_ms: Some(1800.0),
                late_chunks: 2,
                ..Default::default()
            }],
            groups: vec![GroupRow {
                id: "main".into(),
                members: vec!["kitchen".into()],
                playback: "playing".into(),
                volume: Some(35),
                ..Default::default()
            }],
            counters: [
                ("sessions_opened".to_string(), 4),
                ("closed.goodbye".to_string(), 3),
            ]
            .into(),
            gauges: [("tasks_live".to_string(), 2.0)].into(),
            notes: vec![],
        }
    }

    #[test]
    fn renders_every_family() {
        let text = render(&snapshot());
        for line in [
            "resonate_info{kind=\"serve\",name=\"living \\\"room\\\"\",target=\"127.0.0.1:8927\"} 1",
            "resonate_uptime_seconds 10",
            "resonate_sessions_opened_total 4",
            "resonate_closed_total{key=\"goodbye\"} 3",
            "resonate_tasks_live 2",
            "resonate_sessions{phase=\"active\"} 1",
            "resonate_sessions{phase=\"closing\"} 0",
            "resonate_clock_offset_microseconds{session=\"s1\",client_id=\"kitchen\",estimate=\"server_estimate\"} -250",
            "resonate_clock_rtt_microseconds{session=\"s1\",client_id=\"kitchen\",estimate=\"server_estimate\"} 120",
            "resonate_buffer_milliseconds{session=\"s1\",client_id=\"kitchen\"} 1800",
            "resonate_late_chunks{session=\"s1\",client_id=\"kitchen\"} 2",
            "resonate_group_members{group=\"main\",playback=\"playing\"} 1",
            "resonate_group_volume{group=\"main\"} 35",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
    }

    #[test]
    fn every_sample_has_a_type_line() {
        let text = render(&snapshot());
        let typed: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .map(|l| l.split(' ').next().unwrap())
            .collect();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap();
            assert!(typed.contains(&name), "{name} has no TYPE line");
        }
    }

    #[test]
    fn missing_estimates_are_left_out() {
        let text = render(&snapshot());
        assert!(!text.contains("resonate_clock_drift_ppm{"), "{text}");
        assert!(!text.contains("client_report"), "{text}");
    }
}

//! Property tests: messages and binary frames survive encode and decode in
//! each dialect, decoders return errors instead of panicking on any input,
//! and the clock filter keeps its invariants.

use proptest::prelude::*;
use resonate::dialect::{Dialect, Incoming, Outgoing};
use resonate::protocol::{
    BinaryFrame, BinaryKind, ClientGoodbye, ClientHello, ClientState, ClientTime, ConnectionReason,
    GoodbyeReason, Message, PlayerState, PlayerSupport, ServerHello, ServerTime, StreamEnd,
    SupportedFormat,
};
use resonate::sync::{ClockSnapshot, FilterConfig, Measurement, TimeFilter};
use serde_json::Map;
use tokio_tungstenite::tungstenite::Message as WsMessage;

fn text() -> impl Strategy<Value = String> {
    ".{0,24}"
}

fn supported_format() -> impl Strategy<Value = SupportedFormat> {
    (
        prop_oneof!["pcm", "flac", "opus", "[a-z]{1,6}"],
        any::<u16>(),
        any::<u32>(),
        any::<u16>(),
    )
        .prop_map(
            |(codec, channels, sample_rate, bit_depth)| SupportedFormat {
                codec,
                channels,
                sample_rate,
                bit_depth,
            },
        )
}

fn client_hello() -> impl Strategy<Value = ClientHello> {
    let support = (
        prop::collection::vec(supported_format(), 0..4),
        any::<u64>(),
        prop::collection::vec(text(), 0..3),
    )
        .prop_map(
            |(supported_formats, buffer_capacity, supported_commands)| PlayerSupport {
                supported_formats,
                buffer_capacity,
                supported_commands,
            },
        );
    (
        text(),
        text(),
        any::<u32>(),
        prop::collection::vec(text(), 0..4),
        prop::option::of(support),
    )
        .prop_map(
            |(client_id, name, version, supported_roles, player_support)| ClientHello {
                client_id,
                name,
                device_info: None,
                version,
                supported_roles,
                player_support,
                artwork_support: None,
                visualizer_support: None,
                extra: Map::new(),
            },
        )
}

fn goodbye_reason() -> impl Strategy<Value = GoodbyeReason> {
    prop::sample::select(GoodbyeReason::ALL.to_vec())
}

/// Messages of Sendspin v1 that carry only fields the strategies fill.
fn v1_message() -> impl Strategy<Value = Message> {
    prop_oneof![
        client_hello().prop_map(Message::ClientHello),
        any::<i64>().prop_map(|t| Message::ClientTime(ClientTime {
            client_transmitted: t
        })),
        (any::<i64>(), any::<i64>(), any::<i64>()).prop_map(|(t1, t2, t3)| Message::ServerTime(
            ServerTime {
                client_transmitted: t1,
                server_received: t2,
                server_transmitted: t3,
            }
        )),
        goodbye_reason().prop_map(|reason| Message::ClientGoodbye(ClientGoodbye { reason })),
        (
            text(),
            text(),
            any::<u32>(),
            prop::collection::vec(text(), 0..3),
            any::<bool>()
        )
            .prop_map(|(server_id, name, version, active_roles, playback)| {
                Message::ServerHello(ServerHello {
                    server_id,
                    name,
                    version,
                    active_roles,
                    connection_reason: if playback {
                        ConnectionReason::Playback
                    } else {
                        ConnectionReason::Discovery
                    },
                })
            }),
        (
            prop::option::of(any::<u8>()),
            prop::option::of(any::<bool>())
        )
            .prop_map(|(volume, muted)| {
                Message::ClientState(ClientState {
                    player: Some(PlayerState { volume, muted }),
                    ..Default::default()
                })
            }),
        prop::option::of(prop::collection::vec(text(), 0..3))
            .prop_map(|roles| Message::StreamEnd(StreamEnd { roles })),
    ]
}

fn binary_frame() -> impl Strategy<Value = BinaryFrame> {
    (
        any::<u8>(),
        any::<i64>(),
        prop::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(|(kind, timestamp_us, payload)| {
            BinaryFrame::new(BinaryKind::from_type(kind), timestamp_us, payload)
        })
}

/// Encodes `outgoing` in `dialect` and decodes the frame again.
fn round_trip(dialect: Dialect, outgoing: &Outgoing) -> Option<Incoming> {
    let frame = dialect.codec().encode(outgoing)?;
    Some(
        dialect
            .codec()
            .decode(frame)
            .expect("an encoded frame decodes"),
    )
}

proptest! {
    #[test]
    fn v1_messages_round_trip(message in v1_message()) {
        let decoded = round_trip(Dialect::SendspinV1, &Outgoing::Message(message.clone()));
        prop_assert_eq!(decoded, Some(Incoming::Message(message)));
    }

    #[test]
    fn legacy_time_messages_round_trip(t1 in any::<i64>(), t2 in any::<i64>(), t3 in any::<i64>()) {
        let client_time = Message::ClientTime(ClientTime { client_transmitted: t1 });
        let decoded = round_trip(Dialect::Resonate, &Outgoing::Message(client_time.clone()));
        prop_assert_eq!(decoded, Some(Incoming::Message(client_time)));

        let server_time = Message::ServerTime(ServerTime { client_transmitted: t1, server_received: t2, server_transmitted: t3 });
        let decoded = round_trip(Dialect::Resonate, &Outgoing::Message(server_time.clone()));
        prop_assert_eq!(decoded, Some(Incoming::Message(server_time)));
    }

    #[test]
    fn binary_frames_round_trip(frame in binary_frame()) {
        let parsed = BinaryFrame::parse(&frame.to_bytes()).expect("an encoded frame parses");
        prop_assert!(parsed == frame, "{parsed:?} != {frame:?}");
        let decoded = round_trip(Dialect::SendspinV1, &Outgoing::Binary(frame.clone()));
        prop_assert!(decoded == Some(Incoming::Binary(frame.clone())), "{decoded:?} != {frame:?}");
    }

    #[test]
    fn legacy_audio_frames_round_trip(timestamp_us in 0..i64::MAX, payload in prop::collection::vec(any::<u8>(), 0..64)) {
        let frame = BinaryFrame::new(BinaryKind::Audio, timestamp_us, payload);
        let decoded = round_trip(Dialect::Resonate, &Outgoing::Binary(frame.clone()));
        prop_assert!(decoded == Some(Incoming::Binary(frame.clone())), "{decoded:?} != {frame:?}");
    }

    #[test]
    fn decoders_never_panic(text in ".{0,200}", bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        for dialect in [Dialect::SendspinV1, Dialect::Resonate] {
            let _ = dialect.codec().decode(WsMessage::text(text.clone()));
            let _ = dialect.codec().decode(WsMessage::binary(bytes.clone()));
        }
    }

    #[test]
    fn json_shaped_input_never_panics(
        type_name in prop::sample::select(vec!["client/hello", "client/time", "client/state", "client/command",
            "server/hello", "server/time", "stream/start", "group/update", "player/update", "session/update"]),
        payload in prop_oneof![Just("{}".to_string()), Just("null".to_string()), "[0-9]{1,20}", "\\{\"[a-z_@0-9]{1,12}\": (-?[0-9]{1,25}|\"[a-z]{0,5}\"|\\[\\]|\\{\\}|null)\\}"],
    ) {
        let text = format!("{{\"type\": \"{type_name}\", \"payload\": {payload}}}");
        for dialect in [Dialect::SendspinV1, Dialect::Resonate] {
            let _ = dialect.codec().decode(WsMessage::text(text.clone()));
        }
    }

    /// The offset of one exchange is within its max_error of the true
    /// offset, however unequal the two paths are.
    #[test]
    fn sample_offset_within_max_error(
        offset in -1_000_000_000_000i64..1_000_000_000_000,
        t1 in -1_000_000_000_000i64..1_000_000_000_000,
        uplink in 0i64..10_000_000,
        hold in 0i64..1_000_000,
        downlink in 0i64..10_000_000,
    ) {
        let t2 = t1 + uplink + offset;
        let t3 = t2 + hold;
        let t4 = t3 - offset + downlink;
        let measurement = Measurement { client_transmitted: t1, server_received: t2, server_transmitted: t3, client_received: t4 };
        let sample = measurement.sample().expect("a causal exchange is valid");
        prop_assert!(sample.max_error_us >= 0.0);
        prop_assert!((sample.offset_us - offset as f64).abs() <= sample.max_error_us + 0.5,
            "offset {} measured {} max_error {}", offset, sample.offset_us, sample.max_error_us);
    }

    #[test]
    fn any_timestamps_never_panic(t1 in any::<i64>(), t2 in any::<i64>(), t3 in any::<i64>(), t4 in any::<i64>()) {
        let measurement = Measurement { client_transmitted: t1, server_received: t2, server_transmitted: t3, client_received: t4 };
        if let Ok(sample) = measurement.sample() {
            prop_assert!(sample.max_error_us >= 0.0);
            prop_assert!(sample.delay_us >= 0);
            let mut filter = TimeFilter::new(FilterConfig::default());
            let _ = filter.apply(sample);
            let snapshot = filter.snapshot();
            prop_assert!(!snapshot.error_us.is_nan());
        }
    }

    /// Exchanges with equal path delays measure the offset exactly, so the
    /// estimate must stay on it.
    #[test]
    fn filter_holds_a_constant_offset(
        offset in -1_000_000_000i64..1_000_000_000,
        delays in prop::collection::vec(0i64..50_000, 2..40),
    ) {
        let mut filter = TimeFilter::new(FilterConfig::default());
        let mut t1 = 1_000_000i64;
        for delay in delays {
            let t2 = t1 + delay + offset;
            let t3 = t2 + 100;
            let t4 = t3 - offset + delay;
            filter.update(Measurement { client_transmitted: t1, server_received: t2, server_transmitted: t3, client_received: t4 }).unwrap();
            t1 += 250_000;
        }
        let snapshot = filter.snapshot();
        prop_assert!((snapshot.offset_us - offset as f64).abs() < 1.0, "estimate {} for offset {}", snapshot.offset_us, offset);
        prop_assert!(snapshot.drift.abs() < 1e-9, "drift {}", snapshot.drift);
    }

    /// Whatever arrives, the estimate stays a number, its error is never
    /// negative, the sample count counts accepted exchanges, and a rejected
    /// exchange leaves the estimate unchanged.
    #[test]
    fn filter_invariants_under_any_exchanges(
        exchanges in prop::collection::vec((-2_000_000i64..2_000_000, -1_000_000i64..1_000_000, 0i64..1_000, -1_000i64..100_000), 1..60),
    ) {
        let mut filter = TimeFilter::new(FilterConfig::default());
        let mut accepted = 0u64;
        let mut t1 = 0i64;
        for (step, server_shift, hold, round_trip) in exchanges {
            t1 += step;
            let t2 = t1 + server_shift;
            let measurement = Measurement {
                client_transmitted: t1,
                server_received: t2,
                server_transmitted: t2 + hold,
                client_received: t1 + round_trip,
            };
            let before: ClockSnapshot = filter.snapshot();
            match filter.update(measurement) {
                Ok(report) => {
                    accepted += 1;
                    prop_assert_eq!(report.samples, accepted);
                }
                Err(_) => prop_assert_eq!(filter.snapshot(), before),
            }
            let snapshot = filter.snapshot();
            prop_assert_eq!(snapshot.samples, accepted);
            prop_assert!(!snapshot.offset_us.is_nan() && !snapshot.drift.is_nan());
            prop_assert!(snapshot.error_us >= 0.0, "error_us {}", snapshot.error_us);
        }
    }

    /// Mapping a local time to the server clock and back returns it, to
    /// within rounding.
    #[test]
    fn clock_mapping_round_trips(
        offset_us in -1e12f64..1e12,
        drift in -1e-3f64..1e-3,
        reference_local_us in -1_000_000_000_000i64..1_000_000_000_000,
        local_us in -1_000_000_000_000i64..1_000_000_000_000,
    ) {
        let snapshot = ClockSnapshot { offset_us, drift, reference_local_us, error_us: 1.0, rtt_us: 0, samples: 3, converged: true };
        let back = snapshot.server_to_local(snapshot.local_to_server(local_us));
        prop_assert!((back - local_us).abs() <= 2, "{local_us} came back as {back}");
    }
}

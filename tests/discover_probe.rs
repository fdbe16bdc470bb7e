//! `discover --probe` of a Sendspin 1.0 server: the cleartext hello is
//! closed unanswered, and the probe measures the clock over the encrypted
//! transport instead, as an unpaired client without roles.

mod support;

use std::time::Duration;

use resonate::discovery::probe::probe;
use resonate::discovery::{Endpoint, EndpointKind, Family};
use resonate::server::encrypted::ServerKeys;
use support::{config_for, write_test_wav, TestServer};

fn endpoint_of(url: &str) -> Endpoint {
    let url = url::Url::parse(url).unwrap();
    Endpoint {
        kind: EndpointKind::Server,
        family: Family::Sendspin,
        instance: "probe-test".into(),
        fullname: "probe-test._sendspin-server._tcp.local.".into(),
        name: None,
        host: "localhost".into(),
        addresses: vec![url.host_str().unwrap().parse().unwrap()],
        port: url.port().unwrap(),
        path: url.path().into(),
    }
}

#[tokio::test]
async fn probe_falls_back_to_sendspin_1_0() {
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("source.wav");
    write_test_wav(&wav, 48_000, 2, 16, 1.0);
    let identity = resonate::noise::Identity::generate();
    let server_id = identity.id();
    let mut config = config_for(wav);
    config.dialect = resonate::dialect::Dialect::Sendspin;
    // No --accept-v1 and no approval: the probe gets no roles.
    config.keys = Some(ServerKeys::new(
        identity,
        dir.path().join("pairings-server.json"),
    ));
    let server = TestServer::start(config).await;

    let report = probe(&endpoint_of(&server.url()), Duration::from_secs(20))
        .await
        .unwrap();
    assert!(report.encrypted, "{report:?}");
    assert_eq!(report.id, server_id);
    assert_eq!(report.samples, 5, "{report:?}");
    assert!(report.rtt_us.unwrap() > 0, "{report:?}");
    assert!(
        report.roles.is_empty(),
        "an unapproved probe gets no roles: {report:?}"
    );
}

#[tokio::test]
async fn probe_of_cleartext_server_stays_cleartext() {
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("source.wav");
    write_test_wav(&wav, 48_000, 2, 16, 1.0);
    let server = TestServer::start(config_for(wav)).await;

    let report = probe(&endpoint_of(&server.url()), Duration::from_secs(20))
        .await
        .unwrap();
    assert!(!report.encrypted, "{report:?}");
    assert_eq!(report.id, "test-server");
    assert_eq!(report.samples, 5, "{report:?}");
}

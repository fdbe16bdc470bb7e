//! `resonate discover`: list the servers and players that mDNS advertises,
//! optionally probing each one.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::task::JoinSet;

use crate::cli::DiscoverArgs;
use crate::Failure;
use resonate::discovery::probe::{probe, ProbeReport};
use resonate::discovery::{BrowseEvent, Endpoint, EndpointKind, Mdns, Scope, ServiceType};

/// Browsing time when neither --timeout nor --watch is given.
const DEFAULT_BROWSE: Duration = Duration::from_secs(3);

/// Maximum time one probe may take, from connect to goodbye.
const PROBE_LIMIT: Duration = Duration::from_secs(5);

pub fn run(args: DiscoverArgs) -> Result<(), Failure> {
    let runtime = crate::runtime()?;
    runtime.block_on(async move {
        let scope = args.interface.clone().map_or(Scope::All, Scope::Interface);
        let mdns = Mdns::start(scope).map_err(Failure::usage)?;
        let events = mdns.browse(&ServiceType::ALL).map_err(Failure::from)?;
        let limit = args.timeout.map(Duration::from_secs_f64);
        if args.watch {
            watch(events, &args, limit).await;
        } else {
            snapshot(events, &args, limit.unwrap_or(DEFAULT_BROWSE)).await;
        }
        drop(mdns);
        Ok(())
    })
}

type Events = futures_util::stream::BoxStream<'static, BrowseEvent>;

/// Probe result, ready to print.
type ProbeOutcome = Result<ProbeReport, String>;

/// Browses for `limit`, then prints every endpoint still advertised.
async fn snapshot(mut events: Events, args: &DiscoverArgs, limit: Duration) {
    let mut endpoints: BTreeMap<String, Endpoint> = BTreeMap::new();
    let browsing = async {
        while let Some(event) = events.next().await {
            match event {
                BrowseEvent::Resolved(endpoint) => {
                    endpoints.insert(endpoint.fullname.clone(), endpoint);
                }
                BrowseEvent::Removed { fullname, .. } => {
                    endpoints.remove(&fullname);
                }
            }
        }
    };
    tokio::select! {
        _ = browsing => {}
        _ = tokio::time::sleep(limit) => {}
        _ = crate::interrupted() => {}
    }
    let mut endpoints: Vec<Endpoint> = endpoints.into_values().collect();
    // Servers first, then clients, each by instance name.
    endpoints.sort_by_key(|endpoint| {
        (
            endpoint.kind != EndpointKind::Server,
            endpoint.instance.clone(),
        )
    });

    let probes: Vec<Option<ProbeOutcome>> = if args.probe {
        let runs = endpoints
            .iter()
            .map(|endpoint| async move { Some(probe_endpoint(endpoint).await) });
        futures_util::future::join_all(runs).await
    } else {
        vec![None; endpoints.len()]
    };

    if args.json {
        for (endpoint, outcome) in endpoints.iter().zip(&probes) {
            println!("{}", endpoint_json(endpoint, outcome.as_ref()));
        }
        return;
    }
    if endpoints.is_empty() {
        crate::status(&format!(
            "no Sendspin or Resonate endpoint answered within {:.1} s; try a longer --timeout",
            limit.as_secs_f64()
        ));
        return;
    }
    print_table(&endpoints, &probes, args.probe);
}

async fn probe_endpoint(endpoint: &Endpoint) -> ProbeOutcome {
    probe(endpoint, PROBE_LIMIT)
        .await
        .map_err(|err| err.to_string())
}

/// Prints each endpoint as it appears, changes or leaves, until Ctrl-C or
/// `limit`.
async fn watch(mut events: Events, args: &DiscoverArgs, limit: Option<Duration>) {
    let mut known: BTreeMap<String, Endpoint> = BTreeMap::new();
    let mut probes: JoinSet<(&'static str, Endpoint, ProbeOutcome)> = JoinSet::new();
    let interrupt = crate::interrupted();
    let stop = async {
        match limit {
            Some(limit) => {
                tokio::select! {
                    _ = tokio::time::sleep(limit) => {}
                    _ = interrupt => {}
                }
            }
            None => interrupt.await,
        }
    };
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            Some(done) = probes.join_next(), if !probes.is_empty() => {
                if let Ok((change, endpoint, outcome)) = done {
                    print_change(change, &endpoint, Some(&outcome), args.json);
                }
            }
            event = events.next() => match event {
                None => break,
                Some(BrowseEvent::Resolved(endpoint)) => {
                    let change = match known.insert(endpoint.fullname.clone(), endpoint.clone()) {
                        None => "added",
                        Some(old) if old == endpoint => continue,
                        Some(_) => "updated",
                    };
                    if args.probe {
                        probes.spawn(async move {
                            let outcome = probe_endpoint(&endpoint).await;
                            (change, endpoint, outcome)
                        });
                    } else {
                        print_change(change, &endpoint, None, args.json);
                    }
                }
                Some(BrowseEvent::Removed { fullname, .. }) => {
                    if let Some(endpoint) = known.remove(&fullname) {
                        print_change("removed", &endpoint, None, args.json);
                    }
                }
            },
        }
    }
    probes.abort_all();
}

fn print_change(change: &str, endpoint: &Endpoint, outcome: Option<&ProbeOutcome>, as_json: bool) {
    if as_json {
        let mut value = endpoint_json(endpoint, outcome);
        value["event"] = json!(change);
        println!("{value}");
        return;
    }
    let mut line = format!(
        "{change:<8} {} {} {} {} {}:{}{}",
        endpoint.kind.as_str(),
        endpoint.family.as_str(),
        endpoint.instance,
        endpoint.name.as_deref().unwrap_or("-"),
        addresses_text(endpoint),
        endpoint.port,
        endpoint.path
    );
    if let Some(outcome) = outcome {
        line.push_str(&format!("  {}", probe_text(outcome)));
    }
    println!("{line}");
}

/// Converts an endpoint and its probe to one JSON object.
fn endpoint_json(endpoint: &Endpoint, outcome: Option<&ProbeOutcome>) -> Value {
    let mut value = json!({
        "kind": endpoint.kind.as_str(),
        "dialect": endpoint.family.as_str(),
        "instance": endpoint.instance,
        "fullname": endpoint.fullname,
        "name": endpoint.name,
        "host": endpoint.host,
        "addresses": endpoint.addresses,
        "port": endpoint.port,
        "path": endpoint.path,
        "url": endpoint.url().map(|url| url.to_string()),
    });
    match outcome {
        Some(Ok(report)) => value["probe"] = json!(report),
        Some(Err(error)) => value["probe_error"] = json!(error),
        None => {}
    }
    value
}

fn addresses_text(endpoint: &Endpoint) -> String {
    let addresses: Vec<String> = endpoint.addresses.iter().map(ToString::to_string).collect();
    addresses.join(",")
}

fn probe_text(outcome: &ProbeOutcome) -> String {
    match outcome {
        Err(error) => format!("probe failed: {error}"),
        Ok(report) => {
            let mut text = format!(
                "id={} name={:?} v{} roles={} rtt={} offset={}",
                report.id,
                report.name,
                report.version,
                report.roles.join(","),
                micros_text(report.rtt_us),
                micros_text(report.offset_us)
            );
            if let Some(device) = &report.device_info {
                let product = device.product_name.as_deref().unwrap_or("-");
                let version = device.software_version.as_deref().unwrap_or("-");
                text.push_str(&format!(" device={product:?} {version}"));
            }
            if let Some(goodbye) = report.goodbye {
                text.push_str(&format!(" goodbye={}", goodbye.as_str()));
            }
            if report.encrypted {
                text.push_str(" encrypted=sendspin-1.0");
            }
            text
        }
    }
}

fn micros_text(value: Option<i64>) -> String {
    value.map_or("-".to_string(), |us| format!("{:.3}ms", us as f64 / 1000.0))
}

/// Prints endpoints as an aligned table, with probe columns after `--probe`.
fn print_table(endpoints: &[Endpoint], probes: &[Option<ProbeOutcome>], probed: bool) {
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut header = vec![
        "KIND",
        "DIALECT",
        "INSTANCE",
        "NAME",
        "ADDRESSES",
        "PORT",
        "PATH",
    ];
    if probed {
        header.push("PROBE");
    }
    rows.push(header.iter().map(|h| h.to_string()).collect());
    for (endpoint, outcome) in endpoints.iter().zip(probes) {
        let mut row = vec![
            endpoint.kind.as_str().to_string(),
            endpoint.family.as_str().to_string(),
            endpoint.instance.clone(),
            endpoint.name.clone().unwrap_or_else(|| "-".into()),
            addresses_text(endpoint),
            endpoint.port.to_string(),
            endpoint.path.clone(),
        ];
        if let Some(outcome) = outcome {
            row.push(probe_text(outcome));
        }
        rows.push(row);
    }
    let columns = rows[0].len();
    let widths: Vec<usize> = (0..columns)
        .map(|column| {
            rows.iter()
                .map(|row| row.get(column).map_or(0, |cell| cell.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(column, cell)| {
                if column + 1 == columns {
                    cell.clone()
                } else {
                    format!("{cell:<width$}", width = widths[column])
                }
            })
            .collect();
        println!("{}", cells.join("  "));
    }
}

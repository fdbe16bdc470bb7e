//! Browsing: conversion of mDNS service events into [`Endpoint`]s.

use std::net::IpAddr;

use futures_util::stream::{self, BoxStream, StreamExt};
use mdns_sd::{ResolvedService, ServiceDaemon, ServiceEvent};

use super::{DiscoveryError, Endpoint, ServiceType};

/// Change in the endpoints that the network advertises.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BrowseEvent {
    /// An endpoint appeared or its record changed (address, port or TXT).
    Resolved(Endpoint),
    /// The instance `fullname` of `service` withdrew its record or its TTL ran out.
    Removed {
        service: ServiceType,
        fullname: String,
    },
}

/// Browses for `services` on `daemon` and returns their events as one stream.
///
/// The stream ends when the daemon shuts down.
pub fn browse(
    daemon: &ServiceDaemon,
    services: &[ServiceType],
) -> Result<BoxStream<'static, BrowseEvent>, DiscoveryError> {
    let mut streams = Vec::new();
    for &service in services {
        let receiver = daemon
            .browse(service.domain())
            .map_err(|source| DiscoveryError::Browse { service, source })?;
        let events = receiver
            .into_stream()
            .filter_map(move |event| std::future::ready(convert(service, event)));
        streams.push(events.boxed());
    }
    Ok(stream::select_all(streams).boxed())
}

fn convert(service: ServiceType, event: ServiceEvent) -> Option<BrowseEvent> {
    match event {
        ServiceEvent::ServiceResolved(resolved) => {
            endpoint_of(service, &resolved).map(BrowseEvent::Resolved)
        }
        ServiceEvent::ServiceRemoved(_, fullname) => {
            Some(BrowseEvent::Removed { service, fullname })
        }
        _ => None,
    }
}

/// Builds the endpoint of a resolved record, or `None` when it has no address.
pub(super) fn endpoint_of(service: ServiceType, resolved: &ResolvedService) -> Option<Endpoint> {
    let mut addresses: Vec<IpAddr> = resolved
        .get_addresses()
        .iter()
        .map(|ip| ip.to_ip_addr())
        .collect();
    if addresses.is_empty() {
        return None;
    }
    addresses.sort_by_key(|ip| (ip.is_ipv6(), *ip));
    addresses.dedup();
    let instance = instance_of(&resolved.fullname, service.domain());
    let path = resolved
        .get_property_val_str("path")
        .filter(|path| !path.is_empty())
        .unwrap_or(service.family.default_path())
        .to_string();
    let name = resolved
        .get_property_val_str("name")
        .filter(|name| !name.is_empty())
        .map(str::to_string);
    Some(Endpoint {
        kind: service.kind,
        family: service.family,
        instance,
        fullname: resolved.fullname.clone(),
        name,
        host: resolved.host.clone(),
        addresses,
        port: resolved.port,
        path,
    })
}

/// Returns the instance label of a full name, without DNS escapes.
fn instance_of(fullname: &str, domain: &str) -> String {
    let label = fullname
        .strip_suffix(domain)
        .map(|rest| rest.trim_end_matches('.'))
        .unwrap_or(fullname);
    label.replace("\\.", ".").replace("\\\\", "\\")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_label_drops_the_service_domain() {
        let domain = ServiceType::SENDSPIN_CLIENT.domain();
        assert_eq!(
            instance_of("kitchen._sendspin._tcp.local.", domain),
            "kitchen"
        );
        assert_eq!(instance_of("a\\.b._sendspin._tcp.local.", domain), "a.b");
    }
}

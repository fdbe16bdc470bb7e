//! mDNS service discovery: advertising this process's endpoints and browsing
//! for servers and players of every dialect.
//!
//! Sendspin servers that clients dial advertise `_sendspin-server._tcp`;
//! players that wait for servers to dial them advertise `_sendspin._tcp`
//! (recommended port 8928). Both carry the WebSocket path in the TXT key
//! `path` and may carry a friendly `name`. The legacy Resonate dialect used
//! `_resonate-server._tcp` and `_resonate._tcp` the same way.

mod browse;
pub mod probe;

use std::fmt;
use std::net::IpAddr;

use mdns_sd::{IfKind, ServiceDaemon, ServiceInfo};
use serde::Serialize;
use url::Url;

pub use browse::{browse, BrowseEvent};

/// Side of the protocol that an endpoint takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EndpointKind {
    /// A server that clients connect to.
    Server,
    /// A client (usually a player) that listens for servers to connect.
    Client,
}

impl EndpointKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EndpointKind::Server => "server",
            EndpointKind::Client => "client",
        }
    }
}

/// Protocol family that an mDNS service type belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    /// Sendspin (v1 cleartext and 1.0 share the service names).
    Sendspin,
    /// The Resonate format from before the rename to Sendspin.
    ResonateLegacy,
}

impl Family {
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Sendspin => "sendspin",
            Family::ResonateLegacy => "resonate-legacy",
        }
    }

    /// Returns the WebSocket path servers of this family use when TXT has none.
    pub fn default_path(self) -> &'static str {
        match self {
            Family::Sendspin => "/sendspin",
            Family::ResonateLegacy => "/resonate",
        }
    }
}

/// One mDNS service type of the protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ServiceType {
    pub kind: EndpointKind,
    pub family: Family,
}

impl ServiceType {
    pub const SENDSPIN_SERVER: ServiceType = ServiceType {
        kind: EndpointKind::Server,
        family: Family::Sendspin,
    };
    pub const SENDSPIN_CLIENT: ServiceType = ServiceType {
        kind: EndpointKind::Client,
        family: Family::Sendspin,
    };
    pub const RESONATE_SERVER: ServiceType = ServiceType {
        kind: EndpointKind::Server,
        family: Family::ResonateLegacy,
    };
    pub const RESONATE_CLIENT: ServiceType = ServiceType {
        kind: EndpointKind::Client,
        family: Family::ResonateLegacy,
    };

    /// Every service type of every dialect, servers first.
    pub const ALL: [ServiceType; 4] = [
        ServiceType::SENDSPIN_SERVER,
        ServiceType::RESONATE_SERVER,
        ServiceType::SENDSPIN_CLIENT,
        ServiceType::RESONATE_CLIENT,
    ];

    /// Returns the fully qualified service type, such as
    /// `_sendspin-server._tcp.local.`.
    pub fn domain(self) -> &'static str {
        match (self.family, self.kind) {
            (Family::Sendspin, EndpointKind::Server) => "_sendspin-server._tcp.local.",
            (Family::Sendspin, EndpointKind::Client) => "_sendspin._tcp.local.",
            (Family::ResonateLegacy, EndpointKind::Server) => "_resonate-server._tcp.local.",
            (Family::ResonateLegacy, EndpointKind::Client) => "_resonate._tcp.local.",
        }
    }

    pub fn from_domain(domain: &str) -> Option<ServiceType> {
        ServiceType::ALL
            .into_iter()
            .find(|service| service.domain() == domain)
    }
}

impl fmt::Display for ServiceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.domain().trim_end_matches(".local."))
    }
}

/// Resolved service instance: the address of one server or listening client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Endpoint {
    pub kind: EndpointKind,
    pub family: Family,
    /// Instance name, the first label of the full name.
    pub instance: String,
    /// Full service instance name, unique on the network.
    pub fullname: String,
    /// Friendly name from the TXT key `name`.
    pub name: Option<String>,
    /// Host name from the SRV record.
    pub host: String,
    /// Addresses, IPv4 first, each sorted.
    pub addresses: Vec<IpAddr>,
    pub port: u16,
    /// WebSocket path from the TXT key `path`, or the family's default.
    pub path: String,
}

impl Endpoint {
    /// Returns the address to connect to: the first IPv4 address, else the
    /// first IPv6 address.
    pub fn dial_address(&self) -> Option<IpAddr> {
        self.addresses.first().copied()
    }

    /// Returns the `ws://` URL of this endpoint's first address.
    ///
    /// NOTE: an IPv6 link-local address needs its interface's scope id, which
    /// this URL lacks, so an endpoint with only such addresses cannot be dialed.
    pub fn url(&self) -> Option<Url> {
        let host = match self.dial_address()? {
            IpAddr::V4(ip) => ip.to_string(),
            IpAddr::V6(ip) => format!("[{ip}]"),
        };
        let path = if self.path.starts_with('/') {
            self.path.clone()
        } else {
            format!("/{}", self.path)
        };
        Url::parse(&format!("ws://{host}:{}{path}", self.port)).ok()
    }
}

/// Set of network interfaces that mDNS uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Every interface.
    All,
    /// The loopback interface only: for endpoints that listen on a loopback
    /// address, which no other host can reach.
    Loopback,
    /// One interface, by name (`eth0`).
    Interface(String),
}

impl Scope {
    /// Returns the scope for an endpoint listening on `ip`: loopback
    /// addresses are advertised on loopback only.
    pub fn for_listen_address(ip: IpAddr) -> Scope {
        if ip.is_loopback() {
            Scope::Loopback
        } else {
            Scope::All
        }
    }
}

/// Error of the mDNS layer.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("failed to start mDNS: {0}. Pass --no-mdns to run without it")]
    Start(mdns_sd::Error),
    #[error("mDNS failed on interface {interface:?}: {source}. Check the name with `ip link`")]
    Interface {
        interface: String,
        source: mdns_sd::Error,
    },
    #[error("network interface {0:?} not found. List the interfaces with `ip link` and pass one of their names to --interface")]
    NoSuchInterface(String),
    #[error("mDNS advertisement of {service} failed: {source}")]
    Advertise {
        service: ServiceType,
        source: mdns_sd::Error,
    },
    #[error("mDNS browsing for {service} failed: {source}")]
    Browse {
        service: ServiceType,
        source: mdns_sd::Error,
    },
}

/// Record advertised for one endpoint of this process.
#[derive(Clone, Debug)]
pub struct Advertisement {
    pub service: ServiceType,
    /// Instance name, unique on the network (`resonate-HOST`).
    pub instance: String,
    /// Friendly name for the TXT key `name`.
    pub name: String,
    pub port: u16,
    /// WebSocket path for the TXT key `path`.
    pub path: String,
}

/// An mDNS responder and browser on the interfaces of one [`Scope`].
///
/// Dropping it withdraws its advertisements and stops the daemon thread.
pub struct Mdns {
    daemon: ServiceDaemon,
    scope: Scope,
    registered: Vec<String>,
}

impl Mdns {
    pub fn start(scope: Scope) -> Result<Mdns, DiscoveryError> {
        if let Scope::Interface(name) = &scope {
            check_interface(name)?;
        }
        let daemon = ServiceDaemon::new().map_err(DiscoveryError::Start)?;
        let selected = match &scope {
            Scope::All => None,
            Scope::Loopback => Some(IfKind::Predicate(mdns_sd::IfPredicate::new(|intf| {
                intf.is_loopback()
            }))),
            Scope::Interface(name) => Some(IfKind::Name(name.clone())),
        };
        if let Some(selected) = selected {
            let interface = match &scope {
                Scope::Interface(name) => name.clone(),
                _ => "lo".to_string(),
            };
            let restrict = daemon
                .disable_interface(IfKind::All)
                .and_then(|()| daemon.enable_interface(selected));
            restrict.map_err(|source| DiscoveryError::Interface { interface, source })?;
        }
        Ok(Mdns {
            daemon,
            scope,
            registered: Vec::new(),
        })
    }

    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    /// Advertises one endpoint until this `Mdns` is dropped.
    pub fn advertise(&mut self, advertisement: &Advertisement) -> Result<(), DiscoveryError> {
        let service = advertisement.service;
        let host = format!("{}.local.", sanitize_label(&advertisement.instance));
        let properties = [
            ("path", advertisement.path.as_str()),
            ("name", advertisement.name.as_str()),
        ];
        // With loopback scope the daemon's automatic address list would be
        // empty, so the loopback address is given explicitly.
        let addresses = match self.scope {
            Scope::Loopback => "127.0.0.1",
            _ => "",
        };
        let info = ServiceInfo::new(
            service.domain(),
            &advertisement.instance,
            &host,
            addresses,
            advertisement.port,
            &properties[..],
        )
        .map_err(|source| DiscoveryError::Advertise { service, source })?;
        let info = if addresses.is_empty() {
            info.enable_addr_auto()
        } else {
            info
        };
        let fullname = info.get_fullname().to_string();
        self.daemon
            .register(info)
            .map_err(|source| DiscoveryError::Advertise { service, source })?;
        tracing::info!(service = %service, instance = %advertisement.instance, port = advertisement.port, "advertising over mDNS");
        self.registered.push(fullname);
        Ok(())
    }

    /// Starts browsing for `services`, as described in [`browse`].
    pub fn browse(
        &self,
        services: &[ServiceType],
    ) -> Result<futures_util::stream::BoxStream<'static, BrowseEvent>, DiscoveryError> {
        browse(&self.daemon, services)
    }
}

impl Drop for Mdns {
    fn drop(&mut self) {
        for fullname in self.registered.drain(..) {
            // Unregistering sends goodbye packets, so browsers drop the
            // record at once instead of when its TTL runs out.
            if let Ok(done) = self.daemon.unregister(&fullname) {
                let _ = done.recv_timeout(std::time::Duration::from_secs(1));
            }
        }
        let _ = self.daemon.shutdown();
    }
}

/// Rejects an interface name the system does not have. The daemon would
/// otherwise accept it and find nothing.
fn check_interface(name: &str) -> Result<(), DiscoveryError> {
    let interfaces = std::path::Path::new("/sys/class/net");
    // NOTE: only systems with Linux's sysfs check the name here.
    if interfaces.is_dir()
        && (name.is_empty() || name.contains('/') || !interfaces.join(name).exists())
    {
        return Err(DiscoveryError::NoSuchInterface(name.to_string()));
    }
    Ok(())
}

/// Replaces characters that are invalid in a DNS host label with `-`.
fn sanitize_label(text: &str) -> String {
    let label: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(63)
        .collect();
    if label.is_empty() {
        "resonate".to_string()
    } else {
        label
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_domains_round_trip() {
        for service in ServiceType::ALL {
            assert_eq!(ServiceType::from_domain(service.domain()), Some(service));
        }
        assert_eq!(ServiceType::from_domain("_http._tcp.local."), None);
    }

    #[test]
    fn endpoint_url_uses_first_address_and_path() {
        let endpoint = Endpoint {
            kind: EndpointKind::Client,
            family: Family::Sendspin,
            instance: "kitchen".into(),
            fullname: "kitchen._sendspin._tcp.local.".into(),
            name: None,
            host: "kitchen.local.".into(),
            addresses: vec!["192.0.2.7".parse().unwrap(), "2001:db8::7".parse().unwrap()],
            port: 8928,
            path: "sendspin".into(),
        };
        assert_eq!(
            endpoint.url().unwrap().as_str(),
            "ws://192.0.2.7:8928/sendspin"
        );
        let v6_only = Endpoint {
            addresses: vec!["2001:db8::7".parse().unwrap()],
            ..endpoint
        };
        assert_eq!(
            v6_only.url().unwrap().as_str(),
            "ws://[2001:db8::7]:8928/sendspin"
        );
    }

    #[test]
    fn loopback_listeners_stay_on_loopback() {
        assert_eq!(
            Scope::for_listen_address("127.0.0.1".parse().unwrap()),
            Scope::Loopback
        );
        assert_eq!(
            Scope::for_listen_address("::1".parse().unwrap()),
            Scope::Loopback
        );
        assert_eq!(
            Scope::for_listen_address("0.0.0.0".parse().unwrap()),
            Scope::All
        );
    }

    #[test]
    fn host_labels_are_sanitized() {
        assert_eq!(sanitize_label("resonate play.1"), "resonate-play-1");
        assert_eq!(sanitize_label(""), "resonate");
    }
}

//! Versioned roles and their activation.
//!
//! A role is written `family@version` (`player@v1`). Families starting with
//! `_` belong to applications. A client lists roles in priority order and
//! the server activates, per family, the first one it implements.

use std::fmt;

/// The role families this specification defines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RoleFamily {
    Player,
    Controller,
    Metadata,
    Artwork,
    Visualizer,
}

impl RoleFamily {
    pub fn as_str(self) -> &'static str {
        match self {
            RoleFamily::Player => "player",
            RoleFamily::Controller => "controller",
            RoleFamily::Metadata => "metadata",
            RoleFamily::Artwork => "artwork",
            RoleFamily::Visualizer => "visualizer",
        }
    }
}

/// One role as written on the wire, split into family and version.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Role {
    pub family: String,
    /// The part after `@`, if any (`v1`).
    pub version: Option<String>,
}

impl Role {
    pub fn parse(text: &str) -> Role {
        match text.split_once('@') {
            Some((family, version)) => Role {
                family: family.to_string(),
                version: Some(version.to_string()),
            },
            None => Role {
                family: text.to_string(),
                version: None,
            },
        }
    }

    pub fn is_application(&self) -> bool {
        self.family.starts_with('_')
    }

    /// The specified family of this role, if it is one.
    pub fn known_family(&self) -> Option<RoleFamily> {
        match self.family.as_str() {
            "player" => Some(RoleFamily::Player),
            "controller" => Some(RoleFamily::Controller),
            "metadata" => Some(RoleFamily::Metadata),
            "artwork" => Some(RoleFamily::Artwork),
            "visualizer" => Some(RoleFamily::Visualizer),
            _ => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.version {
            Some(version) => write!(f, "{}@{}", self.family, version),
            None => f.write_str(&self.family),
        }
    }
}

/// Result of matching a client's roles against what a server implements.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Activation {
    /// Activated roles, one per family, in the client's order.
    pub active: Vec<String>,
    /// Specified (not application) roles the server does not implement: a
    /// sign that the client speaks a newer revision than the server.
    pub unsupported: Vec<String>,
}

/// Activates the first role of each family in `requested` that appears in
/// `implemented`.
pub fn activate_roles(requested: &[String], implemented: &[&str]) -> Activation {
    let mut activation = Activation::default();
    let mut families: Vec<String> = Vec::new();
    for text in requested {
        let role = Role::parse(text);
        if families.contains(&role.family) {
            continue;
        }
        if implemented.contains(&text.as_str()) {
            families.push(role.family.clone());
            activation.active.push(text.clone());
        } else if !role.is_application() {
            activation.unsupported.push(text.clone());
        }
    }
    // A family activated later in the list still makes earlier, newer
    // versions of it "unsupported", which is what outdated-server tracking
    // wants, so nothing is removed here.
    activation
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn first_supported_version_wins() {
        let requested = strings(&["player@v2", "player@v1", "controller@v1", "_app@v1"]);
        let activation = activate_roles(&requested, &["player@v1", "controller@v1"]);
        assert_eq!(activation.active, strings(&["player@v1", "controller@v1"]));
        assert_eq!(activation.unsupported, strings(&["player@v2"]));
    }

    #[test]
    fn one_version_per_family() {
        let requested = strings(&["player@v1", "player@v1"]);
        let activation = activate_roles(&requested, &["player@v1"]);
        assert_eq!(activation.active, strings(&["player@v1"]));
    }

    #[test]
    fn application_roles_activate_only_when_implemented() {
        let requested = strings(&["_resonate@v1", "_other@v1"]);
        let activation = activate_roles(&requested, &["_resonate@v1"]);
        assert_eq!(activation.active, strings(&["_resonate@v1"]));
        assert!(activation.unsupported.is_empty());
    }

    #[test]
    fn role_parses_family_and_version() {
        let role = Role::parse("_myapp_visualizer@v2");
        assert_eq!(role.family, "_myapp_visualizer");
        assert_eq!(role.version.as_deref(), Some("v2"));
        assert!(role.is_application());
        assert_eq!(Role::parse("player").version, None);
    }
}

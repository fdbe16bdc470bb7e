//! The roles a `play` client asks a server for: `player` plays audio,
//! `controller` sends the group's commands, and `metadata` receives what
//! plays. A client without `player` plays nothing and needs no audio
//! output.

use std::fmt;
use std::str::FromStr;

/// Roles of one client, each on or off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Roles {
    pub player: bool,
    pub controller: bool,
    pub metadata: bool,
}

impl Roles {
    /// Every role `play` implements.
    pub const ALL: Roles = Roles {
        player: true,
        controller: true,
        metadata: true,
    };

    /// Only the player role.
    pub const PLAYER: Roles = Roles {
        player: true,
        controller: false,
        metadata: false,
    };

    /// Returns the versioned roles for `supported_roles` of `client/hello`,
    /// in the order player, controller, metadata.
    pub fn versioned(self) -> Vec<String> {
        let mut roles = Vec::new();
        if self.player {
            roles.push("player@v1".to_string());
        }
        if self.controller {
            roles.push("controller@v1".to_string());
        }
        if self.metadata {
            roles.push("metadata@v1".to_string());
        }
        roles
    }
}

impl Default for Roles {
    fn default() -> Roles {
        Roles::PLAYER
    }
}

impl FromStr for Roles {
    type Err = String;

    /// Parses a comma-separated list such as `controller,metadata`.
    fn from_str(text: &str) -> Result<Roles, String> {
        let mut roles = Roles {
            player: false,
            controller: false,
            metadata: false,
        };
        for name in text.split(',').map(str::trim) {
            match name {
                "player" => roles.player = true,
                "controller" => roles.controller = true,
                "metadata" => roles.metadata = true,
                "" => {
                    return Err(format!(
                        "invalid --roles {text:?}: empty role name; list roles separated by commas, such as controller,metadata"
                    ))
                }
                other => {
                    return Err(format!(
                        "invalid --roles {text:?}: unknown role {other:?}; choose from player, controller and metadata"
                    ))
                }
            }
        }
        Ok(roles)
    }
}

impl fmt::Display for Roles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = [
            (self.player, "player"),
            (self.controller, "controller"),
            (self.metadata, "metadata"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect();
        f.write_str(&names.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_parse_in_any_order() {
        let roles: Roles = "metadata, controller".parse().unwrap();
        assert!(!roles.player);
        assert!(roles.controller);
        assert!(roles.metadata);
        assert_eq!(roles.versioned(), ["controller@v1", "metadata@v1"]);
        assert_eq!(roles.to_string(), "controller,metadata");
    }

    #[test]
    fn roles_reject_unknown_and_empty_names() {
        let err = "player,artwork".parse::<Roles>().unwrap_err();
        assert!(err.contains("\"artwork\""), "{err}");
        assert!(err.contains("player, controller and metadata"), "{err}");
        let err = "player,".parse::<Roles>().unwrap_err();
        assert!(err.contains("empty role name"), "{err}");
    }
}

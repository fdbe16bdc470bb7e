//! Long-term identities and pairing records kept in a state directory.
//!
//! A Sendspin 1.0 `client_id` or `server_id` is the base64url (no padding)
//! Curve25519 public key of the device. `serve` and `play` create a key
//! pair on first use and keep it in `STATE_DIR/identity-ROLE.json`, readable
//! by the owner only. Long-term PSKs from pairing live in
//! `STATE_DIR/pairings-ROLE.json`. Both files are written to a temporary
//! file first and then renamed over the old one, so a crash never leaves a
//! half-written file.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use snow::params::DHChoice;
use snow::resolvers::{CryptoResolver, DefaultResolver};

use super::{psk_id, PSK_LEN};

/// Length of a Curve25519 key in bytes.
pub const KEY_LEN: usize = 32;

/// Length of a base64url-encoded key or PSK id.
pub const ID_LEN: usize = 43;

/// A failed load or store of the state directory.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}; check that the state directory is writable or pick another with --state-dir")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a valid {what}: {reason}; move it away to start over")]
    Invalid {
        path: PathBuf,
        what: &'static str,
        reason: String,
    },
    #[error("no state directory: neither XDG_STATE_HOME nor HOME is set; pass --state-dir")]
    NoStateDir,
    #[error("{path} stayed locked by another process for {waited:?}; try again when it is done")]
    Locked {
        path: PathBuf,
        waited: std::time::Duration,
    },
}

/// Returns `$XDG_STATE_HOME/resonate` or `~/.local/state/resonate`.
pub fn default_state_dir() -> Result<PathBuf, StateError> {
    std::env::var_os("XDG_STATE_HOME")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".local/state")))
        .map(|base| base.join("resonate"))
        .ok_or(StateError::NoStateDir)
}

/// Encodes bytes as base64url without padding.
pub fn encode_id(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes a 43-character base64url key, such as a `client_id`.
pub fn decode_key(text: &str) -> Result<[u8; KEY_LEN], String> {
    if text.len() != ID_LEN {
        return Err(format!(
            "{text:?} has {} characters, expected {ID_LEN} (base64url Curve25519 key)",
            text.len()
        ));
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|err| format!("{text:?} is not base64url without padding: {err}"))?;
    let key: [u8; KEY_LEN] = bytes
        .try_into()
        .map_err(|_| format!("{text:?} does not decode to {KEY_LEN} bytes"))?;
    if encode_id(&key) != text {
        return Err(format!(
            "{text:?} is not the canonical base64url form of its key"
        ));
    }
    Ok(key)
}

/// A device's static Curve25519 key pair.
#[derive(Clone)]
pub struct Identity {
    private: [u8; KEY_LEN],
    public: [u8; KEY_LEN],
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("id", &self.id())
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// Creates a key pair from the operating system's CSPRNG.
    pub fn generate() -> Identity {
        let mut private = [0u8; KEY_LEN];
        rand::fill(&mut private);
        Identity::from_private(private)
    }

    /// Derives the public key of `private`.
    pub fn from_private(private: [u8; KEY_LEN]) -> Identity {
        let mut dh = DefaultResolver
            .resolve_dh(&DHChoice::Curve25519)
            .expect("the default resolver has Curve25519");
        dh.set(&private);
        let mut public = [0u8; KEY_LEN];
        public.copy_from_slice(dh.pubkey());
        Identity { private, public }
    }

    /// Returns the base64url public key: the `client_id` or `server_id`.
    pub fn id(&self) -> String {
        encode_id(&self.public)
    }

    pub fn private_key(&self) -> &[u8; KEY_LEN] {
        &self.private
    }

    pub fn public_key(&self) -> &[u8; KEY_LEN] {
        &self.public
    }

    /// Loads the identity at `path`, creating and storing a new one when
    /// the file does not exist.
    pub fn load_or_create(path: &Path) -> Result<Identity, StateError> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let invalid = |reason: String| StateError::Invalid {
                    path: path.to_path_buf(),
                    what: "identity file",
                    reason,
                };
                let file: IdentityFile =
                    serde_json::from_str(&text).map_err(|err| invalid(err.to_string()))?;
                let private = decode_key(&file.private_key).map_err(invalid)?;
                Ok(Identity::from_private(private))
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                let identity = Identity::generate();
                let file = IdentityFile {
                    private_key: encode_id(&identity.private),
                    public_key: identity.id(),
                };
                let text =
                    serde_json::to_string_pretty(&file).expect("the identity file serializes");
                if !create_private(path, text.as_bytes())? {
                    // Another process created it first: use that one.
                    return Identity::load_or_create(path);
                }
                tracing::info!(path = %path.display(), id = %identity.id(), "created a new identity");
                Ok(identity)
            }
            Err(source) => Err(StateError::Read {
                path: path.to_path_buf(),
                source,
            }),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct IdentityFile {
    private_key: String,
    /// Written for people reading the file; the key is derived again on load.
    public_key: String,
}

/// Reads the JSON state file at `path`, which `description` names in
/// errors. A missing file reads as the default value (empty).
fn load_json<T: serde::de::DeserializeOwned + Default>(
    path: &Path,
    description: &'static str,
) -> Result<T, StateError> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text).map_err(|err| StateError::Invalid {
            path: path.to_path_buf(),
            what: description,
            reason: err.to_string(),
        }),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(T::default()),
        Err(source) => Err(StateError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Applies `change` to the JSON state file at `path` while holding the lock
/// of its directory. The file is read again first, so changes that other
/// processes made meanwhile are kept. Returns the content as written, or as
/// read when `change` returns false (nothing to write).
fn update_json<T>(
    path: &Path,
    description: &'static str,
    change: impl FnOnce(&mut T) -> bool,
) -> Result<T, StateError>
where
    T: Serialize + serde::de::DeserializeOwned + Default,
{
    let _lock = StateLock::acquire(path)?;
    let mut value: T = load_json(path, description)?;
    if change(&mut value) {
        let text = serde_json::to_string_pretty(&value).expect("state serializes");
        write_private(path, text.as_bytes())?;
    }
    Ok(value)
}

/// An exclusive lock on a state directory, held while one process reads and
/// writes a state file, so that concurrent changes are not lost. Released
/// on drop.
struct StateLock {
    /// The open lock file; closing it releases the lock.
    _file: std::fs::File,
}

impl StateLock {
    /// Waits for the lock of the directory of `path`.
    fn acquire(path: &Path) -> Result<StateLock, StateError> {
        let dir = path.parent().unwrap_or(Path::new("."));
        let lock_path = dir.join(".lock");
        let error = |source| StateError::Write {
            path: lock_path.clone(),
            source,
        };
        create_private_dir(dir).map_err(error)?;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(false);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let file = options.open(&lock_path).map_err(error)?;

        // Servers change state files from their async tasks, so the wait is
        // short and bounded: a lock held longer fails the change instead of
        // stalling other sessions.
        let deadline = std::time::Instant::now() + LOCK_WAIT;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(StateLock { _file: file }),
                Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(StateError::Locked {
                        path: lock_path,
                        waited: LOCK_WAIT,
                    })
                }
                Err(std::fs::TryLockError::Error(err)) => return Err(error(err)),
            }
        }
    }
}

/// Maximum wait for the lock of a state directory.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Creates `dir` and its missing parents, readable by the owner only.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// Creates `path` with `bytes`, readable and writable by the owner only,
/// unless it exists. Returns whether this call created it; when another
/// process did first, its content stays. Readers never see a partial file.
pub fn create_private(path: &Path, bytes: &[u8]) -> Result<bool, StateError> {
    let error = |source| StateError::Write {
        path: path.to_path_buf(),
        source,
    };
    let temporary = write_temporary(path, bytes)?;
    let linked = std::fs::hard_link(&temporary, path);
    let _ = std::fs::remove_file(&temporary);
    match linked {
        Ok(()) => Ok(true),
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(err) => Err(error(err)),
    }
}

/// Writes `bytes` to `path` readable and writable by the owner only: to a
/// temporary file of this process in the same directory, then renamed over
/// `path`, so readers see the old or the new content.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    let temporary = write_temporary(path, bytes)?;
    std::fs::rename(&temporary, path).map_err(|source| StateError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes `bytes` to a new owner-only temporary file of this process next
/// to `path`, synced to disk, and returns its path.
fn write_temporary(path: &Path, bytes: &[u8]) -> Result<PathBuf, StateError> {
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let error = |source| StateError::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        create_private_dir(dir).map_err(error)?;
    }
    let write = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{}.{write}.tmp", std::process::id()));
    let temporary = path.with_file_name(name);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&temporary).map_err(error)?;
    #[cfg(unix)]
    {
        // The mode of open() applies to new files only.
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(error)?;
    }
    file.write_all(bytes).map_err(error)?;
    file.sync_all().map_err(error)?;
    drop(file);
    Ok(temporary)
}

/// A long-term PSK shared with one peer after pairing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairingRecord {
    /// The peer's `client_id` or `server_id`.
    pub peer_id: String,
    /// The PSK, base64url.
    pub psk: String,
}

impl PairingRecord {
    pub fn psk_bytes(&self) -> Option<[u8; PSK_LEN]> {
        URL_SAFE_NO_PAD.decode(&self.psk).ok()?.try_into().ok()
    }
}

/// The pairing records of one device, persisted in one file.
#[derive(Debug)]
pub struct PairingStore {
    path: PathBuf,
    records: Vec<PairingRecord>,
}

impl PairingStore {
    /// Loads the records at `path`. A missing file means no records.
    pub fn load(path: &Path) -> Result<PairingStore, StateError> {
        let records = load_json(path, RECORDS)?;
        Ok(PairingStore {
            path: path.to_path_buf(),
            records,
        })
    }

    pub fn records(&self) -> &[PairingRecord] {
        &self.records
    }

    /// Returns the record of `peer_id`.
    pub fn record_of(&self, peer_id: &str) -> Option<&PairingRecord> {
        self.records.iter().find(|record| record.peer_id == peer_id)
    }

    /// Returns the long-term PSK whose id is `id`, with its peer.
    pub fn find_long_term(&self, id: &str) -> Option<(&PairingRecord, [u8; PSK_LEN])> {
        self.records.iter().find_map(|record| {
            let psk = record.psk_bytes()?;
            (psk_id(&psk) == id).then_some((record, psk))
        })
    }

    /// Stores (or replaces) the record of `peer_id` and writes the file.
    pub fn insert(&mut self, peer_id: &str, psk: &[u8; PSK_LEN]) -> Result<(), StateError> {
        let record = PairingRecord {
            peer_id: peer_id.to_string(),
            psk: encode_id(psk),
        };
        self.records = update_json(&self.path, RECORDS, |records: &mut Vec<PairingRecord>| {
            records.retain(|record| record.peer_id != peer_id);
            records.push(record);
            true
        })?;
        Ok(())
    }

    /// Removes the record of `peer_id`; returns whether there was one.
    pub fn remove(&mut self, peer_id: &str) -> Result<bool, StateError> {
        let mut removed = false;
        self.records = update_json(&self.path, RECORDS, |records: &mut Vec<PairingRecord>| {
            let before = records.len();
            records.retain(|record| record.peer_id != peer_id);
            removed = records.len() != before;
            removed
        })?;
        Ok(removed)
    }
}

/// Names the file of pairing records in errors.
const RECORDS: &str = "pairing record file";

/// Names the file of the operator's approvals of unpaired clients. A
/// successful pairing discards the client's approval, since its pairing
/// record admits it from then on.
pub const APPROVALS: &str = "approval file";

/// Names the file of the paired clients the operator unpairs: each is sent
/// `server/unpair` when it next connects on its pairing record.
pub const PENDING_UNPAIRS: &str = "pending unpair file";

/// A set of `client_id`s kept in a file so that it outlives the process,
/// such as the [`APPROVALS`] and the [`PENDING_UNPAIRS`].
#[derive(Clone, Debug)]
pub struct ClientIdSet {
    path: PathBuf,
    description: &'static str,
    client_ids: BTreeSet<String>,
}

impl ClientIdSet {
    /// Loads the set at `path`, which `description` names in errors. A
    /// missing file means an empty set.
    pub fn load(path: &Path, description: &'static str) -> Result<ClientIdSet, StateError> {
        let client_ids = load_json(path, description)?;
        Ok(ClientIdSet {
            path: path.to_path_buf(),
            description,
            client_ids,
        })
    }

    pub fn contains(&self, client_id: &str) -> bool {
        self.client_ids.contains(client_id)
    }

    pub fn client_ids(&self) -> impl Iterator<Item = &str> {
        self.client_ids.iter().map(String::as_str)
    }

    /// Adds `client_id` and writes the file when it was not in the set.
    pub fn insert(&mut self, client_id: &str) -> Result<(), StateError> {
        self.client_ids = update_json(
            &self.path,
            self.description,
            |ids: &mut BTreeSet<String>| ids.insert(client_id.to_string()),
        )?;
        Ok(())
    }

    /// Removes `client_id`; returns whether it was in the set.
    pub fn remove(&mut self, client_id: &str) -> Result<bool, StateError> {
        let mut removed = false;
        self.client_ids = update_json(
            &self.path,
            self.description,
            |ids: &mut BTreeSet<String>| {
                removed = ids.remove(client_id);
                removed
            },
        )?;
        Ok(removed)
    }
}

/// A pairing that the operator of a running server requested: by the
/// client's static pairing code, or by its pairing token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PairingRequest {
    /// The client's static pairing code, 8 digits.
    Code(String),
    /// The client's pairing token (`SP:0...`).
    Token(String),
}

/// The pairings requested of a running server, by `client_id`, kept in a
/// file readable by the owner only because codes and tokens are secrets.
#[derive(Clone, Debug)]
pub struct PairingRequests {
    path: PathBuf,
    requests: RequestMap,
}

impl PairingRequests {
    /// Loads the requests at `path`. A missing file means none.
    pub fn load(path: &Path) -> Result<PairingRequests, StateError> {
        let requests = load_json(path, REQUESTS)?;
        Ok(PairingRequests {
            path: path.to_path_buf(),
            requests,
        })
    }

    pub fn request_of(&self, client_id: &str) -> Option<&PairingRequest> {
        self.requests.get(client_id)
    }

    pub fn requests(&self) -> impl Iterator<Item = (&str, &PairingRequest)> {
        self.requests
            .iter()
            .map(|(id, request)| (id.as_str(), request))
    }

    /// Sets the request of `client_id`, replacing any earlier one, and
    /// writes the file.
    pub fn insert(&mut self, client_id: &str, request: PairingRequest) -> Result<(), StateError> {
        self.requests = update_json(&self.path, REQUESTS, |requests: &mut RequestMap| {
            requests.insert(client_id.to_string(), request);
            true
        })?;
        Ok(())
    }

    /// Removes the request of `client_id`; returns whether there was one.
    pub fn remove(&mut self, client_id: &str) -> Result<bool, StateError> {
        let mut removed = false;
        self.requests = update_json(&self.path, REQUESTS, |requests: &mut RequestMap| {
            removed = requests.remove(client_id).is_some();
            removed
        })?;
        Ok(removed)
    }
}

/// Pairing requests by `client_id`, as stored.
type RequestMap = std::collections::BTreeMap<String, PairingRequest>;

/// Names the file of pairing requests in errors.
const REQUESTS: &str = "pairing request file";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_persists_with_owner_only_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/identity-player.json");
        let first = Identity::load_or_create(&path).unwrap();
        let second = Identity::load_or_create(&path).unwrap();
        assert_eq!(first.id(), second.id());
        assert_eq!(first.id().len(), ID_LEN);
        assert_eq!(decode_key(&first.id()).unwrap(), *first.public_key());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "identity file mode");
        }
    }

    #[test]
    fn pairing_requests_round_trip_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pairing-requests-server.json");
        let mut requests = PairingRequests::load(&path).unwrap();
        assert_eq!(requests.requests().count(), 0);
        requests
            .insert("client-a", PairingRequest::Code("12345678".into()))
            .unwrap();
        requests
            .insert("client-b", PairingRequest::Token("SP:0AAAA".into()))
            .unwrap();

        let loaded = PairingRequests::load(&path).unwrap();
        assert_eq!(
            loaded.request_of("client-a"),
            Some(&PairingRequest::Code("12345678".into()))
        );
        assert_eq!(
            loaded.request_of("client-b"),
            Some(&PairingRequest::Token("SP:0AAAA".into()))
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "pairing request file mode");
        }

        let mut loaded = loaded;
        assert!(loaded.remove("client-a").unwrap());
        assert!(!loaded.remove("client-a").unwrap());
        let reloaded = PairingRequests::load(&path).unwrap();
        assert_eq!(reloaded.request_of("client-a"), None);
        std::fs::write(&path, "[1, 2]").unwrap();
        let err = PairingRequests::load(&path).unwrap_err().to_string();
        assert!(err.contains("pairing request file"), "{err}");
        assert!(err.contains("pairing-requests-server.json"), "{err}");
    }

    #[test]
    fn concurrent_inserts_keep_every_client() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/approvals-server.json");
        let writers: Vec<_> = (0..8)
            .map(|writer| {
                let path = path.clone();
                std::thread::spawn(move || {
                    for item in 0..10 {
                        let mut set = ClientIdSet::load(&path, APPROVALS).unwrap();
                        set.insert(&format!("client-{writer}-{item}")).unwrap();
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.join().unwrap();
        }
        let set = ClientIdSet::load(&path, APPROVALS).unwrap();
        assert_eq!(set.client_ids().count(), 80);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let dir_mode = std::fs::metadata(dir.path().join("state"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(dir_mode & 0o777, 0o700, "state directory mode");
        }
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("state"))
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn concurrent_first_use_makes_one_identity() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/identity-player.json");
        let makers: Vec<_> = (0..8)
            .map(|_| {
                let path = path.clone();
                std::thread::spawn(move || Identity::load_or_create(&path).unwrap().id())
            })
            .collect();
        let ids: std::collections::HashSet<String> = makers
            .into_iter()
            .map(|maker| maker.join().unwrap())
            .collect();
        assert_eq!(ids.len(), 1, "{ids:?}");
        let stored = Identity::load_or_create(&path).unwrap().id();
        assert!(ids.contains(&stored));
    }

    #[test]
    fn held_lock_fails_a_change_in_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("approvals-server.json");
        let holder = StateLock::acquire(&path).unwrap();
        let mut set = ClientIdSet::load(&path, APPROVALS).unwrap();
        let err = set.insert("client").unwrap_err().to_string();
        assert!(err.contains("locked"), "{err}");
        drop(holder);
        set.insert("client").unwrap();
        assert!(ClientIdSet::load(&path, APPROVALS)
            .unwrap()
            .contains("client"));
    }

    #[test]
    fn two_identities_differ() {
        assert_ne!(Identity::generate().id(), Identity::generate().id());
    }

    #[test]
    fn invalid_identity_file_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("identity.json");
        std::fs::write(&path, "{\"private_key\": \"short\", \"public_key\": \"x\"}").unwrap();
        let err = Identity::load_or_create(&path).unwrap_err().to_string();
        assert!(err.contains("identity.json"), "{err}");
    }

    #[test]
    fn pairing_records_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pairings.json");
        let peer = Identity::generate().id();
        let psk = [7u8; PSK_LEN];
        let mut store = PairingStore::load(&path).unwrap();
        store.insert(&peer, &psk).unwrap();
        let store = PairingStore::load(&path).unwrap();
        let (record, found) = store.find_long_term(&psk_id(&psk)).unwrap();
        assert_eq!(record.peer_id, peer);
        assert_eq!(found, psk);
        assert!(store.find_long_term(&psk_id(&[8u8; PSK_LEN])).is_none());
        assert!(
            !path.with_file_name("pairings.json.tmp").exists(),
            "temporary file left behind"
        );
    }

    #[test]
    fn decode_key_rejects_bad_ids() {
        assert!(decode_key("abc").is_err());
        assert!(decode_key(&"+".repeat(ID_LEN)).is_err());
    }

    #[test]
    fn approvals_persist_and_revoke() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("approvals.json");
        let mut approvals = ClientIdSet::load(&path, APPROVALS).unwrap();
        assert!(!approvals.contains("a"));
        approvals.insert("a").unwrap();
        approvals.insert("b").unwrap();
        let reloaded = ClientIdSet::load(&path, APPROVALS).unwrap();
        assert!(reloaded.contains("a"));
        assert!(reloaded.contains("b"));

        let mut revoked = ClientIdSet::load(&path, APPROVALS).unwrap();
        assert!(revoked.remove("a").unwrap());
        assert!(!revoked.remove("a").unwrap());
        let reloaded = ClientIdSet::load(&path, APPROVALS).unwrap();
        assert!(!reloaded.contains("a"));
        assert!(reloaded.contains("b"));
        std::fs::write(&path, "{").unwrap();
        let err = ClientIdSet::load(&path, APPROVALS).unwrap_err().to_string();
        assert!(err.contains("approval file"), "{err}");
    }
}

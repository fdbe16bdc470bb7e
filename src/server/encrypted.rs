//! The server side of Sendspin 1.0 connections: telling encrypted clients
//! from cleartext v1 ones on one path, the Noise handshake, `server/hello`,
//! and who may play without pairing.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::WebSocketStream;

use crate::dialect::sendspin::KeyRotation;
use crate::dialect::{Dialect, SendspinCodec, WireCodec};
use crate::noise::handshake::{self, Channel, HandshakeError, PskChoice, ServerOptions};
use crate::noise::identity::decode_key;
use crate::noise::identity::{PairingRequest, PairingRequests};
use crate::noise::pairing::{decode_token, PskToken};
use crate::noise::pairing_code::PairingError;
use crate::noise::{
    ClientIdSet, Identity, PairingStore, PskCategory, StateError, Suite, APPROVALS,
    PENDING_UNPAIRS, PSK_LEN,
};
use crate::server::pairing::{CodeMethod, CodePairing, Operator};
use futures_util::future::BoxFuture;

/// A server's keys and admission policy for encrypted clients.
#[derive(Clone, Debug)]
pub struct ServerKeys {
    pub identity: Identity,
    /// File of the server's pairing records (long-term PSKs by client).
    pub records_path: PathBuf,
    /// Also accept cleartext Sendspin v1 clients on the same path.
    pub accept_v1: bool,
    /// Give roles to every unpaired client that offers unpaired access.
    pub allow_unpaired: bool,
    /// Unpaired clients the operator approved for this run, by `client_id`.
    pub approved: HashSet<String>,
    /// File of the approvals that outlive the process, read on every
    /// connection, so approvals and revocations apply without a restart.
    pub approvals_path: Option<PathBuf>,
    /// Pairing tokens the operator entered: a client whose token is here
    /// and that has no pairing record yet is paired by its pairing PSK.
    pub pairing_tokens: Vec<PskToken>,
    /// File of the paired clients to unpair, read on every connection: a
    /// client in it that connects on its pairing record is sent
    /// `server/unpair`, and both sides drop the record.
    pub unpairs_path: Option<PathBuf>,
    /// Interval of in-band re-handshakes that rotate the keys of each
    /// session on the PSK that keys it; `None` keeps a session's keys.
    pub key_rotation: Option<Duration>,
    /// File of the pairings requested while the server runs, read on every
    /// connection: a client in it with a token is paired by its pairing
    /// PSK, and one with a static code by that code once it offers it.
    pub pairing_requests_path: Option<PathBuf>,
}

impl ServerKeys {
    /// Returns the keys of a server with `identity` and the pairing records
    /// at `records_path`, which admits only paired clients, keeps no other
    /// state files and keeps each session's keys.
    pub fn new(identity: Identity, records_path: PathBuf) -> ServerKeys {
        ServerKeys {
            identity,
            records_path,
            accept_v1: false,
            allow_unpaired: false,
            approved: HashSet::new(),
            approvals_path: None,
            pairing_tokens: Vec::new(),
            unpairs_path: None,
            key_rotation: None,
            pairing_requests_path: None,
        }
    }
}

/// An accepted connection ready for its session: dialect, codec and any
/// frame already read.
pub struct Opened {
    pub dialect: Dialect,
    pub codec: Box<dyn WireCodec>,
    /// A frame read to tell the dialects apart, for the session to handle
    /// first.
    pub first_frame: Option<WsMessage>,
}

/// Reads the first message of a new connection and opens it in the
/// dialect it speaks: a cleartext `client/hello` is Sendspin v1 (when
/// `keys.accept_v1`), anything else runs the 1.0 handshake. Returns `None`
/// after closing a connection that failed.
pub async fn open<S>(
    ws: &mut WebSocketStream<S>,
    peer: SocketAddr,
    keys: &ServerKeys,
    name: &str,
    timeout: Duration,
) -> Option<Opened>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let first = match tokio::time::timeout(timeout, next_data_frame(ws)).await {
        Ok(Some(frame)) => frame,
        Ok(None) => {
            // A client that closed before its first message still gets the
            // reply to its close frame, which tungstenite queued when it
            // read it.
            let _ = ws.flush().await;
            return None;
        }
        Err(_) => {
            tracing::info!(%peer, ?timeout, "no first message; closing");
            let _ = ws.close(None).await;
            return None;
        }
    };
    let text = match &first {
        WsMessage::Text(text) => text.as_str().to_string(),
        _ => String::new(),
    };
    if is_client_hello(&text) {
        if keys.accept_v1 {
            return Some(Opened {
                dialect: Dialect::SendspinV1,
                codec: Dialect::SendspinV1.codec(),
                first_frame: Some(first),
            });
        }
        tracing::warn!(%peer, "rejected a cleartext Sendspin v1 client; pass --accept-v1 to accept v1 clients next to Sendspin 1.0");
        let _ = ws.close(None).await;
        return None;
    }

    let records = match PairingStore::load(&keys.records_path) {
        Ok(records) => Some(records),
        Err(err) => {
            tracing::warn!(cause = %err, "cannot read the pairing records; admitting clients as unpaired");
            None
        }
    };
    let requests = pairing_requests(keys);
    let requested_tokens: Vec<PskToken> = requests
        .iter()
        .flat_map(|requests| requests.requests())
        .filter_map(|(client_id, request)| match request {
            PairingRequest::Token(text) => match decode_token(text) {
                Ok(token) => Some(token),
                Err(reason) => {
                    tracing::warn!(client = %client_id, %reason, "ignoring an invalid pairing token in the pairing requests");
                    None
                }
            },
            PairingRequest::Code(_) => None,
        })
        .collect();
    let choose = |client_id: &str| {
        let record = records
            .as_ref()
            .and_then(|store| store.record_of(client_id))
            .and_then(|r| r.psk_bytes());
        let token = keys
            .pairing_tokens
            .iter()
            .chain(&requested_tokens)
            .find(|token| token.client_id == client_id);
        Some(match (record, token) {
            (Some(psk), _) => PskChoice {
                psk,
                category: PskCategory::LongTerm,
            },
            (None, Some(token)) => PskChoice {
                psk: token.pairing_psk,
                category: PskCategory::Pairing,
            },
            (None, None) => PskChoice::sentinel(),
        })
    };
    let options = ServerOptions {
        identity: &keys.identity,
        timeout,
    };
    let init = (!text.is_empty()).then_some(text);
    let established = match handshake::accept(ws, init, options, choose).await {
        Ok(established) => established,
        Err(err) => {
            // Handshake failures are silent: no message, only the close.
            tracing::info!(%peer, cause = %err, "Sendspin 1.0 handshake failed");
            let _ = ws.close(None).await;
            return None;
        }
    };
    let mut channel = established.channel;
    let hello = json!({ "type": "server/hello", "payload": { "name": name } }).to_string();
    if let Err(err) = handshake::send_json(ws, &mut channel, &hello).await {
        tracing::info!(%peer, cause = %err, "sending server/hello failed");
        return None;
    }
    let client_id = established.peer_id;
    // The Sentinel fallback denies roles while the client's pairing record
    // exists; a stale pairing token leaves it an ordinary unpaired client.
    let has_record = records
        .as_ref()
        .is_some_and(|records| records.record_of(&client_id).is_some());
    let record_blocks = established.credential_mismatch && has_record;
    if established.category == PskCategory::Pairing {
        let suite = established.suite;
        let hash = established.handshake_hash;
        let records = &keys.records_path;
        return match pair_with_psk(
            ws,
            &mut channel,
            &keys.identity,
            records,
            &client_id,
            suite,
            &hash,
            timeout,
        )
        .await
        {
            Ok(hello) => {
                discard_approval(keys, &client_id);
                discard_pairing_request(keys, &client_id);
                let codec = SendspinCodec::server(channel, client_id, PskCategory::LongTerm)
                    .with_replayed_hello(hello.clone());
                Some(Opened {
                    dialect: Dialect::Sendspin,
                    codec: Box::new(codec),
                    first_frame: Some(WsMessage::text(hello)),
                })
            }
            Err(err) => {
                tracing::warn!(%peer, client = %client_id, cause = %err, "pairing failed; nothing was stored");
                let _ = ws.close(None).await;
                None
            }
        };
    }
    if established.category == PskCategory::LongTerm && unpair_pending(keys, &client_id) {
        match unpair(ws, &mut channel, keys, &client_id, timeout).await {
            Ok(()) => {
                tracing::info!(%peer, client = %client_id, "unpaired the client; removed its pairing record")
            }
            Err(err) => {
                tracing::warn!(%peer, client = %client_id, cause = %err, "unpairing the client failed; its record stays until it next connects")
            }
        }
        let _ = ws.close(None).await;
        return None;
    }
    let code = requests
        .as_ref()
        .and_then(|requests| match requests.request_of(&client_id) {
            Some(PairingRequest::Code(code)) => Some(code.clone()),
            _ => None,
        });
    if let (PskCategory::Sentinel, Some(code)) = (established.category, code) {
        let pairing = RequestedPairing {
            keys,
            peer,
            client_id: &client_id,
            suite: established.suite,
            handshake_hash: &established.handshake_hash,
            credential_mismatch: record_blocks,
            timeout,
        };
        return pairing.run(ws, channel, &code).await;
    }
    let admitted = established.category == PskCategory::LongTerm
        || (!record_blocks && admits_unpaired(keys, &client_id));
    if record_blocks {
        tracing::warn!(%peer, client = %client_id, records = %keys.records_path.display(), "client could not use its pairing record, so it gets no roles until it pairs again or its record is removed from the file");
    } else if established.credential_mismatch {
        tracing::warn!(%peer, client = %client_id, "client could not use the pairing PSK of its pairing token, which is stale or belongs to another key; request again with the token play --pairing-token prints now, or drop it with resonate serve clients --cancel-pairing {client_id}");
    }
    if !admitted && !record_blocks {
        tracing::warn!(%peer, client = %client_id, "unpaired client is not approved, so it gets no roles; while serving, approve it with resonate serve clients --approve {client_id} or pair it with serve clients --pair-token TOKEN or --pair-code {client_id}=CODE (same --state-dir), or restart with --allow-unpaired");
    }
    tracing::info!(%peer, client = %client_id, category = established.category.code(), suite = %established.suite, "Noise handshake done");
    let rotation = keys.key_rotation.and_then(|interval| {
        let psk = match established.category {
            PskCategory::LongTerm => records
                .as_ref()
                .and_then(|records| records.record_of(&client_id))
                .and_then(|record| record.psk_bytes())
                .map(|psk| PskChoice {
                    psk,
                    category: PskCategory::LongTerm,
                })?,
            _ => PskChoice::sentinel(),
        };
        Some(KeyRotation {
            identity: keys.identity.clone(),
            client_key: decode_key(&client_id).ok()?,
            suite: established.suite,
            psk,
            handshake_hash: established.handshake_hash.clone(),
            interval,
            timeout,
        })
    });
    let mut codec =
        SendspinCodec::server(channel, client_id, established.category).with_admission(admitted);
    if let Some(rotation) = rotation {
        codec = codec.with_key_rotation(rotation);
    }
    Some(Opened {
        dialect: Dialect::Sendspin,
        codec: Box::new(codec),
        first_frame: None,
    })
}

/// The approvals and pending unpairs as last read, so that a running server
/// can tell whose access an operator changed (with `serve clients`, say)
/// and close those clients' sessions: they connect again, and their next
/// handshake applies the new terms.
pub struct AccessWatch {
    /// Whether every unpaired client gets roles, which makes approvals moot.
    allow_unpaired: bool,
    records_path: PathBuf,
    approvals_path: PathBuf,
    unpairs_path: PathBuf,
    requests_path: PathBuf,
    /// The files as last read.
    last: AccessFiles,
    /// The last read error, logged once until the files read again.
    failed: Option<String>,
}

/// The content of the access files at one read.
#[derive(Default)]
struct AccessFiles {
    paired: BTreeSet<String>,
    approved: BTreeSet<String>,
    to_unpair: BTreeSet<String>,
    /// Clients to pair, with the request.
    to_pair: BTreeMap<String, PairingRequest>,
}

impl AccessWatch {
    /// Starts watching the files of `keys`, taking their present content
    /// as the baseline. Returns `None` when the keys name no files.
    pub fn new(keys: &ServerKeys) -> Option<AccessWatch> {
        let mut watch = AccessWatch {
            allow_unpaired: keys.allow_unpaired,
            records_path: keys.records_path.clone(),
            approvals_path: keys.approvals_path.clone()?,
            unpairs_path: keys.unpairs_path.clone()?,
            requests_path: keys.pairing_requests_path.clone()?,
            last: AccessFiles::default(),
            failed: None,
        };
        if let Ok(files) = watch.read() {
            watch.last = files;
        }
        Some(watch)
    }

    fn read(&self) -> Result<AccessFiles, StateError> {
        let ids = |set: ClientIdSet| set.client_ids().map(str::to_string).collect();
        let records = PairingStore::load(&self.records_path)?;
        let to_pair = PairingRequests::load(&self.requests_path)?
            .requests()
            .map(|(client_id, request)| (client_id.to_string(), request.clone()))
            .collect();
        Ok(AccessFiles {
            paired: records
                .records()
                .iter()
                .map(|r| r.peer_id.clone())
                .collect(),
            approved: ids(ClientIdSet::load(&self.approvals_path, APPROVALS)?),
            to_unpair: ids(ClientIdSet::load(&self.unpairs_path, PENDING_UNPAIRS)?),
            to_pair,
        })
    }

    /// Reads the files again and returns the clients whose access changed
    /// since the last read. Those are clients approved or revoked, newly
    /// waiting to be unpaired, or with a new pairing request. Approvals
    /// count only for unpaired clients, and not when all unpaired clients
    /// are allowed. A file that cannot be read changes nothing. Once the
    /// files read again, every client they name counts as changed, since
    /// sessions opened meanwhile may have been admitted without them.
    pub fn changed(&mut self) -> AccessChanges {
        let files = match self.read() {
            Ok(files) => files,
            Err(err) => {
                let text = err.to_string();
                if self.failed.as_ref() != Some(&text) {
                    tracing::warn!(cause = %text, "cannot read the access files; live sessions keep their access until they read again");
                    self.failed = Some(text);
                }
                return AccessChanges::default();
            }
        };
        let mut access: BTreeSet<String> = BTreeSet::new();

        if self.failed.take().is_some() {
            tracing::info!(
                "the access files read again; closing the sessions of the clients they name"
            );
            access.extend(files.paired.iter().cloned());
            access.extend(files.approved.iter().cloned());
            access.extend(files.to_unpair.iter().cloned());
            access.extend(files.to_pair.keys().cloned());
        }
        let last = &self.last;
        if !self.allow_unpaired {
            let approvals = files
                .approved
                .symmetric_difference(&last.approved)
                .filter(|id| !files.paired.contains(*id));
            access.extend(approvals.cloned());
        }
        access.extend(files.to_unpair.difference(&last.to_unpair).cloned());
        let mut code_requests = Vec::new();
        for (id, request) in &files.to_pair {
            if last.to_pair.get(id) == Some(request) {
                continue;
            }
            match request {
                PairingRequest::Token(_) => {
                    access.insert(id.clone());
                }
                PairingRequest::Code(_) => code_requests.push(id.clone()),
            }
        }
        self.last = files;
        AccessChanges {
            access: access.into_iter().collect(),
            code_requests,
        }
    }
}

/// The clients whose access an operator changed while the server runs.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct AccessChanges {
    /// Clients to close the sessions of, so they connect again.
    pub access: Vec<String>,
    /// Clients with a new static-code pairing request: only a session in
    /// the client's pairing window (one that offers the code) is closed.
    pub code_requests: Vec<String>,
}

/// Returns the pairings requested of this server, or `None` when there is
/// no file for them or it cannot be read (with a warning).
fn pairing_requests(keys: &ServerKeys) -> Option<PairingRequests> {
    let path = keys.pairing_requests_path.as_ref()?;
    match PairingRequests::load(path) {
        Ok(requests) => Some(requests),
        Err(err) => {
            tracing::warn!(cause = %err, "cannot read the pairing requests; pairing no client from them");
            None
        }
    }
}

/// Removes the pairing request of `client_id` once it paired, or once its
/// code proved wrong.
fn discard_pairing_request(keys: &ServerKeys, client_id: &str) {
    let Some(path) = &keys.pairing_requests_path else {
        return;
    };
    let removed = PairingRequests::load(path).and_then(|mut requests| requests.remove(client_id));
    if let Err(err) = removed {
        tracing::warn!(client = %client_id, cause = %err, "cannot remove the pairing request of the client");
    }
}

/// A static-code pairing the operator requested, run on a client's
/// Sentinel-keyed connection before its session starts.
struct RequestedPairing<'a> {
    keys: &'a ServerKeys,
    peer: SocketAddr,
    client_id: &'a str,
    suite: Suite,
    handshake_hash: &'a [u8],
    /// The client could not use its pairing record (see the Sentinel
    /// fallback), so it gets no roles until it pairs again.
    credential_mismatch: bool,
    timeout: Duration,
}

impl RequestedPairing<'_> {
    /// Reads the client's `client/hello` and, when it offers its static
    /// pairing code, pairs by `code`. The session then starts paired, or
    /// unpaired when the client offers no static code. Returns `None` after
    /// closing a connection whose pairing failed.
    async fn run<S>(
        self,
        ws: &mut WebSocketStream<S>,
        mut channel: Channel,
        code: &str,
    ) -> Option<Opened>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let (peer, client_id) = (self.peer, self.client_id);
        let hello = match receive_client_hello(ws, &mut channel, self.timeout).await {
            Ok(hello) => hello,
            Err(err) => {
                tracing::info!(%peer, client = %client_id, cause = %err, "no client/hello from a client with a pairing request");
                let _ = ws.close(None).await;
                return None;
            }
        };
        let hello_text = hello.to_string();
        let offers_static = hello
            .pointer("/payload/supported_pair_methods/static_pairing_code")
            .is_some();
        if !offers_static {
            tracing::info!(%peer, client = %client_id, "the client offers no static pairing code now, so its pairing request waits; on the player run resonate play pair --server URL");
            let codec =
                SendspinCodec::server(channel, client_id.to_string(), PskCategory::Sentinel)
                    .with_admission(self.admitted_unpaired())
                    .with_replayed_hello(hello_text.clone());
            return Some(Opened {
                dialect: Dialect::Sendspin,
                codec: Box::new(codec),
                first_frame: Some(WsMessage::text(hello_text)),
            });
        }
        tracing::info!(%peer, client = %client_id, "pairing the client by the static code of its pairing request");
        let mut operator = StoredCode(Some(code.to_string()));
        let pairing = CodePairing {
            ws,
            channel: &mut channel,
            identity: &self.keys.identity,
            records: &self.keys.records_path,
            client_id,
            suite: self.suite,
            handshake_hash: self.handshake_hash,
            timeout: self.timeout,
        };
        match pairing.run(CodeMethod::Static, &mut operator).await {
            Ok(()) => {
                tracing::info!(%peer, client = %client_id, "paired with the client by its static code; stored the pairing record");
                discard_approval(self.keys, client_id);
                discard_pairing_request(self.keys, client_id);
                let codec =
                    SendspinCodec::server(channel, client_id.to_string(), PskCategory::LongTerm)
                        .with_replayed_hello(hello_text.clone());
                Some(Opened {
                    dialect: Dialect::Sendspin,
                    codec: Box::new(codec),
                    first_frame: Some(WsMessage::text(hello_text)),
                })
            }
            Err(PairingError::CodeMismatch) => self.drop_wrong_code(ws).await,
            Err(PairingError::Aborted { reason }) if reason == "pairing_code_mismatch" => {
                self.drop_wrong_code(ws).await
            }
            Err(err) => {
                tracing::warn!(%peer, client = %client_id, cause = %err, "pairing by the requested static code failed; the request waits for the next connection");
                let _ = ws.close(None).await;
                None
            }
        }
    }

    /// Drops the pairing request whose code the client proved wrong, and
    /// closes the connection.
    async fn drop_wrong_code<S>(&self, ws: &mut WebSocketStream<S>) -> Option<Opened>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        tracing::warn!(peer = %self.peer, client = %self.client_id, "the requested static code is not the client's; dropped the pairing request, so request it again with the right code");
        discard_pairing_request(self.keys, self.client_id);
        let _ = ws.close(None).await;
        None
    }

    /// Returns whether an unpaired session of this client gets roles.
    fn admitted_unpaired(&self) -> bool {
        !self.credential_mismatch && admits_unpaired(self.keys, self.client_id)
    }
}

/// The operator's code from a pairing request, given once: a second round
/// cancels the attempt.
struct StoredCode(Option<String>);

impl Operator for StoredCode {
    fn pending(&mut self, client_id: &str, message: Option<&str>) {
        tracing::info!(client = %client_id, message, "the client sent client/pair-pending; waiting for its client/pair-init");
    }

    fn code<'a>(
        &'a mut self,
        _client_id: &'a str,
        _method: CodeMethod,
        _round: u32,
        _rejected: Option<&'a str>,
    ) -> BoxFuture<'a, Option<String>> {
        let code = self.0.take();
        Box::pin(async move { code })
    }
}

/// Returns whether `client_id` gets roles on an unpaired session: all
/// unpaired clients are allowed, or the operator approved this one.
fn admits_unpaired(keys: &ServerKeys, client_id: &str) -> bool {
    keys.allow_unpaired || keys.approved.contains(client_id) || stored_approval(keys, client_id)
}

/// Receives the client's `client/hello` over the encrypted channel, before
/// its session starts. Any other first message is malformed.
async fn receive_client_hello<S>(
    ws: &mut WebSocketStream<S>,
    channel: &mut Channel,
    timeout: Duration,
) -> Result<serde_json::Value, HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let hello = handshake::receive_json(ws, channel, "client/hello", timeout).await?;
    if hello.get("type").and_then(|t| t.as_str()) != Some("client/hello") {
        return Err(HandshakeError::Malformed {
            what: "client/hello",
            detail: format!("got {hello}"),
        });
    }
    Ok(hello)
}

/// Returns whether the approval file approves `client_id`. A file that
/// cannot be read approves no one, with a warning.
fn stored_approval(keys: &ServerKeys, client_id: &str) -> bool {
    let Some(path) = &keys.approvals_path else {
        return false;
    };
    match ClientIdSet::load(path, APPROVALS) {
        Ok(approvals) => approvals.contains(client_id),
        Err(err) => {
            tracing::warn!(cause = %err, "cannot read the approvals; approving no unpaired client from the file");
            false
        }
    }
}

/// Returns whether the operator asked to unpair `client_id`. A file that
/// cannot be read unpairs no one, with a warning.
fn unpair_pending(keys: &ServerKeys, client_id: &str) -> bool {
    let Some(path) = &keys.unpairs_path else {
        return false;
    };
    match ClientIdSet::load(path, PENDING_UNPAIRS) {
        Ok(pending) => pending.contains(client_id),
        Err(err) => {
            tracing::warn!(cause = %err, "cannot read the clients to unpair; unpairing none");
            false
        }
    }
}

/// Unpairs a client connected on its pairing record: reads its
/// `client/hello`, activates nothing, sends `server/unpair`, removes the
/// record and the pending entry, and waits for the client's
/// `client/goodbye` (reason `unpaired`) or for it to close.
async fn unpair<S>(
    ws: &mut WebSocketStream<S>,
    channel: &mut Channel,
    keys: &ServerKeys,
    client_id: &str,
    timeout: Duration,
) -> Result<(), HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let malformed = |what: &'static str, detail: String| HandshakeError::Malformed { what, detail };
    receive_client_hello(ws, channel, timeout).await?;
    let activate = json!({
        "type": "server/activate",
        "payload": { "activities": [], "active_roles": [] },
    });
    handshake::send_json(ws, channel, &activate.to_string()).await?;
    handshake::send_json(
        ws,
        channel,
        &json!({ "type": "server/unpair", "payload": {} }).to_string(),
    )
    .await?;
    let mut records = PairingStore::load(&keys.records_path)
        .map_err(|err| malformed("pairing record file", err.to_string()))?;
    records
        .remove(client_id)
        .map_err(|err| malformed("pairing record file", err.to_string()))?;
    if let Some(path) = &keys.unpairs_path {
        ClientIdSet::load(path, PENDING_UNPAIRS)
            .and_then(|mut pending| pending.remove(client_id))
            .map_err(|err| malformed("pending unpair file", err.to_string()))?;
    }
    // The client's goodbye is its acknowledgement; a client that closes
    // without one has dropped the session all the same. Messages the client
    // sent before it read server/unpair, such as client/state, are skipped.
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match handshake::receive_json(ws, channel, "client/goodbye", left).await {
            Ok(message)
                if message.get("type").and_then(|t| t.as_str()) == Some("client/goodbye") =>
            {
                let reason = message
                    .pointer("/payload/reason")
                    .cloned()
                    .unwrap_or_default();
                tracing::debug!(client = %client_id, %reason, "client sent client/goodbye after server/unpair");
                return Ok(());
            }
            Ok(message) => {
                tracing::debug!(client = %client_id, message_type = ?message.get("type"), "skipping a message sent before server/unpair");
            }
            Err(HandshakeError::Closed { .. }) => return Ok(()),
            Err(err) => return Err(err),
        }
    }
}

/// Discards the stored approval of a client that just paired: its pairing
/// record admits it from now on.
pub fn discard_approval(keys: &ServerKeys, client_id: &str) {
    let Some(path) = &keys.approvals_path else {
        return;
    };
    let removed =
        ClientIdSet::load(path, APPROVALS).and_then(|mut approvals| approvals.remove(client_id));
    if let Err(err) = removed {
        tracing::warn!(client = %client_id, cause = %err, "cannot discard the approval of a paired client");
    }
}

/// Runs the server side of the pairing PSK flow on a connection keyed with
/// the client's pairing PSK: reads `client/hello`, sends the pairing
/// `server/activate`, reads `client/pair-init` and `client/pair-finalize`,
/// stores the new long-term PSK, sends `server/pair-finalize` and
/// re-handshakes to that PSK. Returns the `client/hello` body for the
/// session.
#[allow(clippy::too_many_arguments)]
pub async fn pair_with_psk<S>(
    ws: &mut WebSocketStream<S>,
    channel: &mut Channel,
    identity: &Identity,
    records_path: &std::path::Path,
    client_id: &str,
    suite: Suite,
    handshake_hash: &[u8],
    timeout: Duration,
) -> Result<String, HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let malformed = |what: &'static str, detail: String| HandshakeError::Malformed { what, detail };
    let hello = receive_client_hello(ws, channel, timeout).await?;
    let activate = json!({
        "type": "server/activate",
        "payload": { "activities": ["pairing"], "active_roles": [], "pairing": { "method": "pairing_psk" } },
    });
    handshake::send_json(ws, channel, &activate.to_string()).await?;

    let init = handshake::receive_json(ws, channel, "client/pair-init", timeout).await?;
    if init.get("type").and_then(|t| t.as_str()) != Some("client/pair-init") {
        return Err(malformed("client/pair-init", format!("got {init}")));
    }
    let finalize = handshake::receive_json(ws, channel, "client/pair-finalize", timeout).await?;
    let psk = finalize
        .pointer("/payload/long_term_psk")
        .and_then(|v| v.as_str())
        .filter(|_| finalize.get("type").and_then(|t| t.as_str()) == Some("client/pair-finalize"))
        .ok_or_else(|| {
            malformed(
                "client/pair-finalize",
                format!("no long_term_psk in {finalize}"),
            )
        })?;
    let psk: [u8; PSK_LEN] =
        decode_key(psk).map_err(|detail| malformed("long_term_psk", detail))?;

    let mut records = PairingStore::load(records_path)
        .map_err(|err| malformed("pairing record file", err.to_string()))?;
    records
        .insert(client_id, &psk)
        .map_err(|err| malformed("pairing record file", err.to_string()))?;
    tracing::info!(client = %client_id, records = %records_path.display(), "paired with the client; stored the pairing record");
    handshake::send_json(
        ws,
        channel,
        &json!({ "type": "server/pair-finalize", "payload": {} }).to_string(),
    )
    .await?;

    let client_key = decode_key(client_id).map_err(|detail| malformed("client_id", detail))?;
    let choice = PskChoice {
        psk,
        category: PskCategory::LongTerm,
    };
    handshake::rehandshake_server(
        ws,
        channel,
        identity,
        &client_key,
        suite,
        handshake_hash,
        &choice,
        timeout,
    )
    .await?;
    Ok(hello.to_string())
}

/// Returns the next text or binary frame, or `None` when the connection ends.
pub(super) async fn next_data_frame<S>(ws: &mut WebSocketStream<S>) -> Option<WsMessage>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        match ws.next().await? {
            Ok(frame @ (WsMessage::Text(_) | WsMessage::Binary(_))) => return Some(frame),
            Ok(WsMessage::Close(_)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

fn is_client_hello(text: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|value| {
            value
                .get("type")
                .and_then(|t| t.as_str())
                .map(|t| t == "client/hello")
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys_in(dir: &std::path::Path) -> ServerKeys {
        ServerKeys {
            approvals_path: Some(dir.join("approvals-server.json")),
            unpairs_path: Some(dir.join("unpairs-server.json")),
            pairing_requests_path: Some(dir.join("pairing-requests-server.json")),
            ..ServerKeys::new(Identity::generate(), dir.join("pairings-server.json"))
        }
    }

    #[test]
    fn access_watch_reports_changes_and_recovery() {
        let dir = tempfile::tempdir().unwrap();
        let keys = keys_in(dir.path());
        let approvals_path = keys.approvals_path.clone().unwrap();
        let mut approvals = ClientIdSet::load(&approvals_path, APPROVALS).unwrap();
        approvals.insert("kept").unwrap();
        let mut watch = AccessWatch::new(&keys).unwrap();
        let none = AccessChanges::default();
        assert_eq!(watch.changed(), none, "the baseline is no change");
        let access = |ids: &[&str]| AccessChanges {
            access: ids.iter().map(|id| id.to_string()).collect(),
            code_requests: Vec::new(),
        };

        approvals.insert("new").unwrap();
        assert_eq!(watch.changed(), access(&["new"]));
        let mut requests =
            PairingRequests::load(keys.pairing_requests_path.as_ref().unwrap()).unwrap();
        requests
            .insert("coded", PairingRequest::Code("12345678".into()))
            .unwrap();
        let coded = AccessChanges {
            access: Vec::new(),
            code_requests: vec!["coded".into()],
        };
        assert_eq!(watch.changed(), coded);
        requests
            .insert("coded", PairingRequest::Code("87654321".into()))
            .unwrap();
        assert_eq!(watch.changed(), coded, "a replaced request");
        requests
            .insert("tokened", PairingRequest::Token("SP:0AAAA".into()))
            .unwrap();
        assert_eq!(watch.changed(), access(&["tokened"]));

        // While a file is unreadable nothing changes; once it reads again,
        // every client the files name counts as changed.
        std::fs::write(&approvals_path, "[\"kept").unwrap();
        assert_eq!(watch.changed(), none);
        std::fs::write(&approvals_path, "[\"kept\", \"new\"]").unwrap();
        assert_eq!(
            watch.changed(),
            access(&["coded", "kept", "new", "tokened"])
        );
        assert_eq!(watch.changed(), none);

        // With every unpaired client allowed, approvals change nothing.
        let mut open = AccessWatch::new(&ServerKeys {
            allow_unpaired: true,
            ..keys_in(dir.path())
        })
        .unwrap();
        approvals.insert("later").unwrap();
        assert_eq!(open.changed(), none);
    }
}

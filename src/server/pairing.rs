//! The server side of Sendspin 1.0's code-based pairing: the static and
//! dynamic pairing code flows, with the operator entering the code.
//!
//! Both flows run on a Sentinel-keyed connection after `server/hello` and
//! `client/hello`. The server sends the pairing `server/activate`, waits for
//! `client/pair-init` and runs CPace with the code as password. It then
//! checks the client's confirmation and, for a dynamic code, that the code
//! is bound to this handshake. Last, it opens the sealed long-term PSK,
//! stores it and re-handshakes to it.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use futures_util::future::BoxFuture;
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;

use crate::noise::cpace::{self, Cpace, Role, SessionKeys};
use crate::noise::handshake::{self, Channel, HandshakeError, PskChoice};
use crate::noise::identity::decode_key;
use crate::noise::pairing::decode_code_token;
use crate::noise::pairing_code::{
    self, PairingError, StaticCode, DYNAMIC_CODE_DIGITS, NONCE_WRAP_LABEL, PSK_WRAP_LABEL,
};
use crate::noise::{Identity, PairingStore, PskCategory, Suite, PSK_LEN};

/// How long a client may hold an attempt back with `client/pair-pending`
/// before the server gives up: as long as a static code's pairing window.
pub const PENDING_LIMIT: Duration = Duration::from_secs(300);

/// A code-based pairing method, as the server activates it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodeMethod {
    /// The client's fixed 8-digit code.
    Static,
    /// A 6-digit code the client derives per attempt and shows or speaks.
    DynamicDigits,
    /// A dynamic code the client shows as a version-1 pairing token.
    DynamicQrCode,
}

impl CodeMethod {
    fn activation(self) -> Value {
        match self {
            CodeMethod::Static => json!({ "method": "static_pairing_code" }),
            CodeMethod::DynamicDigits => {
                json!({ "method": "dynamic_pairing_code", "format": "digits" })
            }
            CodeMethod::DynamicQrCode => {
                json!({ "method": "dynamic_pairing_code", "format": "qr_code" })
            }
        }
    }

    /// Returns whether the code is derived per attempt.
    pub fn is_dynamic(self) -> bool {
        self != CodeMethod::Static
    }

    /// Picks the method to activate from a `client/hello`'s
    /// `supported_pair_methods`: a dynamic code when offered (in digits when
    /// the client offers them), else the static code. A client that offers
    /// both gets the dynamic one, as the spec requires.
    pub fn choose(hello: &Value) -> Option<CodeMethod> {
        let methods = hello
            .pointer("/payload/supported_pair_methods")?
            .as_object()?;
        if let Some(dynamic) = methods.get("dynamic_pairing_code") {
            let offers = |field: &str, value: &str| {
                dynamic
                    .get(field)
                    .and_then(Value::as_array)
                    .is_some_and(|items| items.iter().any(|item| item == value))
            };
            let channel = offers("out_channels", "display") || offers("out_channels", "speaker");
            if channel && offers("formats", "digits") {
                return Some(CodeMethod::DynamicDigits);
            }
            if channel && offers("formats", "qr_code") {
                return Some(CodeMethod::DynamicQrCode);
            }
        }
        methods
            .contains_key("static_pairing_code")
            .then_some(CodeMethod::Static)
    }
}

impl std::fmt::Display for CodeMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CodeMethod::Static => "static pairing code",
            CodeMethod::DynamicDigits => "dynamic pairing code (digits)",
            CodeMethod::DynamicQrCode => "dynamic pairing code (pairing token)",
        })
    }
}

/// The person who enters pairing codes into the server.
pub trait Operator: Send {
    /// Tells the operator that the client is holding the attempt back, with
    /// the client's own message when it sent one.
    fn pending(&mut self, client_id: &str, message: Option<&str>);

    /// Asks for the code of `round` (1 for the first). `rejected` carries
    /// the reason when the previous input of this round was not a code.
    /// `None` cancels the attempt.
    fn code<'a>(
        &'a mut self,
        client_id: &'a str,
        method: CodeMethod,
        round: u32,
        rejected: Option<&'a str>,
    ) -> BoxFuture<'a, Option<String>>;
}

/// One connection in code-based pairing.
pub struct CodePairing<'a, S> {
    pub ws: &'a mut WebSocketStream<S>,
    pub channel: &'a mut Channel,
    pub identity: &'a Identity,
    pub records: &'a std::path::Path,
    pub client_id: &'a str,
    pub suite: Suite,
    pub handshake_hash: &'a [u8],
    /// How long to wait for each client message.
    pub timeout: Duration,
}

impl<S> CodePairing<'_, S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    /// Runs one attempt of `method` and, when it succeeds, stores the
    /// pairing record and re-handshakes to the new long-term PSK.
    pub async fn run(
        mut self,
        method: CodeMethod,
        operator: &mut dyn Operator,
    ) -> Result<(), PairingError> {
        const PAIRING_INDEX: u32 = 1;
        let activation = json!({
            "type": "server/activate",
            "payload": { "activities": ["pairing"], "active_roles": [], "pairing": method.activation() },
        });
        self.send(&activation).await?;
        let init = self.wait_for_init(PAIRING_INDEX, operator).await?;
        let commit_b = if method.is_dynamic() {
            Some(field_bytes::<32>(&init, "commit_B")?)
        } else {
            None
        };

        let nonce_a: [u8; 32] = rand::random();
        let mut round = 1u32;
        let (keys, sid) = loop {
            if method.is_dynamic() {
                let payload = if round == 1 {
                    json!({ "nonce_A": URL_SAFE_NO_PAD.encode(nonce_a) })
                } else {
                    json!({})
                };
                self.send(&json!({ "type": "server/pair-init", "payload": payload }))
                    .await?;
            }
            let entered = match self.ask_code(method, round, operator).await {
                Some(entered) => entered,
                None => {
                    self.abort("user_cancelled").await?;
                    return Err(PairingError::Cancelled);
                }
            };
            let sid = pairing_code::pake_sid(self.handshake_hash, PAIRING_INDEX, round);
            let pake = Cpace::start(Role::Initiator, &entered, b"", &sid, b"server")
                .map_err(pake_error)?;
            let share = pake.share();
            self.send(&json!({ "type": "server/pair-auth", "payload": { "pake_msg_1": URL_SAFE_NO_PAD.encode(share) } }))
                .await?;
            let reply = self.receive(&["client/pair-auth"]).await?;
            let client_share = field_bytes::<{ cpace::SHARE_LEN }>(&reply, "pake_msg_2")?;
            let keys = pake.finish(&client_share, b"client").map_err(pake_error)?;
            self.send(&json!({ "type": "server/pair-confirm", "payload": { "server_kc": URL_SAFE_NO_PAD.encode(keys.own_tag()) } }))
                .await?;
            let next: &[&str] = if method.is_dynamic() {
                &["client/pair-confirm", "client/pair-retry"]
            } else {
                &["client/pair-confirm"]
            };
            let reply = self.receive(next).await?;
            if message_type(&reply) == Some("client/pair-retry") {
                tracing::info!(client = %self.client_id, round, "the client did not verify the code; starting another round");
                round += 1;
                continue;
            }
            let client_tag = field_bytes::<{ cpace::TAG_LEN }>(&reply, "client_kc")?;
            if !keys.verify_peer_tag(&client_tag) {
                self.abort("pairing_code_mismatch").await?;
                return Err(PairingError::CodeMismatch);
            }
            if let Some(commit_b) = commit_b {
                self.check_binding(&reply, &keys, &sid, &commit_b, &nonce_a, method, &entered)?;
            }
            break (keys, sid);
        };

        let finalize = self.receive(&["client/pair-finalize"]).await?;
        let sealed = pairing_code::payload_field(&finalize, "wrapped_psk")?;
        let key = pairing_code::wrap_key(PSK_WRAP_LABEL, &sid, keys.isk());
        let psk = pairing_code::open(self.suite, &key, &sealed)
            .ok_or_else(|| PairingError::Protocol("wrapped_psk did not decrypt".into()))?;
        self.store(&psk)?;
        self.send(&json!({ "type": "server/pair-finalize", "payload": {} }))
            .await?;

        let client_key = decode_key(self.client_id).map_err(PairingError::Protocol)?;
        let choice = PskChoice {
            psk,
            category: PskCategory::LongTerm,
        };
        handshake::rehandshake_server(
            self.ws,
            self.channel,
            self.identity,
            &client_key,
            self.suite,
            self.handshake_hash,
            &choice,
            self.timeout,
        )
        .await?;
        Ok(())
    }

    /// Waits for `client/pair-init` of this activation, telling the operator
    /// about `client/pair-pending` on the way.
    async fn wait_for_init(
        &mut self,
        pairing_index: u32,
        operator: &mut dyn Operator,
    ) -> Result<Value, PairingError> {
        let started = tokio::time::Instant::now();
        loop {
            let message = match self
                .receive(&["client/pair-init", "client/pair-pending"])
                .await
            {
                Err(PairingError::Handshake(HandshakeError::Timeout { .. }))
                    if started.elapsed() < PENDING_LIMIT =>
                {
                    continue
                }
                Err(PairingError::Handshake(HandshakeError::Timeout { .. })) => {
                    return Err(PairingError::PendingTooLong(PENDING_LIMIT))
                }
                other => other?,
            };
            let index = message
                .pointer("/payload/pairing_index")
                .and_then(Value::as_u64);
            match index {
                Some(index) if index < u64::from(pairing_index) => {
                    // A leftover of an earlier activation.
                    continue;
                }
                Some(index) if index == u64::from(pairing_index) => {}
                other => {
                    return Err(PairingError::Protocol(format!(
                        "pairing_index {other:?} in {}, expected {pairing_index}",
                        message_type(&message).unwrap_or_default()
                    )))
                }
            }
            if message_type(&message) == Some("client/pair-init") {
                return Ok(message);
            }
            let note = message.pointer("/payload/message").and_then(Value::as_str);
            let note: Option<String> = note.map(|text| text.chars().take(200).collect());
            operator.pending(self.client_id, note.as_deref());
        }
    }

    /// Asks the operator until the input is a code of `method`, returning
    /// CPace's password bytes.
    async fn ask_code(
        &mut self,
        method: CodeMethod,
        round: u32,
        operator: &mut dyn Operator,
    ) -> Option<Vec<u8>> {
        let mut rejected: Option<String> = None;
        loop {
            let input = operator
                .code(self.client_id, method, round, rejected.as_deref())
                .await?;
            match parse_code(method, &input) {
                Ok(password) => return Some(password),
                Err(reason) => rejected = Some(reason),
            }
        }
    }

    /// Checks what binds a dynamic code to this handshake: `nonce_B` opens,
    /// matches `commit_B`, and derives the code the operator entered.
    #[allow(clippy::too_many_arguments)]
    fn check_binding(
        &self,
        confirm: &Value,
        keys: &SessionKeys,
        sid: &[u8],
        commit_b: &[u8; 32],
        nonce_a: &[u8; 32],
        method: CodeMethod,
        entered: &[u8],
    ) -> Result<(), PairingError> {
        let sealed = pairing_code::payload_field(confirm, "wrapped_nonce_B")?;
        let key = pairing_code::wrap_key(NONCE_WRAP_LABEL, sid, keys.isk());
        let nonce_b = pairing_code::open(self.suite, &key, &sealed)
            .ok_or_else(|| PairingError::Protocol("wrapped_nonce_B did not decrypt".into()))?;
        if &pairing_code::commit(&nonce_b) != commit_b {
            return Err(PairingError::Protocol(
                "nonce_B does not match commit_B".into(),
            ));
        }
        let digest = pairing_code::code_digest(self.handshake_hash, nonce_a, &nonce_b);
        let derived = match method {
            CodeMethod::DynamicQrCode => pairing_code::qr_code(&digest).to_vec(),
            _ => pairing_code::digits_code(&digest).into_bytes(),
        };
        if derived != entered {
            return Err(PairingError::Protocol(
                "the entered code is not the one derived from this handshake".into(),
            ));
        }
        Ok(())
    }

    fn store(&self, psk: &[u8; PSK_LEN]) -> Result<(), PairingError> {
        let mut records =
            PairingStore::load(self.records).map_err(|err| PairingError::Store(err.to_string()))?;
        records
            .insert(self.client_id, psk)
            .map_err(|err| PairingError::Store(err.to_string()))?;
        tracing::info!(client = %self.client_id, records = %self.records.display(), "paired with the client; stored the pairing record");
        Ok(())
    }

    async fn send(&mut self, message: &Value) -> Result<(), PairingError> {
        handshake::send_json(self.ws, self.channel, &message.to_string())
            .await
            .map_err(HandshakeError::from)?;
        Ok(())
    }

    async fn abort(&mut self, reason: &str) -> Result<(), PairingError> {
        self.send(&json!({ "type": "pair/abort", "payload": { "reason": reason } }))
            .await
    }

    /// Receives the next pairing message of one of the `expected` types.
    /// A `pair/abort` ends the attempt; other messages, such as
    /// `client/state`, are skipped.
    async fn receive(&mut self, expected: &[&'static str]) -> Result<Value, PairingError> {
        loop {
            let message =
                handshake::receive_json(self.ws, self.channel, expected[0], self.timeout).await?;
            match message_type(&message) {
                Some(found) if expected.contains(&found) => return Ok(message),
                Some("pair/abort") => {
                    let reason = message
                        .pointer("/payload/reason")
                        .and_then(Value::as_str)
                        .unwrap_or("none given");
                    return Err(PairingError::Aborted {
                        reason: reason.to_string(),
                    });
                }
                Some(found) if found.starts_with("client/pair") => {
                    return Err(PairingError::Protocol(format!(
                        "{found} out of sequence, expected {}",
                        expected.join(" or ")
                    )))
                }
                other => {
                    tracing::debug!(message_type = ?other, "skipping a message during pairing")
                }
            }
        }
    }
}

/// Reads an operator's input as a code of `method`, returning CPace's
/// password bytes or why the input is not such a code.
pub fn parse_code(method: CodeMethod, input: &str) -> Result<Vec<u8>, String> {
    match method {
        CodeMethod::Static => {
            StaticCode::parse(input).map(|code| code.digits().as_bytes().to_vec())
        }
        CodeMethod::DynamicDigits => {
            let digits = pairing_code::strip_separators(input);
            if digits.len() == DYNAMIC_CODE_DIGITS && digits.bytes().all(|b| b.is_ascii_digit()) {
                Ok(digits.into_bytes())
            } else {
                Err(format!(
                    "invalid pairing code {input:?}: expected the {DYNAMIC_CODE_DIGITS} digits the device shows, such as 123-456"
                ))
            }
        }
        CodeMethod::DynamicQrCode => decode_code_token(input).map(|code| code.to_vec()),
    }
}

fn pake_error(err: cpace::CpaceError) -> PairingError {
    PairingError::Protocol(err.to_string())
}

fn message_type(message: &Value) -> Option<&str> {
    message.get("type").and_then(Value::as_str)
}

/// Decodes a base64url payload field of exactly `N` bytes.
fn field_bytes<const N: usize>(message: &Value, field: &str) -> Result<[u8; N], PairingError> {
    let bytes = pairing_code::payload_field(message, field)?;
    bytes.try_into().map_err(|bytes: Vec<u8>| {
        PairingError::Protocol(format!("{field} has {} bytes, expected {N}", bytes.len()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello_with(methods: Value) -> Value {
        json!({ "type": "client/hello", "payload": { "supported_pair_methods": methods } })
    }

    #[test]
    fn method_choice_prefers_dynamic() {
        let both = hello_with(json!({
            "pairing_psk": {},
            "static_pairing_code": {},
            "dynamic_pairing_code": { "out_channels": ["display"], "formats": ["qr_code", "digits"] },
        }));
        assert_eq!(CodeMethod::choose(&both), Some(CodeMethod::DynamicDigits));
        let qr = hello_with(
            json!({ "dynamic_pairing_code": { "out_channels": ["display"], "formats": ["qr_code"] } }),
        );
        assert_eq!(CodeMethod::choose(&qr), Some(CodeMethod::DynamicQrCode));
        let static_only = hello_with(json!({ "pairing_psk": {}, "static_pairing_code": {} }));
        assert_eq!(CodeMethod::choose(&static_only), Some(CodeMethod::Static));
    }

    #[test]
    fn unrecognized_dynamic_descriptor_is_ignored() {
        let odd = hello_with(json!({
            "static_pairing_code": {},
            "dynamic_pairing_code": { "out_channels": ["hologram"], "formats": ["digits"] },
        }));
        assert_eq!(CodeMethod::choose(&odd), Some(CodeMethod::Static));
        let token_only = hello_with(json!({ "pairing_psk": {} }));
        assert_eq!(CodeMethod::choose(&token_only), None);
    }

    #[test]
    fn codes_parse_by_method() {
        assert_eq!(
            parse_code(CodeMethod::Static, "1234-5678").unwrap(),
            b"12345678"
        );
        assert_eq!(
            parse_code(CodeMethod::DynamicDigits, "123 456").unwrap(),
            b"123456"
        );
        let err = parse_code(CodeMethod::DynamicDigits, "12345").unwrap_err();
        assert!(err.contains("expected the 6 digits"), "{err}");
        let token = parse_code(
            CodeMethod::DynamicQrCode,
            "SP:14DQ6FY7E4XTOP9HJ5LV6Z3PO57YPD4XT6T97N5Y",
        )
        .unwrap();
        assert_eq!(token, (0xe0..=0xf7).collect::<Vec<u8>>());
    }
}

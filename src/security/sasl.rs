//! One connection's SASL exchange (KIP-43 SaslHandshake, then KIP-152
//! SaslAuthenticate tokens): PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, and
//! KIP-368 re-authentication.
//!
//! Owns: the exchange's state and each step's answer. Pure: credentials
//! come from a lookup the caller passes (the metadata image), nonces and
//! the clock from the caller too.
//!
//! Must not: do I/O, or tell the client which part of a failure was
//! wrong (user unknown and password wrong fail alike, after the same
//! number of steps).

use std::time::Instant;

use super::scram::{self, ScramCredential, ScramMechanism, ServerFirst};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mechanism {
    Plain,
    Scram(ScramMechanism),
}

impl Mechanism {
    pub fn from_name(name: &str) -> Option<Mechanism> {
        match name {
            "PLAIN" => Some(Mechanism::Plain),
            other => ScramMechanism::from_name(other).map(Mechanism::Scram),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Scram(scram) => scram.name(),
        }
    }
}

#[derive(Debug, Default)]
/// What the exchange waits for next.
enum Exchange {
    #[default]
    Handshake,
    FirstToken(Mechanism),
    /// SCRAM's server-first was sent; `known` is false for a user with no
    /// credential (a made-up salt was sent so the failure comes at the same
    /// step as a wrong password).
    ScramFinal(Box<ScramPending>),
}

/// SCRAM between the server's first message and the client's final one.
#[derive(Debug)]
struct ScramPending {
    mechanism: ScramMechanism,
    user: String,
    first: ServerFirst,
    credential: ScramCredential,
    known: bool,
}

/// The connection's SASL state (in its `Session`).
#[derive(Debug, Default)]
pub struct SaslState {
    exchange: Exchange,
    /// After a version 0 SaslHandshake: the tokens come as bare frames
    /// (size and bytes, no Kafka header) until the exchange ends.
    raw_tokens: bool,
    /// The authenticated user, and when its session ends (KIP-368).
    authenticated: Option<(String, Option<Instant>)>,
}

/// What one SaslAuthenticate token leads to.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Send these bytes and wait for the next token.
    Continue(Vec<u8>),
    /// Authenticated as this user; send these bytes.
    Done { user: String, response: Vec<u8> },
    /// Wrong credentials, a malformed token, or a token out of turn.
    Failed { mechanism: Option<Mechanism> },
}

/// Where the requests of a connection stand.
#[derive(Debug, PartialEq, Eq)]
pub enum Gate {
    /// Authenticated and not expired: anything may be served.
    Open,
    /// Only ApiVersions, SaslHandshake and SaslAuthenticate.
    SaslOnly,
    /// The session lifetime has passed: close the connection.
    Expired,
}

impl SaslState {
    pub fn gate(&self, now: Instant) -> Gate {
        match &self.authenticated {
            None => Gate::SaslOnly,
            Some((_, Some(expires_at))) if now >= *expires_at => Gate::Expired,
            Some(_) => Gate::Open,
        }
    }

    /// After SaslHandshake chose `mechanism` (it is enabled); `raw` for
    /// version 0, whose tokens follow as bare frames.
    pub fn handshake(&mut self, mechanism: Mechanism, raw: bool) {
        self.exchange = Exchange::FirstToken(mechanism);
        self.raw_tokens = raw;
    }

    /// Whether the next frame is a bare SASL token (version 0 handshake).
    pub fn expects_raw_token(&self) -> bool {
        self.raw_tokens
    }

    /// After a successful exchange: authenticated until `expires_at`.
    pub fn authenticated(&mut self, user: String, expires_at: Option<Instant>) {
        self.authenticated = Some((user, expires_at));
    }

    /// The user a re-authentication must prove again (KIP-368: the
    /// principal may not change on a connection).
    pub fn authenticated_user(&self) -> Option<&str> {
        self.authenticated.as_ref().map(|(user, _)| user.as_str())
    }

    /// One SaslAuthenticate token. `lookup` finds a user's credential;
    /// `server_nonce` is fresh randomness for SCRAM; `decoy` is a
    /// credential for unknown users (random salt).
    pub fn step(
        &mut self,
        token: &[u8],
        lookup: impl Fn(&str, ScramMechanism) -> Option<ScramCredential>,
        server_nonce: &str,
        decoy: impl FnOnce(ScramMechanism) -> ScramCredential,
    ) -> Step {
        let step = match std::mem::take(&mut self.exchange) {
            Exchange::Handshake => Step::Failed { mechanism: None },
            Exchange::FirstToken(Mechanism::Plain) => {
                let failed = Step::Failed {
                    mechanism: Some(Mechanism::Plain),
                };
                match parse_plain(token) {
                    Some((user, password)) if plain_matches(&user, &password, &lookup) => {
                        Step::Done {
                            user,
                            response: Vec::new(),
                        }
                    }
                    _ => failed,
                }
            }
            Exchange::FirstToken(Mechanism::Scram(mechanism)) => {
                let Some(client) = scram::parse_client_first(token) else {
                    return Step::Failed {
                        mechanism: Some(Mechanism::Scram(mechanism)),
                    };
                };
                let user = client.user.clone();
                let stored = lookup(&user, mechanism);
                let known = stored.is_some();
                let credential = stored.unwrap_or_else(|| decoy(mechanism));
                let first = scram::server_first(client, &credential, server_nonce);
                let response = first.message.clone().into_bytes();
                self.exchange = Exchange::ScramFinal(Box::new(ScramPending {
                    mechanism,
                    user,
                    first,
                    credential,
                    known,
                }));
                Step::Continue(response)
            }
            Exchange::ScramFinal(pending) => {
                let ScramPending {
                    mechanism,
                    user,
                    first,
                    credential,
                    known,
                } = *pending;
                match scram::server_final(mechanism, &first, &credential, token) {
                    Some(response) if known => Step::Done {
                        user,
                        response: response.into_bytes(),
                    },
                    _ => Step::Failed {
                        mechanism: Some(Mechanism::Scram(mechanism)),
                    },
                }
            }
        };
        if !matches!(step, Step::Continue(_)) {
            self.raw_tokens = false;
        }
        step
    }
}

/// `[authzid] NUL user NUL password`; an authzid must equal the user.
fn parse_plain(token: &[u8]) -> Option<(String, String)> {
    let text = std::str::from_utf8(token).ok()?;
    let mut parts = text.split('\0');
    let (authzid, user, password) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || user.is_empty() || (!authzid.is_empty() && authzid != user) {
        return None;
    }
    Some((user.to_string(), password.to_string()))
}

/// PLAIN checks the password against the user's SCRAM credential, the
/// stronger hash first (Kafka reads PLAIN users from a JAAS file instead).
fn plain_matches(
    user: &str,
    password: &str,
    lookup: &impl Fn(&str, ScramMechanism) -> Option<ScramCredential>,
) -> bool {
    [ScramMechanism::Sha512, ScramMechanism::Sha256]
        .into_iter()
        .find_map(|mechanism| Some((mechanism, lookup(user, mechanism)?)))
        .is_some_and(|(mechanism, credential)| credential.matches_password(mechanism, password))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice(user: &str, mechanism: ScramMechanism) -> Option<ScramCredential> {
        (user == "alice").then(|| {
            ScramCredential::from_password(mechanism, "alice-secret", b"salty".to_vec(), 4096)
        })
    }

    fn decoy(mechanism: ScramMechanism) -> ScramCredential {
        ScramCredential::from_password(mechanism, "", b"decoy".to_vec(), 4096)
    }

    #[test]
    fn plain_accepts_the_right_password_only() {
        for (token, expected) in [
            (&b"\0alice\0alice-secret"[..], true),
            (b"alice\0alice\0alice-secret", true),
            (b"\0alice\0wrong", false),
            (b"\0bob\0alice-secret", false),
            (b"bob\0alice\0alice-secret", false),
            (b"\0alice", false),
            (b"", false),
        ] {
            let mut state = SaslState::default();
            state.handshake(Mechanism::Plain, false);
            let step = state.step(token, alice, "n", decoy);
            assert_eq!(matches!(step, Step::Done { .. }), expected, "{token:?}");
        }
    }

    #[test]
    fn scram_for_an_unknown_user_fails_only_at_the_final_step() {
        let mut state = SaslState::default();
        state.handshake(Mechanism::Scram(ScramMechanism::Sha256), true);
        assert!(state.expects_raw_token());
        let first = state.step(b"n,,n=mallory,r=abc", alice, "xyz", decoy);
        assert!(matches!(first, Step::Continue(_)));
        let last = state.step(b"c=biws,r=abcxyz,p=AAAA", alice, "xyz", decoy);
        assert!(matches!(last, Step::Failed { .. }));
        assert!(!state.expects_raw_token());
    }

    #[test]
    fn a_token_before_the_handshake_fails_and_the_gate_stays_shut() {
        let mut state = SaslState::default();
        assert_eq!(state.gate(Instant::now()), Gate::SaslOnly);
        let step = state.step(b"\0alice\0alice-secret", alice, "n", decoy);
        assert_eq!(step, Step::Failed { mechanism: None });
        let now = Instant::now();
        state.authenticated("alice".into(), Some(now));
        assert_eq!(state.gate(now), Gate::Expired);
        state.authenticated("alice".into(), None);
        assert_eq!(state.gate(now), Gate::Open);
    }
}

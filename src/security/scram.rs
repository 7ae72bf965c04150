//! SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677), the server side,
//! as Kafka's `ScramSaslServer` speaks it: no channel binding, an optional
//! authorization id that must equal the user name.
//!
//! Owns: credentials (salt, iterations, stored and server keys; never the
//! password) and the two-step exchange. Pure: the caller supplies the
//! nonce and looks credentials up.
//!
//! Must not: do I/O, or say which part of a failed exchange was wrong (the
//! caller answers SASL_AUTHENTICATION_FAILED with one message).

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, Sha512};

/// Kafka's bounds on `iterations` (`ScramMechanism.minIterations`, and
/// the maximum AlterUserScramCredentials accepts).
pub const ITERATIONS_MIN: u32 = 4096;
pub const ITERATIONS_MAX: u32 = 16384;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ScramMechanism {
    Sha256,
    Sha512,
}

impl ScramMechanism {
    pub fn name(self) -> &'static str {
        match self {
            ScramMechanism::Sha256 => "SCRAM-SHA-256",
            ScramMechanism::Sha512 => "SCRAM-SHA-512",
        }
    }

    pub fn from_name(name: &str) -> Option<ScramMechanism> {
        match name {
            "SCRAM-SHA-256" => Some(ScramMechanism::Sha256),
            "SCRAM-SHA-512" => Some(ScramMechanism::Sha512),
            _ => None,
        }
    }

    /// Kafka's wire code in Describe/AlterUserScramCredentials.
    pub fn code(self) -> i8 {
        match self {
            ScramMechanism::Sha256 => 1,
            ScramMechanism::Sha512 => 2,
        }
    }

    pub fn from_code(code: i8) -> Option<ScramMechanism> {
        match code {
            1 => Some(ScramMechanism::Sha256),
            2 => Some(ScramMechanism::Sha512),
            _ => None,
        }
    }

    fn hmac(self, key: &[u8], message: &[u8]) -> Vec<u8> {
        match self {
            ScramMechanism::Sha256 => {
                let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key");
                mac.update(message);
                mac.finalize().into_bytes().to_vec()
            }
            ScramMechanism::Sha512 => {
                let mut mac = Hmac::<Sha512>::new_from_slice(key).expect("HMAC takes any key");
                mac.update(message);
                mac.finalize().into_bytes().to_vec()
            }
        }
    }

    fn hash(self, bytes: &[u8]) -> Vec<u8> {
        match self {
            ScramMechanism::Sha256 => Sha256::digest(bytes).to_vec(),
            ScramMechanism::Sha512 => Sha512::digest(bytes).to_vec(),
        }
    }

    fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        match self {
            ScramMechanism::Sha256 => {
                pbkdf2::pbkdf2_hmac_array::<Sha256, 32>(password, salt, iterations).to_vec()
            }
            ScramMechanism::Sha512 => {
                pbkdf2::pbkdf2_hmac_array::<Sha512, 64>(password, salt, iterations).to_vec()
            }
        }
    }
}

/// What the broker keeps of a SCRAM password (RFC 5802 section 3).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramCredential {
    pub salt: Vec<u8>,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
    pub iterations: u32,
}

impl ScramCredential {
    /// From the salted password AlterUserScramCredentials carries.
    pub fn from_salted_password(
        mechanism: ScramMechanism,
        salt: Vec<u8>,
        salted_password: &[u8],
        iterations: u32,
    ) -> ScramCredential {
        let client_key = mechanism.hmac(salted_password, b"Client Key");
        ScramCredential {
            salt,
            stored_key: mechanism.hash(&client_key),
            server_key: mechanism.hmac(salted_password, b"Server Key"),
            iterations,
        }
    }

    pub fn from_password(
        mechanism: ScramMechanism,
        password: &str,
        salt: Vec<u8>,
        iterations: u32,
    ) -> ScramCredential {
        let salted = mechanism.salted_password(password.as_bytes(), &salt, iterations);
        ScramCredential::from_salted_password(mechanism, salt, &salted, iterations)
    }

    /// Whether `password` is this credential's (SASL/PLAIN's check).
    pub fn matches_password(&self, mechanism: ScramMechanism, password: &str) -> bool {
        let salted = mechanism.salted_password(password.as_bytes(), &self.salt, self.iterations);
        let client_key = mechanism.hmac(&salted, b"Client Key");
        constant_time_eq(&mechanism.hash(&client_key), &self.stored_key)
    }
}

/// The client's first message, parsed.
#[derive(Debug, PartialEq, Eq)]
pub struct ClientFirst {
    pub user: String,
    pub nonce: String,
    /// `client-first-message-bare`, part of the signed auth message.
    bare: String,
    /// The GS2 header, which the final message must echo (base64) in `c=`.
    gs2_header: String,
}

/// Waiting for the client's final message.
#[derive(Debug)]
pub struct ServerFirst {
    pub message: String,
    client_first_bare: String,
    gs2_header: String,
    nonce: String,
    client_nonce: String,
}

fn constant_time_eq(left: &[u8], right: &[u8]) -> bool {
    left.len() == right.len()
        && left
            .iter()
            .zip(right)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// RFC 5802's `saslname`: `=2C` for `,` and `=3D` for `=`, nothing else.
fn unescape_name(name: &str) -> Option<String> {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(at) = rest.find('=') {
        out.push_str(&rest[..at]);
        let code = rest.get(at + 1..at + 3)?;
        out.push(match code {
            "2C" => ',',
            "3D" => '=',
            _ => return None,
        });
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    Some(out)
}

/// `client-first-message`: `n,[a=authzid],n=user,r=nonce[,extensions]`.
pub fn parse_client_first(message: &[u8]) -> Option<ClientFirst> {
    let text = std::str::from_utf8(message).ok()?;
    let mut fields = text.splitn(3, ',');
    let binding = fields.next()?;
    // "y": the client could bind a channel but thinks we cannot; "p=" asks
    // for a binding we do not offer.
    if binding != "n" && binding != "y" {
        return None;
    }
    let authzid = fields.next()?;
    let bare = fields.next()?;
    let mut user = None;
    let mut nonce = None;
    for (index, attribute) in bare.split(',').enumerate() {
        match (index, attribute.split_once('=')?) {
            (0, ("n", name)) => user = Some(unescape_name(name)?),
            // RFC 5802's `printable`: visible ASCII but ','.
            (1, ("r", value))
                if !value.is_empty() && value.bytes().all(|b| (0x21..=0x7e).contains(&b)) =>
            {
                nonce = Some(value.to_string())
            }
            (0 | 1, _) => return None,
            _ => {} // extensions (Kafka's tokenauth): not served, ignored
        }
    }
    let user = user.filter(|user| !user.is_empty())?;
    if let Some(authzid) = authzid.strip_prefix("a=") {
        if unescape_name(authzid)? != user {
            return None;
        }
    } else if !authzid.is_empty() {
        return None;
    }
    Some(ClientFirst {
        user,
        nonce: nonce?,
        bare: bare.to_string(),
        gs2_header: format!("{binding},{authzid},"),
    })
}

/// The server's first message for `client`, with our half of the nonce.
pub fn server_first(
    client: ClientFirst,
    credential: &ScramCredential,
    server_nonce: &str,
) -> ServerFirst {
    let client_nonce = client.nonce;
    let nonce = format!("{client_nonce}{server_nonce}");
    let message = format!(
        "r={nonce},s={},i={}",
        BASE64.encode(&credential.salt),
        credential.iterations
    );
    ServerFirst {
        message,
        client_first_bare: client.bare,
        gs2_header: client.gs2_header,
        nonce,
        client_nonce,
    }
}

/// Checks `client-final-message` and returns `server-final-message`, or
/// `None` for anything wrong (proof, nonce, channel binding, syntax).
pub fn server_final(
    mechanism: ScramMechanism,
    first: &ServerFirst,
    credential: &ScramCredential,
    message: &[u8],
) -> Option<String> {
    let text = std::str::from_utf8(message).ok()?;
    let (without_proof, proof) = text.rsplit_once(",p=")?;
    let mut fields = without_proof.split(',');
    let binding = fields.next()?.strip_prefix("c=")?;
    let nonce = fields.next()?.strip_prefix("r=")?;
    // librdkafka 2.0.x (Debian's kcat) sends its own nonce twice: the
    // client's, then the whole combined one. Accepted, as the proof below
    // signs exactly what it sent; Kafka refuses it.
    let nonce = nonce
        .strip_prefix(&first.client_nonce)
        .filter(|rest| *rest == first.nonce)
        .unwrap_or(nonce);
    if BASE64.decode(binding).ok()? != first.gs2_header.as_bytes() || nonce != first.nonce {
        return None;
    }
    let proof = BASE64.decode(proof).ok()?;
    let auth_message = format!(
        "{},{},{without_proof}",
        first.client_first_bare, first.message
    );
    let client_signature = mechanism.hmac(&credential.stored_key, auth_message.as_bytes());
    if proof.len() != client_signature.len() {
        return None;
    }
    let client_key: Vec<u8> = proof
        .iter()
        .zip(&client_signature)
        .map(|(a, b)| a ^ b)
        .collect();
    if !constant_time_eq(&mechanism.hash(&client_key), &credential.stored_key) {
        return None;
    }
    let server_signature = mechanism.hmac(&credential.server_key, auth_message.as_bytes());
    Some(format!("v={}", BASE64.encode(server_signature)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677 section 3: user "user", password "pencil".
    #[test]
    fn rfc_7677_sha_256_exchange() {
        let salt = BASE64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let credential =
            ScramCredential::from_password(ScramMechanism::Sha256, "pencil", salt, 4096);
        let client = parse_client_first(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO").unwrap();
        assert_eq!(client.user, "user");
        let first = server_first(client, &credential, "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0");
        assert_eq!(
            first.message,
            "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
        );
        let client_final = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                            p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
        let answer = server_final(
            ScramMechanism::Sha256,
            &first,
            &credential,
            client_final.as_bytes(),
        );
        assert_eq!(
            answer.as_deref(),
            Some("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
        );
        assert!(credential.matches_password(ScramMechanism::Sha256, "pencil"));
        assert!(!credential.matches_password(ScramMechanism::Sha256, "pencil2"));
    }

    #[test]
    fn a_wrong_proof_or_nonce_fails() {
        let credential = ScramCredential::from_password(
            ScramMechanism::Sha512,
            "secret",
            b"salt".to_vec(),
            4096,
        );
        let client = parse_client_first(b"n,,n=alice,r=abc").unwrap();
        let first = server_first(client, &credential, "xyz");
        let bad_proof = format!("c=biws,r=abcxyz,p={}", BASE64.encode([0u8; 64]));
        let bad = |message: &str| {
            server_final(
                ScramMechanism::Sha512,
                &first,
                &credential,
                message.as_bytes(),
            )
        };
        assert_eq!(bad(&bad_proof), None);
        assert_eq!(bad("c=biws,r=abcxyZ,p=AAAA"), None);
        assert_eq!(bad("c=eSws,r=abcxyz,p=AAAA"), None);
        assert_eq!(bad("garbage"), None);
        assert_eq!(bad(""), None);
    }

    #[test]
    fn malformed_client_first_messages_are_refused() {
        for message in [
            &b""[..],
            b"n",
            b"n,,",
            b"p=tls-unique,,n=user,r=abc",
            b"n,,r=abc,n=user",
            b"n,,n=,r=abc",
            b"n,,n=us=4er,r=abc",
            b"n,a=other,n=user,r=abc",
            b"n,,n=user,r=a\x01b",
            b"\xff\xfe",
        ] {
            assert_eq!(parse_client_first(message), None, "{message:?}");
        }
        let escaped = parse_client_first(b"n,a=a=2Cb,n=a=2Cb,r=abc").unwrap();
        assert_eq!(escaped.user, "a,b");
    }
}

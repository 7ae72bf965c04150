//! Who is asking: the principal a connection authenticated as, and the
//! listener it arrived on. Authentication (TLS client certificates, SASL)
//! sets the principal; authorization reads it.
//!
//! Must not: do I/O. The connection (`net`) owns the handshakes; handlers
//! read the [`Session`] through their `RequestContext`.

pub mod acl;
pub mod authorizer;
pub mod quota;
pub mod sasl;
pub mod scram;

use std::cell::{Cell, RefCell};
use std::rc::Rc;

/// A Kafka principal, `User:alice`; `User:ANONYMOUS` before (or without)
/// authentication, as in Kafka.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Principal {
    pub kind: String,
    pub name: String,
}

impl Principal {
    pub const USER: &'static str = "User";

    pub fn user(name: impl Into<String>) -> Principal {
        Principal {
            kind: Principal::USER.to_string(),
            name: name.into(),
        }
    }

    pub fn anonymous() -> Principal {
        Principal::user("ANONYMOUS")
    }
}

impl std::fmt::Display for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.kind, self.name)
    }
}

/// One connection's security state, shared by its requests.
#[derive(Debug)]
pub struct Session {
    principal: RefCell<Rc<Principal>>,
    /// A quota's throttle: the connection reads no request before this
    /// (Kafka mutes the channel).
    muted_until: Cell<Option<std::time::Instant>>,
    /// The name of the listener the connection arrived on (`PLAINTEXT`).
    listener: Rc<str>,
    /// SASL progress on a SASL listener; `None` elsewhere.
    pub sasl: Option<RefCell<sasl::SaslState>>,
}

impl Session {
    /// A connection on the default PLAINTEXT listener, not authenticated.
    pub fn anonymous() -> Rc<Session> {
        Session::on_listener(Rc::from("PLAINTEXT"), false)
    }

    /// A new connection on `listener`; `sasl` when it must authenticate
    /// with SASL before anything but ApiVersions and the SASL requests.
    pub fn on_listener(listener: Rc<str>, sasl: bool) -> Rc<Session> {
        Rc::new(Session {
            principal: RefCell::new(Rc::new(Principal::anonymous())),
            muted_until: Cell::new(None),
            listener,
            sasl: sasl.then(|| RefCell::new(sasl::SaslState::default())),
        })
    }

    /// Mutes the connection for `throttle_ms` from now (a longer mute
    /// already set stays).
    pub fn throttle(&self, throttle_ms: u64) {
        if throttle_ms == 0 {
            return;
        }
        let until = std::time::Instant::now() + std::time::Duration::from_millis(throttle_ms);
        let later = self
            .muted_until
            .get()
            .map_or(until, |muted| muted.max(until));
        self.muted_until.set(Some(later));
    }

    /// When the connection may read its next request, if muted.
    pub fn muted_until(&self) -> Option<std::time::Instant> {
        self.muted_until
            .get()
            .filter(|until| *until > std::time::Instant::now())
    }

    pub fn listener(&self) -> Rc<str> {
        self.listener.clone()
    }

    pub fn principal(&self) -> Rc<Principal> {
        self.principal.borrow().clone()
    }

    pub fn set_principal(&self, principal: Principal) {
        *self.principal.borrow_mut() = Rc::new(principal);
    }
}

//! Lethe's authentication: EdDSA-signed JWTs for five roles, a rotating key set, verification with an
//! algorithm allow-list, and the [`Principal`] handlers authorize against (R-DSR-4: a subject's token
//! reaches only that subject; algorithms allow-listed; `aud`, `iss`, `exp` checked).
//!
//! Flow: [`SigningKeys::generate`] once (persist with [`SigningKeys::to_json`], encrypted), mint with
//! [`Issuer::issue`], and on every request [`token_from_authorization`] then
//! [`Verifier::authenticate`], then [`Principal::require`] / [`Principal::may_act_for`].
#![forbid(unsafe_code)]

mod authorization;
mod claims;
mod error;
mod issue;
mod keys;
mod principal;
mod verify;

use std::sync::Once;

pub use authorization::token_from_authorization;
pub use claims::{AuthConfig, Claims, Role};
pub use error::{AuthError, Result};
pub use issue::Issuer;
pub use keys::{PublicKey, SigningKeys};
pub use principal::Principal;
pub use verify::{Verifier, MAX_TOKEN_LEN};

/// Installs jsonwebtoken's `RustCrypto` provider once per process. jsonwebtoken 12 panics at the first
/// encode or decode without a provider; if another crate installed one first, that one is kept.
pub(crate) fn ensure_crypto_provider() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // `Err` only means a provider is already installed, which is all this needs.
        let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();
    });
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn now_unix() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

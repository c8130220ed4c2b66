//! The verified caller handed to handlers, and the role and subject checks they make on it.

use std::sync::Arc;

use lethe_domain::SubjectId;

use crate::{AuthError, Claims, Result, Role};

/// Who is calling, after verification. Built only from verified claims (see
/// [`crate::Verifier::authenticate`]), so holding one means the token checked out. Its texts are
/// shared, so that a copy is cheap: a server may cache a verified token's principal and hand a copy
/// to every request that presents it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    role: Role,
    subject: Option<SubjectId>,
    site: Option<Arc<str>>,
    origins: Arc<[String]>,
    jti: Arc<str>,
}

impl Principal {
    /// The role the token grants.
    #[must_use]
    pub fn role(&self) -> Role {
        self.role
    }

    /// For [`Role::Subject`]: the subject the token is bound to.
    #[must_use]
    pub fn subject(&self) -> Option<&SubjectId> {
        self.subject.as_ref()
    }

    /// For [`Role::Site`]: the site the key belongs to.
    #[must_use]
    pub fn site(&self) -> Option<&str> {
        self.site.as_deref()
    }

    /// For [`Role::Site`]: the origins allowed by CORS; empty for other roles.
    #[must_use]
    pub fn origins(&self) -> &[String] {
        &self.origins
    }

    /// Whether `origin` (the `Origin` request header) is one this site token allows, compared exactly.
    #[must_use]
    pub fn allows_origin(&self, origin: &str) -> bool {
        self.origins.iter().any(|allowed| allowed == origin)
    }

    /// The token's unique id, for revocation and audit.
    #[must_use]
    pub fn jti(&self) -> &str {
        &self.jti
    }

    /// Passes when the principal's role is one of `roles`.
    ///
    /// # Errors
    /// [`AuthError::Forbidden`] otherwise (an empty `roles` forbids everyone).
    pub fn require(&self, roles: &[Role]) -> Result<()> {
        if roles.contains(&self.role) {
            Ok(())
        } else {
            Err(AuthError::Forbidden)
        }
    }

    /// Whether this principal may read or change `subject`'s data (R-DSR-4): a subject token only for
    /// its own subject, an admin for anyone, every other role never.
    #[must_use]
    pub fn may_act_for(&self, subject: &SubjectId) -> bool {
        match self.role {
            Role::Admin => true,
            Role::Subject => self.subject.as_ref() == Some(subject),
            Role::Site | Role::Cms | Role::Dpo => false,
        }
    }
}

impl TryFrom<Claims> for Principal {
    type Error = AuthError;

    /// Converts claims that have passed [`crate::Verifier::verify`]; the role rules are checked again
    /// so a principal can never be built from an inconsistent claim set.
    fn try_from(claims: Claims) -> Result<Self> {
        if let Some(rule) = claims.role_violation() {
            return Err(AuthError::InvalidClaims(rule));
        }
        let subject = claims
            .subject_id
            .as_deref()
            .map(SubjectId::parse)
            .transpose()
            .map_err(|_| AuthError::InvalidClaims("subject id is not valid"))?;
        Ok(Self {
            role: claims.role,
            subject,
            site: claims.site.map(Arc::from),
            origins: claims.origins.into(),
            jti: claims.jti.into(),
        })
    }
}

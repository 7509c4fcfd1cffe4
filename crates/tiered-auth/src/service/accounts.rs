//! Account flows: register, verify email, resend verification, change password, forgot
//! and reset password, and the verification links they store and mail.

use cache_core::{
    Conflict, EventKind, NewUser, Purpose, StoreError, User, UserId, Verification,
    VerificationToken,
};

use super::mails::{already_registered_mail, reset_mail, send_mail, verification_mail};
use super::{AuthService, Authenticated, ClientInfo, RegisterInput};
use crate::error::{AuthError, Chain};
use crate::password::check_policy;
use crate::validate::{normalize_email, normalize_name};

impl AuthService {
    /// Creates an unverified account and mails a verification link. Answers the same
    /// `Ok(())` when the email is taken (after the same hashing work), and then mails the
    /// owner a notice instead of a link.
    ///
    /// The account insert is the last thing awaited, on both paths (a `StoreError` from
    /// it is the answer: never a false success). The verification link is stored and
    /// mailed by a background task, and the notice mailed by one, so that a taken
    /// address answers as fast as a free one; a failure there is logged and counted
    /// (`auth_background_failures_total`), and `resend_verification` recovers from it.
    pub async fn register(&self, input: RegisterInput) -> Result<(), AuthError> {
        let name = normalize_name(&input.name)?;
        let email = normalize_email(&input.email)?;
        check_policy(&self.inner.config.password, "password", &input.password)?;
        let password_hash = self.inner.hasher.hash(input.password).await?;
        let id = UserId::random().map_err(AuthError::internal)?;
        let user = User { id, name, email, email_verified: false, created_at: self.now() };
        let new_user = NewUser { user, password_hash };
        match self.stores().accounts.create_account(&new_user).await {
            Ok(()) => {
                let email = new_user.user.email;
                self.spawn_verification(Flow::Register, id, email, Purpose::EmailVerification);
                metrics::counter!("auth_registrations_total", "result" => "created").increment(1);
            }
            Err(StoreError::Conflict(Conflict::Exists)) => {
                // The email is taken (an id collision is a 2^-63 event). The answer does
                // not say so; the owner learns about the attempt by mail, spawned like the
                // other path's work so that both answer after the same awaits.
                let mail = already_registered_mail(&self.inner.base_url, new_user.user.email);
                self.spawn_mail(mail);
                metrics::counter!("auth_registrations_total", "result" => "taken").increment(1);
            }
            Err(e) => return Err(e.into()),
        }
        Ok(())
    }

    /// Consumes an email verification token and marks the address verified. Nothing
    /// else: it opens no session and sets no password, so clicking a link of an account
    /// someone else registered with this address does not hand that account over (the
    /// mail says so; `forgot_password` is the owner's way in).
    pub async fn verify_email(&self, token: &str) -> Result<User, AuthError> {
        let token = VerificationToken::parse(token).map_err(|_| AuthError::InvalidToken)?;
        let stores = self.stores();
        let verification = stores
            .verifications
            .consume(&token.hash(), Purpose::EmailVerification)
            .await?
            .ok_or(AuthError::InvalidToken)?;
        let user = stores
            .accounts
            .mark_email_verified(verification.user, &verification.identifier)
            .await?
            // The account is gone or its address changed since the link was sent.
            .ok_or(AuthError::InvalidToken)?;
        self.invalidate_user(user.id).await;
        self.record(user.id, EventKind::EmailVerified, &ClientInfo::default());
        Ok(user)
    }

    /// Sends a new verification link to a known, unverified address (older links stop
    /// working). Does nothing otherwise; answers `Ok(())` in every case, after the same
    /// awaits (the lookup): the link is stored and mailed by a background task.
    pub async fn resend_verification(&self, email: &str) -> Result<(), AuthError> {
        let email = normalize_email(email)?;
        if let Some(abuse) = &self.inner.abuse {
            // Every request counts, known address or not: the answer must not differ.
            abuse.check_account(crate::abuse::Action::ResendVerification, &email).await?.keep();
        }
        if let Some(credentials) = self.stores().accounts.credentials_by_email(&email).await? {
            let user = credentials.user;
            if !user.email_verified {
                let purpose = Purpose::EmailVerification;
                self.spawn_verification(Flow::Resend, user.id, user.email, purpose);
            }
        }
        Ok(())
    }

    /// Changes the caller's password after checking the current one, then ends every
    /// other session and voids pending reset links; returns how many sessions were ended.
    ///
    /// With [`AuthService::with_abuse`], the check of the current password is limited
    /// like a login ([`Abuse::check_password_change`]): per account, address and pair in
    /// the login buckets, and per session. Over a limit it is `RateLimited` before any
    /// work; a wrong current password counts (and feeds the stuffing detector), anything
    /// else is released.
    pub async fn change_password(
        &self,
        auth: &Authenticated,
        current: &str,
        new: &str,
        client: &ClientInfo,
    ) -> Result<u64, AuthError> {
        let Some(abuse) = &self.inner.abuse else {
            return self.change_password_unguarded(auth, current, new).await;
        };
        // The profile's address is stored normalized: the same key a login uses.
        let account = auth.user.email.as_str();
        let permits =
            abuse.check_password_change(client.ip, account, &auth.session.key.hash).await?;
        let result = self.change_password_unguarded(auth, current, new).await;
        match &result {
            Err(AuthError::InvalidCredentials) => {
                permits.keep();
                abuse.login_failed(client.ip, account).await;
            }
            // A success, a weak new password after a right current one, or a failure of
            // ours: not a guess.
            _ => abuse.release(permits).await,
        }
        result
    }

    async fn change_password_unguarded(
        &self,
        auth: &Authenticated,
        current: &str,
        new: &str,
    ) -> Result<u64, AuthError> {
        let stores = self.stores();
        let user = auth.user.id;
        let credentials =
            stores.accounts.credentials_by_id(user).await?.ok_or(AuthError::Unauthenticated)?;
        if !self.inner.hasher.verify(current.to_owned(), credentials.password_hash).await? {
            return Err(AuthError::InvalidCredentials);
        }
        check_policy(&self.inner.config.password, "new_password", new)?;
        let hash = self.inner.hasher.hash(new.to_owned()).await?;
        if !stores.accounts.set_password_hash(user, &hash).await? {
            return Err(AuthError::Unauthenticated);
        }
        let revoked =
            stores.sessions.delete_user_sessions(user, Some(auth.session.key.hash)).await?;
        metrics::counter!("auth_sessions_revoked_total", "reason" => "password_change")
            .increment(revoked);
        // A reset link mailed before the change would otherwise undo it.
        stores.verifications.delete_verifications(user, Purpose::PasswordReset).await?;
        self.record_by_session(EventKind::PasswordChanged, &auth.session);
        Ok(revoked)
    }

    /// Mails a password reset link to a known address (older links stop working), also
    /// when it is not verified yet: the reset then verifies it, which is how the owner
    /// of an address takes back an account someone else registered with it. Answers
    /// `Ok(())` in every case, after the same awaits (the lookup): the link is stored and
    /// mailed by a background task.
    pub async fn forgot_password(&self, email: &str) -> Result<(), AuthError> {
        let email = normalize_email(email)?;
        if let Some(abuse) = &self.inner.abuse {
            // Every request counts, known address or not: the answer must not differ.
            abuse.check_account(crate::abuse::Action::ForgotPassword, &email).await?.keep();
        }
        if let Some(credentials) = self.stores().accounts.credentials_by_email(&email).await? {
            let user = credentials.user;
            self.record(user.id, EventKind::PasswordResetRequested, &ClientInfo::default());
            self.spawn_verification(Flow::Forgot, user.id, user.email, Purpose::PasswordReset);
        }
        Ok(())
    }

    /// Consumes a reset token, sets the new password, marks the address verified (the
    /// link proved control of the mailbox) and ends every session of the user. The
    /// password is checked first, so a weak one does not burn the token.
    pub async fn reset_password(&self, token: &str, new_password: &str) -> Result<(), AuthError> {
        let token = VerificationToken::parse(token).map_err(|_| AuthError::InvalidToken)?;
        check_policy(&self.inner.config.password, "new_password", new_password)?;
        let stores = self.stores();
        let verification = stores
            .verifications
            .consume(&token.hash(), Purpose::PasswordReset)
            .await?
            .ok_or(AuthError::InvalidToken)?;
        let user = verification.user;
        let hash = self.inner.hasher.hash(new_password.to_owned()).await?;
        // The link proves control of the address it was sent to, not of a later one: the
        // store writes only while the account's address is still that one.
        stores
            .accounts
            .reset_credentials(user, &verification.identifier, &hash)
            .await?
            .ok_or(AuthError::InvalidToken)?;
        let revoked = stores.sessions.delete_user_sessions(user, None).await?;
        metrics::counter!("auth_sessions_revoked_total", "reason" => "password_reset")
            .increment(revoked);
        stores.verifications.delete_verifications(user, Purpose::PasswordReset).await?;
        // The address is verified now: pending verification links have nothing left to do.
        stores.verifications.delete_verifications(user, Purpose::EmailVerification).await?;
        self.invalidate_user(user).await;
        self.record(user, EventKind::PasswordReset, &ClientInfo::default());
        Ok(())
    }

    /// Issues a verification link in a background task: the request that asked for it
    /// answers without waiting for the store writes and the mail, so that an address
    /// with an account costs the same on the request's path as one without. Older links
    /// of the same purpose stop working first. A failure is logged and counted, never
    /// shown: the answer was the same either way.
    fn spawn_verification(&self, flow: Flow, user: UserId, email: String, purpose: Purpose) {
        let this = self.clone();
        self.spawn_background(async move {
            if let Err(e) = this.issue_verification(user, &email, purpose).await {
                metrics::counter!("auth_background_failures_total", "flow" => flow.as_str())
                    .increment(1);
                tracing::error!(
                    flow = flow.as_str(),
                    user = %user,
                    error = %Chain(&e),
                    "verification link not issued"
                );
            }
        });
    }

    /// Supersedes the pending links of `purpose`, draws a token, stores its hash and
    /// mails the link (in this order: a link is only mailed once it works).
    async fn issue_verification(
        &self,
        user: UserId,
        email: &str,
        purpose: Purpose,
    ) -> Result<(), AuthError> {
        let verifications = &self.stores().verifications;
        verifications.delete_verifications(user, purpose).await?;
        let token = VerificationToken::generate().map_err(AuthError::internal)?;
        let now = self.now();
        let ttl = match purpose {
            Purpose::EmailVerification => self.inner.config.email_verification_ttl,
            Purpose::PasswordReset => self.inner.config.password_reset_ttl,
        };
        let verification = Verification {
            hash: token.hash(),
            purpose,
            user,
            identifier: email.to_owned(),
            created_at: now,
            expires_at: now + ttl,
        };
        verifications.put_verification(&verification).await?;
        let base_url = &self.inner.base_url;
        let mail = match purpose {
            Purpose::EmailVerification => {
                let expires = self.inner.config.unverified_account_ttl;
                verification_mail(base_url, email, &token, expires)
            }
            Purpose::PasswordReset => reset_mail(base_url, email, &token),
        };
        send_mail(self.inner.mailer.as_ref(), mail).await;
        Ok(())
    }
}

/// The flows whose work finishes in a background task; the `flow` label of
/// `auth_background_failures_total`.
#[derive(Debug, Clone, Copy)]
enum Flow {
    Register,
    Resend,
    Forgot,
}

impl Flow {
    fn as_str(self) -> &'static str {
        match self {
            Flow::Register => "register",
            Flow::Resend => "resend_verification",
            Flow::Forgot => "forgot_password",
        }
    }
}

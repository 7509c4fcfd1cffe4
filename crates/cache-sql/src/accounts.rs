//! Accounts on SQL: the profile behind [`UserCache`] and the credentials behind
//! [`AccountStore`]. Credentials are read here and nowhere else.

use async_trait::async_trait;
use cache_core::{AccountStore, Credentials, NewUser, StoreResult, User, UserCache, UserId};
use diesel::upsert::excluded;
use diesel::{ExpressionMethods, NullableExpressionMethods, OptionalExtension, QueryDsl};
use diesel_async::RunQueryDsl;

use crate::TIER;
use crate::error::{SqlError, SqlResult};
use crate::rows::{CredentialsRow, UserRow, credentials_columns, user_columns};
use crate::schema::Ts;
use crate::store::SqlStore;

#[async_trait]
impl UserCache for SqlStore {
    fn tier(&self) -> &'static str {
        TIER
    }

    async fn get_user(&self, id: UserId) -> StoreResult<Option<User>> {
        let id = id.get();
        self.count(1);
        let row = with_conn!(self, |conn| {
            Ok(users::table
                .select(user_columns!())
                .filter(users::id.eq(id))
                .get_result::<UserRow>(conn)
                .await
                .optional()?)
        })?;
        Ok(row.map(User::try_from).transpose()?)
    }

    /// Upserts the profile columns; a new row gets no password hash (it cannot log in)
    /// and an existing row keeps its own.
    async fn put_user(&self, user: &User) -> StoreResult<()> {
        let (id, name, email) = (user.id.get(), user.name.clone(), user.email.clone());
        let (verified, created_at, now) = (user.email_verified, Ts(user.created_at), self.now_ts());
        self.count(1);
        with_conn!(self, |conn| {
            diesel::insert_into(users::table)
                .values((
                    users::id.eq(id),
                    users::name.eq(name),
                    users::email.eq(email),
                    users::email_verified.eq(verified),
                    users::created_at.eq(created_at),
                    users::updated_at.eq(now),
                ))
                .on_conflict(users::id)
                .do_update()
                .set((
                    users::name.eq(excluded(users::name)),
                    users::email.eq(excluded(users::email)),
                    users::email_verified.eq(excluded(users::email_verified)),
                    users::updated_at.eq(excluded(users::updated_at)),
                ))
                .execute(conn)
                .await?;
            Ok(())
        })?;
        Ok(())
    }

    async fn invalidate_user(&self, _id: UserId) -> StoreResult<()> {
        // The authority holds no copy to drop.
        Ok(())
    }
}

#[async_trait]
impl AccountStore for SqlStore {
    async fn create_account(&self, new_user: &NewUser) -> StoreResult<()> {
        let user = &new_user.user;
        let (id, name, email) = (user.id.get(), user.name.clone(), user.email.clone());
        let (verified, created_at, now) = (user.email_verified, Ts(user.created_at), self.now_ts());
        let password_hash = new_user.password_hash.clone();
        self.count(1);
        with_conn!(self, |conn| {
            diesel::insert_into(users::table)
                .values((
                    users::id.eq(id),
                    users::name.eq(name),
                    users::email.eq(email),
                    users::email_verified.eq(verified),
                    users::password_hash.eq(Some(password_hash)),
                    users::created_at.eq(created_at),
                    users::updated_at.eq(now),
                ))
                .execute(conn)
                .await?;
            Ok(())
        })?;
        Ok(())
    }

    async fn credentials_by_email(&self, email: &str) -> StoreResult<Option<Credentials>> {
        let email = email.to_owned();
        self.count(1);
        let row = with_conn!(self, |conn| {
            Ok(users::table
                .select(credentials_columns!())
                .filter(users::email.eq(email))
                .filter(users::password_hash.is_not_null())
                .get_result::<CredentialsRow>(conn)
                .await
                .optional()?)
        })?;
        Ok(row.map(Credentials::try_from).transpose()?)
    }

    async fn credentials_by_id(&self, id: UserId) -> StoreResult<Option<Credentials>> {
        let id = id.get();
        self.count(1);
        let row = with_conn!(self, |conn| {
            Ok(users::table
                .select(credentials_columns!())
                .filter(users::id.eq(id))
                .filter(users::password_hash.is_not_null())
                .get_result::<CredentialsRow>(conn)
                .await
                .optional()?)
        })?;
        Ok(row.map(Credentials::try_from).transpose()?)
    }

    async fn set_password_hash(&self, id: UserId, password_hash: &str) -> StoreResult<bool> {
        let (id, password_hash, now) = (id.get(), password_hash.to_owned(), self.now_ts());
        self.count(1);
        let n = with_conn!(self, |conn| {
            Ok(diesel::update(users::table.filter(users::id.eq(id)))
                .set((users::password_hash.eq(Some(password_hash)), users::updated_at.eq(now)))
                .execute(conn)
                .await?)
        })?;
        Ok(n > 0)
    }

    async fn mark_email_verified(&self, id: UserId, email: &str) -> StoreResult<Option<User>> {
        let (id, email, now) = (id.get(), email.to_owned(), self.now_ts());
        self.count(1);
        let row = with_conn!(self, |conn| {
            // Only while the address is still the one the link was sent to.
            Ok(diesel::update(users::table.filter(users::id.eq(id)).filter(users::email.eq(email)))
                .set((users::email_verified.eq(true), users::updated_at.eq(now)))
                .returning(user_columns!())
                .get_result::<UserRow>(conn)
                .await
                .optional()?)
        })?;
        Ok(row.map(User::try_from).transpose()?)
    }

    /// One statement: the new hash and the verified flag land together, only while the
    /// address is still the one the reset link was sent to.
    async fn reset_credentials(
        &self,
        id: UserId,
        email: &str,
        password_hash: &str,
    ) -> StoreResult<Option<User>> {
        let (id, email, now) = (id.get(), email.to_owned(), self.now_ts());
        let password_hash = password_hash.to_owned();
        self.count(1);
        let row = with_conn!(self, |conn| {
            Ok(diesel::update(users::table.filter(users::id.eq(id)).filter(users::email.eq(email)))
                .set((
                    users::password_hash.eq(Some(password_hash)),
                    users::email_verified.eq(true),
                    users::updated_at.eq(now),
                ))
                .returning(user_columns!())
                .get_result::<UserRow>(conn)
                .await
                .optional()?)
        })?;
        Ok(row.map(User::try_from).transpose()?)
    }
}

impl SqlStore {
    /// Deletes at most `limit` accounts still unverified that were created at or before
    /// `created_before`, with their pending verifications, in one transaction; returns
    /// their ids. Run by the janitor: an address registered by someone who could not
    /// verify it (a typo, or an attacker pre-registering a victim's address) becomes free
    /// again. An account verified meanwhile is never deleted: the delete re-checks the
    /// flag on the row it removes.
    pub async fn delete_unverified_accounts(
        &self,
        created_before: chrono::DateTime<chrono::Utc>,
        limit: usize,
    ) -> StoreResult<Vec<UserId>> {
        use diesel_async::AsyncConnection as _;

        let cutoff = Ts(created_before);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.count(2);
        let ids = with_conn!(self, |conn| {
            conn.transaction::<_, SqlError, _>(async move |conn| {
                // The batch is a subquery on the same table, hence the alias.
                diesel::alias!(users as stale: StaleUsers);
                let batch = stale
                    .select(stale.field(users::id))
                    .filter(stale.field(users::email_verified).eq(false))
                    .filter(stale.field(users::created_at).le(cutoff))
                    .limit(limit);
                let ids = diesel::delete(
                    users::table
                        .filter(users::id.eq_any(batch))
                        .filter(users::email_verified.eq(false)),
                )
                .returning(users::id)
                .load::<i64>(conn)
                .await?;
                if !ids.is_empty() {
                    diesel::delete(
                        verifications::table.filter(verifications::user_id.eq_any(ids.clone())),
                    )
                    .execute(conn)
                    .await?;
                }
                Ok(ids)
            })
            .await
        })?;
        let ids = ids
            .into_iter()
            .map(|id| UserId::new(id).ok_or(SqlError::Corrupt("user id is not positive")))
            .collect::<SqlResult<Vec<_>>>()?;
        Ok(ids)
    }
}

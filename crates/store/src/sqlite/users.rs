//! SQLite implementation of [`crate::UserStore`].

use super::*;
use crate::users::*;

fn user_from_row(r: &SqliteRow) -> Result<User> {
    Ok(User {
        id: r.try_get("id")?,
        login: r.try_get("login")?,
        password_hash: r.try_get("password_hash")?,
        created_at: r.try_get("created_at")?,
        disabled: r.try_get::<i64, _>("disabled")? != 0,
    })
}

fn membership_from_row(r: &SqliteRow) -> Result<Membership> {
    let id: i64 = r.try_get("id")?;
    Ok(Membership {
        role: named(r, "memberships", id, "role")?,
        user_id: r.try_get("user_id")?,
        tenant_id: r.try_get("tenant_id")?,
    })
}

fn session_from_row(r: &SqliteRow) -> Result<Session> {
    Ok(Session {
        id_hash: r.try_get("id_hash")?,
        user_id: r.try_get("user_id")?,
        created_at: r.try_get("created_at")?,
        expires_at: r.try_get("expires_at")?,
        last_seen: r.try_get("last_seen")?,
        csrf_token: r.try_get("csrf_token")?,
    })
}

#[async_trait]
impl UserStore for SqliteStore {
    async fn create_user(&self, user: &User, memberships: &[Membership]) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO users (id, login, password_hash, created_at, disabled) VALUES (?, ?, ?, ?, ?) \
             ON CONFLICT (login) DO NOTHING",
        )
        .bind(&user.id)
        .bind(&user.login)
        .bind(&user.password_hash)
        .bind(user.created_at)
        .bind(i64::from(user.disabled))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            return Err(StoreError::Conflict(format!(
                "a user with login {:?} already exists",
                user.login
            )));
        }
        for m in memberships {
            sqlx::query(
                "INSERT INTO memberships (user_id, tenant_id, role, created_at) VALUES (?, ?, ?, ?)",
            )
            .bind(&user.id)
            .bind(&m.tenant_id)
            .bind(m.role.as_str())
            .bind(user.created_at)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn user_by_login(&self, login: &str) -> Result<Option<User>> {
        let row = sqlx::query("SELECT * FROM users WHERE login = ?")
            .bind(login)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn user(&self, id: &str) -> Result<Option<User>> {
        let row = sqlx::query("SELECT * FROM users WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn count_users(&self) -> Result<i64> {
        Ok(sqlx::query("SELECT COUNT(*) AS n FROM users")
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?)
    }

    async fn set_user_disabled(&self, id: &str, disabled: bool) -> Result<bool> {
        let n = sqlx::query("UPDATE users SET disabled = ? WHERE id = ?")
            .bind(i64::from(disabled))
            .bind(id)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(n > 0)
    }

    async fn memberships_of(&self, user_id: &str) -> Result<Vec<Membership>> {
        let rows = sqlx::query(
            "SELECT id, user_id, tenant_id, role FROM memberships WHERE user_id = ? ORDER BY id",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(membership_from_row).collect()
    }

    async fn list_users(&self) -> Result<Vec<User>> {
        let rows = sqlx::query("SELECT * FROM users ORDER BY login")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(user_from_row).collect()
    }

    async fn all_memberships(&self) -> Result<Vec<Membership>> {
        let rows = sqlx::query("SELECT id, user_id, tenant_id, role FROM memberships ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(membership_from_row).collect()
    }

    async fn list_api_tokens(&self, tenant_id: Option<&str>) -> Result<Vec<ApiToken>> {
        let rows = match tenant_id {
            Some(t) => {
                sqlx::query("SELECT * FROM api_tokens WHERE tenant_id = ? ORDER BY created_at, id")
                    .bind(t)
                    .fetch_all(&self.pool)
                    .await?
            }
            None => {
                sqlx::query("SELECT * FROM api_tokens ORDER BY created_at, id")
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        rows.iter().map(api_token_from_row).collect()
    }

    async fn api_token(&self, id: &str) -> Result<Option<ApiToken>> {
        let row = sqlx::query("SELECT * FROM api_tokens WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(api_token_from_row).transpose()
    }

    async fn revoke_api_token(&self, id: &str, now: i64) -> Result<bool> {
        let n =
            sqlx::query("UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL")
                .bind(now)
                .bind(id)
                .execute(&self.pool)
                .await?
                .rows_affected();
        Ok(n > 0)
    }

    async fn insert_session(&self, s: &Session) -> Result<()> {
        sqlx::query(
            "INSERT INTO sessions (id_hash, user_id, created_at, expires_at, last_seen, csrf_token) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&s.id_hash)
        .bind(&s.user_id)
        .bind(s.created_at)
        .bind(s.expires_at)
        .bind(s.last_seen)
        .bind(&s.csrf_token)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn live_session(&self, id_hash: &str, now: i64) -> Result<Option<Session>> {
        let row = sqlx::query("SELECT * FROM sessions WHERE id_hash = ? AND expires_at > ?")
            .bind(id_hash)
            .bind(now)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(session_from_row).transpose()
    }

    async fn touch_session(&self, id_hash: &str, now: i64) -> Result<()> {
        sqlx::query("UPDATE sessions SET last_seen = ? WHERE id_hash = ?")
            .bind(now)
            .bind(id_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn delete_session(&self, id_hash: &str) -> Result<()> {
        sqlx::query("DELETE FROM sessions WHERE id_hash = ?")
            .bind(id_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn delete_expired_sessions(&self, now: i64) -> Result<u64> {
        Ok(sqlx::query("DELETE FROM sessions WHERE expires_at <= ?")
            .bind(now)
            .execute(&self.pool)
            .await?
            .rows_affected())
    }
}

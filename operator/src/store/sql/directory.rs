//! The directory: users (`users`), teams and their members (`teams`, `team_members`) and
//! principals' preferences (`preferences`).

use serde::Serialize;
use sqlx::Row;

use super::SqlStore;
use crate::error::{Error, Result};

/// A user the admin registered: a developer identity whose role is their keys' role
/// (changing it changes what every key of theirs may do; deleting the user revokes them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct User {
    /// The developer name keys are issued for.
    pub name: String,
    /// `admin`, `superuser` or `developer`.
    pub role: String,
    /// For people.
    pub display_name: Option<String>,
    /// Teams the user belongs to.
    pub teams: Vec<String>,
}

/// A team and its members.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Team {
    /// The team's name (budget subjects and keys use it).
    pub name: String,
    /// Member user names.
    pub members: Vec<String>,
}

/// A developer's preferences.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Preferences {
    /// The model used when a request names none or `default`.
    #[serde(default)]
    pub model: Option<String>,
    /// The preferred inference provider (an IPToken name) among those serving the model.
    #[serde(default)]
    pub provider: Option<String>,
}

impl SqlStore {
    /// Every user with their teams.
    pub async fn users(&self) -> Result<Vec<User>> {
        let sql = "SELECT name, role, display_name FROM users ORDER BY name";
        let mut users: Vec<User> = with_pool!(&self.store, pool => {
            let mut out = Vec::new();
            for row in sqlx::query(sql).fetch_all(pool).await? {
                out.push(User {
                    name: row.try_get("name")?,
                    role: row.try_get("role")?,
                    display_name: row.try_get("display_name")?,
                    teams: Vec::new(),
                });
            }
            out
        });
        let memberships = self.memberships().await?;
        for u in &mut users {
            u.teams =
                memberships.iter().filter(|(_, user)| *user == u.name).map(|(t, _)| t.clone()).collect();
        }
        Ok(users)
    }

    async fn memberships(&self) -> Result<Vec<(String, String)>> {
        let sql = "SELECT team, user_name FROM team_members ORDER BY team, user_name";
        Ok(with_pool!(&self.store, pool => {
            let mut out = Vec::new();
            for row in sqlx::query(sql).fetch_all(pool).await? {
                out.push((row.try_get("team")?, row.try_get("user_name")?));
            }
            out
        }))
    }

    /// Creates or updates a user.
    pub async fn put_user(
        &self,
        name: &str,
        role: &str,
        display_name: Option<&str>,
        now_ms: i64,
    ) -> Result<()> {
        let sql = "INSERT INTO users (name, role, display_name, created_at_ms) VALUES ($1, $2, $3, $4) \
                   ON CONFLICT (name) DO UPDATE SET role = EXCLUDED.role, display_name = EXCLUDED.display_name";
        with_pool!(&self.store, pool => {
            sqlx::query(sql).bind(name).bind(role).bind(display_name).bind(now_ms).execute(pool).await?;
        });
        Ok(())
    }

    /// Deletes a user and their memberships; whether it existed.
    pub async fn delete_user(&self, name: &str) -> Result<bool> {
        let n = with_pool!(&self.store, pool => {
            sqlx::query("DELETE FROM team_members WHERE user_name = $1").bind(name).execute(pool).await?;
            sqlx::query("DELETE FROM users WHERE name = $1").bind(name).execute(pool).await?.rows_affected()
        });
        Ok(n > 0)
    }

    /// Every team with its members.
    pub async fn teams(&self) -> Result<Vec<Team>> {
        let names: Vec<String> = with_pool!(&self.store, pool => {
            let mut out = Vec::new();
            for row in sqlx::query("SELECT name FROM teams ORDER BY name").fetch_all(pool).await? {
                out.push(row.try_get("name")?);
            }
            out
        });
        let memberships = self.memberships().await?;
        Ok(names
            .into_iter()
            .map(|name| Team {
                members: memberships.iter().filter(|(t, _)| *t == name).map(|(_, u)| u.clone()).collect(),
                name,
            })
            .collect())
    }

    /// Creates a team (no-op when it exists).
    pub async fn put_team(&self, name: &str, now_ms: i64) -> Result<()> {
        let sql = "INSERT INTO teams (name, created_at_ms) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING";
        with_pool!(&self.store, pool => { sqlx::query(sql).bind(name).bind(now_ms).execute(pool).await?; });
        Ok(())
    }

    /// Deletes a team and its memberships; whether it existed.
    pub async fn delete_team(&self, name: &str) -> Result<bool> {
        let n = with_pool!(&self.store, pool => {
            sqlx::query("DELETE FROM team_members WHERE team = $1").bind(name).execute(pool).await?;
            sqlx::query("DELETE FROM teams WHERE name = $1").bind(name).execute(pool).await?.rows_affected()
        });
        Ok(n > 0)
    }

    /// Adds a member (both must exist).
    pub async fn add_member(&self, team: &str, user: &str) -> Result<()> {
        let teams = self.teams().await?;
        if !teams.iter().any(|t| t.name == team) {
            return Err(Error::NotFound(format!("no team {team:?}")));
        }
        if !self.users().await?.iter().any(|u| u.name == user) {
            return Err(Error::NotFound(format!("no user {user:?}")));
        }
        let sql = "INSERT INTO team_members (team, user_name) VALUES ($1, $2) ON CONFLICT (team, user_name) DO NOTHING";
        with_pool!(&self.store, pool => { sqlx::query(sql).bind(team).bind(user).execute(pool).await?; });
        Ok(())
    }

    /// Removes a member; whether they were one.
    pub async fn remove_member(&self, team: &str, user: &str) -> Result<bool> {
        let sql = "DELETE FROM team_members WHERE team = $1 AND user_name = $2";
        let n = with_pool!(&self.store, pool => {
            sqlx::query(sql).bind(team).bind(user).execute(pool).await?.rows_affected()
        });
        Ok(n > 0)
    }

    /// The teams a user belongs to.
    pub async fn teams_of(&self, user: &str) -> Result<Vec<String>> {
        Ok(self.memberships().await?.into_iter().filter(|(_, u)| u == user).map(|(t, _)| t).collect())
    }

    // --- preferences ------------------------------------------------------------------

    /// A principal's preferences (defaults when unset).
    pub async fn preferences(&self, kind: &str, name: &str) -> Result<Preferences> {
        let sql = "SELECT model, provider FROM preferences WHERE principal_kind = $1 AND principal_name = $2";
        Ok(with_pool!(&self.store, pool => {
            match sqlx::query(sql).bind(kind).bind(name).fetch_optional(pool).await? {
                Some(row) => Preferences { model: row.try_get("model")?, provider: row.try_get("provider")? },
                None => Preferences::default(),
            }
        }))
    }

    /// Every preferred model, keyed `kind/name` (for the gateway).
    pub async fn preferred_models(&self) -> Result<std::collections::HashMap<String, String>> {
        let sql = "SELECT principal_kind, principal_name, model FROM preferences WHERE model IS NOT NULL";
        Ok(with_pool!(&self.store, pool => {
            let mut out = std::collections::HashMap::new();
            for row in sqlx::query(sql).fetch_all(pool).await? {
                let (kind, name, model): (String, String, String) =
                    (row.try_get("principal_kind")?, row.try_get("principal_name")?, row.try_get("model")?);
                out.insert(format!("{kind}/{name}"), model);
            }
            out
        }))
    }

    /// Sets a principal's preferences.
    pub async fn put_preferences(&self, kind: &str, name: &str, p: &Preferences, now_ms: i64) -> Result<()> {
        let sql = "INSERT INTO preferences (principal_kind, principal_name, model, provider, updated_at_ms) \
                   VALUES ($1, $2, $3, $4, $5) ON CONFLICT (principal_kind, principal_name) DO UPDATE SET \
                   model = EXCLUDED.model, provider = EXCLUDED.provider, updated_at_ms = EXCLUDED.updated_at_ms";
        with_pool!(&self.store, pool => {
            sqlx::query(sql).bind(kind).bind(name).bind(&p.model).bind(&p.provider).bind(now_ms).execute(pool).await?;
        });
        Ok(())
    }
}

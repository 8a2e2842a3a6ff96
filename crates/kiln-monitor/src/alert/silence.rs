//! Silences: label matchers with a time range. An alert matched by an active silence keeps its
//! state (it is still listed as pending, firing or resolved) but is left out of notifications.
//!
//! Silences are serialised in the shape of Alertmanager's API v2 (`id`, `matchers[{name, value,
//! isRegex, isEqual}]`, `startsAt`, `endsAt`, `updatedAt` in RFC 3339, `createdBy`, `comment`) so
//! the caller can persist them and answer API clients with them; the state (`pending`, `active`,
//! `expired`) depends on the time and comes from [`Silence::state`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::time;
use crate::indicator::{Labels, Matcher, matches_all};

/// Whether a silence is in force at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SilenceState {
    /// Starts in the future.
    Pending,
    Active,
    Expired,
}

/// A stored silence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Silence {
    pub id: String,
    pub matchers: Vec<Matcher>,
    #[serde(rename = "startsAt", with = "time::timestamp")]
    pub starts_at_ms: i64,
    #[serde(rename = "endsAt", with = "time::timestamp")]
    pub ends_at_ms: i64,
    #[serde(rename = "updatedAt", with = "time::timestamp")]
    pub updated_at_ms: i64,
    pub created_by: String,
    pub comment: String,
}

impl Silence {
    /// Pending before `startsAt`, active from `startsAt` until (excluding) `endsAt`, then
    /// expired.
    pub fn state(&self, now_ms: i64) -> SilenceState {
        if now_ms >= self.ends_at_ms {
            SilenceState::Expired
        } else if now_ms < self.starts_at_ms {
            SilenceState::Pending
        } else {
            SilenceState::Active
        }
    }

    /// Whether every matcher holds for `labels` (regardless of time).
    pub fn matches(&self, labels: &Labels) -> bool {
        matches_all(&self.matchers, labels)
    }
}

/// A silence to create.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SilenceSpec {
    pub matchers: Vec<Matcher>,
    /// Defaults to now.
    #[serde(default, rename = "startsAt", with = "opt_timestamp")]
    pub starts_at_ms: Option<i64>,
    #[serde(rename = "endsAt", with = "time::timestamp")]
    pub ends_at_ms: i64,
    pub created_by: String,
    pub comment: String,
}

impl SilenceSpec {
    /// A silence from now for `duration_ms` (`kiln alerts silence alertname=X --for 2h`).
    pub fn for_duration(
        matchers: Vec<Matcher>,
        now_ms: i64,
        duration_ms: i64,
        created_by: impl Into<String>,
        comment: impl Into<String>,
    ) -> SilenceSpec {
        SilenceSpec {
            matchers,
            starts_at_ms: Some(now_ms),
            ends_at_ms: now_ms.saturating_add(duration_ms),
            created_by: created_by.into(),
            comment: comment.into(),
        }
    }
}

mod opt_timestamp {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(ms: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
        match ms {
            Some(ms) => s.serialize_some(&super::time::rfc3339(*ms)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        match Option::<String>::deserialize(d)? {
            Some(s) => super::time::parse_rfc3339(&s)
                .map(Some)
                .map_err(serde::de::Error::custom),
            None => Ok(None),
        }
    }
}

/// Why a silence was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SilenceError {
    #[error("a silence needs at least one matcher")]
    NoMatchers,
    #[error(
        "a silence needs at least one matcher that does not match the empty string (it would silence everything)"
    )]
    MatchesEverything,
    #[error("a silence must end after it starts")]
    EndBeforeStart,
    #[error("a silence must not end in the past")]
    EndInPast,
    #[error("a silence needs createdBy")]
    MissingCreatedBy,
    #[error("a silence needs a comment")]
    MissingComment,
    #[error("no silence with id {0}")]
    NotFound(String),
    #[error("silence {0} has already expired")]
    AlreadyExpired(String),
}

/// How long expired silences are kept before [`Silences::gc`] drops them (Alertmanager's default
/// data retention, 120 h).
pub const DEFAULT_SILENCE_RETENTION_MS: i64 = 120 * 3_600_000;

/// All silences, by id. Serialised as a list of [`Silence`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(from = "Vec<Silence>", into = "Vec<Silence>")]
pub struct Silences {
    by_id: BTreeMap<String, Silence>,
}

impl From<Vec<Silence>> for Silences {
    fn from(v: Vec<Silence>) -> Self {
        Silences {
            by_id: v.into_iter().map(|s| (s.id.clone(), s)).collect(),
        }
    }
}

impl From<Silences> for Vec<Silence> {
    fn from(s: Silences) -> Self {
        s.by_id.into_values().collect()
    }
}

impl Silences {
    pub fn new() -> Self {
        Self::default()
    }

    /// Checks and stores a silence; returns its new id (a UUID, as Alertmanager's).
    pub fn add(&mut self, spec: SilenceSpec, now_ms: i64) -> Result<String, SilenceError> {
        if spec.matchers.is_empty() {
            return Err(SilenceError::NoMatchers);
        }
        if spec.matchers.iter().all(|m| m.matches_value("")) {
            return Err(SilenceError::MatchesEverything);
        }
        let starts = spec.starts_at_ms.unwrap_or(now_ms).max(now_ms);
        if spec.ends_at_ms <= now_ms {
            return Err(SilenceError::EndInPast);
        }
        if spec.ends_at_ms <= starts {
            return Err(SilenceError::EndBeforeStart);
        }
        if spec.created_by.trim().is_empty() {
            return Err(SilenceError::MissingCreatedBy);
        }
        if spec.comment.trim().is_empty() {
            return Err(SilenceError::MissingComment);
        }
        let id = uuid::Uuid::new_v4().to_string();
        self.by_id.insert(
            id.clone(),
            Silence {
                id: id.clone(),
                matchers: spec.matchers,
                starts_at_ms: starts,
                ends_at_ms: spec.ends_at_ms,
                updated_at_ms: now_ms,
                created_by: spec.created_by,
                comment: spec.comment,
            },
        );
        Ok(id)
    }

    /// Ends a silence now (a pending one never starts). Expired silences stay listed until
    /// [`Self::gc`].
    pub fn expire(&mut self, id: &str, now_ms: i64) -> Result<(), SilenceError> {
        let s = self
            .by_id
            .get_mut(id)
            .ok_or_else(|| SilenceError::NotFound(id.to_string()))?;
        match s.state(now_ms) {
            SilenceState::Expired => return Err(SilenceError::AlreadyExpired(id.to_string())),
            SilenceState::Pending => s.starts_at_ms = now_ms,
            SilenceState::Active => {}
        }
        s.ends_at_ms = now_ms;
        s.updated_at_ms = now_ms;
        Ok(())
    }

    pub fn get(&self, id: &str) -> Option<&Silence> {
        self.by_id.get(id)
    }

    /// Every silence, in id order.
    pub fn list(&self) -> impl Iterator<Item = &Silence> {
        self.by_id.values()
    }

    /// The ids of the silences active at `now_ms` that match `labels`.
    pub fn silencing(&self, labels: &Labels, now_ms: i64) -> Vec<String> {
        self.by_id
            .values()
            .filter(|s| s.state(now_ms) == SilenceState::Active && s.matches(labels))
            .map(|s| s.id.clone())
            .collect()
    }

    pub fn is_silenced(&self, labels: &Labels, now_ms: i64) -> bool {
        self.by_id
            .values()
            .any(|s| s.state(now_ms) == SilenceState::Active && s.matches(labels))
    }

    /// Drops silences that expired more than `retention_ms` ago; returns how many.
    pub fn gc(&mut self, now_ms: i64, retention_ms: i64) -> usize {
        let before = self.by_id.len();
        self.by_id
            .retain(|_, s| now_ms - s.ends_at_ms < retention_ms);
        before - self.by_id.len()
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

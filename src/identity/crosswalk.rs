//! The crosswalk table in the gateway's store: which agency key belongs to which citizen.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::keys::{AgencyKey, AnyKey, CitizenId, KeyError, KeyKind};
use crate::store::{Store, on_pool};

/// Why a crosswalk read or change failed.
#[derive(Debug, thiserror::Error)]
pub enum CrosswalkError {
    /// The store refused or could not be reached.
    #[error("the identity store failed: {0}")]
    Store(#[from] sqlx::Error),
    /// The agency key already belongs to another citizen; links are one-to-one.
    #[error("this {kind} is already linked to another citizen; unlink it there first")]
    Conflict {
        /// Which kind of key collided.
        kind: KeyKind,
    },
    /// A stored row does not hold a valid key (edited by hand, or a newer schema).
    #[error("a stored identity link is malformed: {0}")]
    Corrupt(#[from] KeyError),
}

/// One citizen ↔ agency-key link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// The canonical citizen.
    pub citizen: CitizenId,
    /// The agency's key for them.
    pub key: AnyKey,
    /// When the link was made.
    pub linked_at: DateTime<Utc>,
    /// Who made it (an operator's name, or `demo`).
    pub linked_by: String,
}

/// Every key one citizen has, by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Links(BTreeMap<KeyKind, Link>);

impl Links {
    /// The citizen's key of `kind`, if linked.
    pub fn get(&self, kind: KeyKind) -> Option<&AnyKey> {
        self.0.get(&kind).map(|link| &link.key)
    }

    /// The citizen's key of type `K`, typed.
    pub fn key<K: AgencyKey>(&self) -> Option<K> {
        self.get(K::KIND)
            .and_then(|key| K::parse(key.as_str()).ok())
    }

    /// Every link, in kind order.
    pub fn iter(&self) -> impl Iterator<Item = &Link> {
        self.0.values()
    }
}

/// The crosswalk over the gateway's store. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Crosswalk {
    store: Store,
}

impl Crosswalk {
    /// The crosswalk kept in `store` (whose migrations created its table).
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    /// Every key linked to `citizen`, in one query.
    pub async fn links(&self, citizen: &CitizenId) -> Result<Links, CrosswalkError> {
        const SQL: &str = "SELECT kind, agency_key, linked_at, linked_by FROM identity_links \
                           WHERE citizen_id = $1";
        let rows: Vec<(String, String, DateTime<Utc>, String)> = on_pool!(&self.store, pool => {
            sqlx::query_as(SQL).bind(citizen.as_str()).fetch_all(pool).await?
        });
        let mut links = BTreeMap::new();
        for (kind, key, linked_at, linked_by) in rows {
            let kind = KeyKind::parse(&kind)?;
            links.insert(
                kind,
                Link {
                    citizen: citizen.clone(),
                    key: AnyKey::parse(kind, &key)?,
                    linked_at,
                    linked_by,
                },
            );
        }
        Ok(Links(links))
    }

    /// [`Crosswalk::links`] for many citizens in one query per 500 of them; every citizen
    /// asked for has an entry (empty when they have no links).
    pub async fn links_many(
        &self,
        citizens: &[CitizenId],
    ) -> Result<HashMap<CitizenId, Links>, CrosswalkError> {
        let mut all: HashMap<CitizenId, BTreeMap<KeyKind, Link>> = citizens
            .iter()
            .map(|citizen| (citizen.clone(), BTreeMap::new()))
            .collect();
        let wanted: Vec<&CitizenId> = all.keys().collect();
        let mut found = Vec::new();
        for chunk in wanted.chunks(500) {
            let placeholders: Vec<String> = (1..=chunk.len()).map(|n| format!("${n}")).collect();
            let sql = format!(
                "SELECT citizen_id, kind, agency_key, linked_at, linked_by FROM identity_links \
                 WHERE citizen_id IN ({})",
                placeholders.join(", ")
            );
            let rows: Vec<(String, String, String, DateTime<Utc>, String)> = on_pool!(&self.store, pool => {
                let mut query = sqlx::query_as(&sql);
                for citizen in chunk {
                    query = query.bind(citizen.as_str());
                }
                query.fetch_all(pool).await?
            });
            found.extend(rows);
        }
        for (citizen, kind, key, linked_at, linked_by) in found {
            let citizen = CitizenId::parse(&citizen)?;
            let kind = KeyKind::parse(&kind)?;
            let link = Link {
                citizen: citizen.clone(),
                key: AnyKey::parse(kind, &key)?,
                linked_at,
                linked_by,
            };
            all.entry(citizen).or_default().insert(kind, link);
        }
        Ok(all
            .into_iter()
            .map(|(citizen, links)| (citizen, Links(links)))
            .collect())
    }

    /// The citizen an agency key belongs to, for changes an agency reports by its own key.
    pub async fn citizen_of(&self, key: &AnyKey) -> Result<Option<CitizenId>, CrosswalkError> {
        Ok(self
            .citizens_of(key.kind(), &[key.as_str()])
            .await?
            .remove(key.as_str()))
    }

    /// [`Crosswalk::citizen_of`] for many keys of one kind, one query per 500 of them: a polled
    /// change feed reports hundreds of changes by agency key at once. Keys with no link are
    /// absent from the answer.
    pub async fn citizens_of(
        &self,
        kind: KeyKind,
        keys: &[&str],
    ) -> Result<HashMap<String, CitizenId>, CrosswalkError> {
        let wanted: BTreeSet<&str> = keys.iter().copied().collect();
        let wanted: Vec<&str> = wanted.into_iter().collect();
        let mut found = HashMap::new();
        for chunk in wanted.chunks(500) {
            let placeholders: Vec<String> = (2..chunk.len() + 2).map(|n| format!("${n}")).collect();
            let sql = format!(
                "SELECT agency_key, citizen_id FROM identity_links \
                 WHERE kind = $1 AND agency_key IN ({})",
                placeholders.join(", ")
            );
            let rows: Vec<(String, String)> = on_pool!(&self.store, pool => {
                let mut query = sqlx::query_as(&sql).bind(kind.as_str());
                for key in chunk {
                    query = query.bind(*key);
                }
                query.fetch_all(pool).await?
            });
            for (key, citizen) in rows {
                found.insert(key, CitizenId::parse(&citizen)?);
            }
        }
        Ok(found)
    }

    /// Links `key` to `citizen`, replacing the citizen's previous key of that kind. A key that
    /// belongs to another citizen is a [`CrosswalkError::Conflict`] and changes nothing.
    pub async fn link(
        &self,
        citizen: &CitizenId,
        key: &AnyKey,
        by: &str,
    ) -> Result<Link, CrosswalkError> {
        const OWNER: &str =
            "SELECT citizen_id FROM identity_links WHERE kind = $1 AND agency_key = $2";
        const UPSERT: &str = "INSERT INTO identity_links (citizen_id, kind, agency_key, linked_at, linked_by) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (citizen_id, kind) DO UPDATE SET agency_key = excluded.agency_key, \
             linked_at = excluded.linked_at, linked_by = excluded.linked_by";
        let linked_at = now();
        let kind = key.kind().as_str();
        let outcome: Result<(), CrosswalkError> = on_pool!(&self.store, pool => {
            let mut tx = crate::store::BeginWrite::begin_write(pool).await?;
            let owner: Option<(String,)> = sqlx::query_as(OWNER)
                .bind(kind)
                .bind(key.as_str())
                .fetch_optional(&mut *tx)
                .await?;
            match owner {
                Some((owner,)) if owner != citizen.as_str() => {
                    Err(CrosswalkError::Conflict { kind: key.kind() })
                }
                _ => {
                    let written = sqlx::query(UPSERT)
                        .bind(citizen.as_str())
                        .bind(kind)
                        .bind(key.as_str())
                        .bind(linked_at)
                        .bind(by)
                        .execute(&mut *tx)
                        .await;
                    match written {
                        Ok(_) => tx.commit().await.map_err(CrosswalkError::from),
                        // A concurrent link of the same key won the race.
                        Err(error) if is_unique_violation(&error) => {
                            Err(CrosswalkError::Conflict { kind: key.kind() })
                        }
                        Err(error) => Err(error.into()),
                    }
                }
            }
        });
        outcome?;
        Ok(Link {
            citizen: citizen.clone(),
            key: key.clone(),
            linked_at,
            linked_by: by.to_string(),
        })
    }

    /// Removes the citizen's key of `kind`; the removed link, or `None` when there was none.
    pub async fn unlink(
        &self,
        citizen: &CitizenId,
        kind: KeyKind,
    ) -> Result<Option<Link>, CrosswalkError> {
        const SQL: &str = "DELETE FROM identity_links WHERE citizen_id = $1 AND kind = $2 \
                           RETURNING agency_key, linked_at, linked_by";
        let row = on_pool!(&self.store, pool => {
            sqlx::query(SQL)
                .bind(citizen.as_str())
                .bind(kind.as_str())
                .fetch_optional(pool)
                .await?
                .map(|row| -> Result<(String, DateTime<Utc>, String), sqlx::Error> {
                    Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?))
                })
                .transpose()?
        });
        row.map(|(key, linked_at, linked_by)| {
            Ok(Link {
                citizen: citizen.clone(),
                key: AnyKey::parse(kind, &key)?,
                linked_at,
                linked_by,
            })
        })
        .transpose()
    }

    /// Writes many links in one transaction, replacing existing ones; for loading a roster
    /// (the demo, a migration from an agency's master index). All or nothing.
    pub async fn link_many(
        &self,
        links: impl IntoIterator<Item = (CitizenId, AnyKey)>,
        by: &str,
    ) -> Result<usize, CrosswalkError> {
        const ROWS_PER_INSERT: usize = 150; // 5 binds each, under SQLite's 999-parameter floor
        let links: Vec<(CitizenId, AnyKey)> = links.into_iter().collect();
        let linked_at = now();
        on_pool!(&self.store, pool => {
            let mut tx = crate::store::BeginWrite::begin_write(pool).await?;
            for chunk in links.chunks(ROWS_PER_INSERT) {
                let mut sql = String::from(
                    "INSERT INTO identity_links (citizen_id, kind, agency_key, linked_at, linked_by) VALUES ",
                );
                for i in 0..chunk.len() {
                    let n = i * 5;
                    if i > 0 {
                        sql.push_str(", ");
                    }
                    sql.push_str(&format!("(${}, ${}, ${}, ${}, ${})", n + 1, n + 2, n + 3, n + 4, n + 5));
                }
                sql.push_str(
                    " ON CONFLICT (citizen_id, kind) DO UPDATE SET agency_key = excluded.agency_key, \
                     linked_at = excluded.linked_at, linked_by = excluded.linked_by",
                );
                let mut query = sqlx::query(&sql);
                for (citizen, key) in chunk {
                    query = query
                        .bind(citizen.as_str())
                        .bind(key.kind().as_str())
                        .bind(key.as_str())
                        .bind(linked_at)
                        .bind(by);
                }
                match query.execute(&mut *tx).await {
                    Ok(_) => {}
                    Err(error) if is_unique_violation(&error) => {
                        let kind = chunk.first().map_or(KeyKind::Tin, |(_, k)| k.kind());
                        return Err(CrosswalkError::Conflict { kind });
                    }
                    Err(error) => return Err(error.into()),
                }
            }
            tx.commit().await?;
        });
        Ok(links.len())
    }
}

/// Now, to the microsecond: PostgreSQL keeps no finer, so a link reads back as written.
fn now() -> DateTime<Utc> {
    let now = Utc::now();
    now - chrono::Duration::nanoseconds(i64::from(now.timestamp_subsec_nanos() % 1_000))
}

fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.is_unique_violation())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StorageConfig;
    use crate::identity::{ClaimantId, LicenseNumber, Tin};
    use crate::store::testing::TestStore;

    async fn sqlite() -> Crosswalk {
        let store = Store::connect(&StorageConfig {
            url: "sqlite::memory:".into(),
            max_connections: 4,
        })
        .await
        .expect("in-memory store");
        Crosswalk::new(store)
    }

    fn citizen(id: &str) -> CitizenId {
        CitizenId::parse(id).unwrap()
    }

    async fn links_round_trip(crosswalk: Crosswalk) {
        let alice = citizen("C0000001");
        let tin = AnyKey::from(Tin::parse("900-00-0001").unwrap());
        let licence = AnyKey::from(LicenseNumber::parse("D1000001").unwrap());
        assert_eq!(crosswalk.links(&alice).await.unwrap(), Links::default());
        let link = crosswalk.link(&alice, &tin, "op").await.unwrap();
        crosswalk.link(&alice, &licence, "op").await.unwrap();
        let links = crosswalk.links(&alice).await.unwrap();
        assert_eq!(links.get(KeyKind::Tin), Some(&tin));
        assert_eq!(links.key::<LicenseNumber>().unwrap().as_str(), "D1000001");
        assert_eq!(links.key::<ClaimantId>(), None);
        assert_eq!(
            links.iter().next(),
            Some(&link),
            "linked_at reads back exactly"
        );
        assert_eq!(
            crosswalk.citizen_of(&tin).await.unwrap(),
            Some(alice.clone())
        );

        // Another citizen cannot take Alice's TIN, and the failed attempt changes nothing.
        let bob = citizen("C0000002");
        let error = crosswalk.link(&bob, &tin, "op").await.unwrap_err();
        assert!(matches!(
            error,
            CrosswalkError::Conflict { kind: KeyKind::Tin }
        ));
        assert_eq!(crosswalk.links(&bob).await.unwrap(), Links::default());

        // Relinking replaces the citizen's key of that kind.
        let new_tin = AnyKey::from(Tin::parse("900-00-0009").unwrap());
        crosswalk.link(&alice, &new_tin, "op").await.unwrap();
        assert_eq!(
            crosswalk.links(&alice).await.unwrap().get(KeyKind::Tin),
            Some(&new_tin)
        );
        assert_eq!(crosswalk.citizen_of(&tin).await.unwrap(), None);

        let removed = crosswalk.unlink(&alice, KeyKind::Tin).await.unwrap();
        assert_eq!(removed.map(|l| l.key), Some(new_tin));
        assert_eq!(crosswalk.unlink(&alice, KeyKind::Tin).await.unwrap(), None);
        assert_eq!(
            crosswalk.links(&alice).await.unwrap().get(KeyKind::Tin),
            None
        );

        // A roster load is all or nothing.
        let roster = (0..400).map(|i| {
            (
                citizen(&format!("C1{i:06}")),
                AnyKey::from(ClaimantId::parse(&format!("UI-{i:07}")).unwrap()),
            )
        });
        assert_eq!(crosswalk.link_many(roster, "demo").await.unwrap(), 400);
        let clash = vec![
            (
                citizen("C2000000"),
                AnyKey::from(Tin::parse("T-1").unwrap()),
            ),
            (
                citizen("C2000001"),
                AnyKey::from(ClaimantId::parse("UI-0000007").unwrap()),
            ),
        ];
        assert!(crosswalk.link_many(clash, "demo").await.is_err());
        assert_eq!(
            crosswalk.links(&citizen("C2000000")).await.unwrap(),
            Links::default()
        );
        assert_eq!(
            crosswalk
                .links(&citizen("C1000007"))
                .await
                .unwrap()
                .key::<ClaimantId>()
                .unwrap()
                .as_str(),
            "UI-0000007"
        );
    }

    #[tokio::test]
    async fn sqlite_links_round_trip() {
        links_round_trip(sqlite().await).await;
    }

    /// Regression: a link that read before it wrote failed at once with "database is locked"
    /// when another connection held SQLite's write lock (an upgrade from a read lock never
    /// waits). The link now waits its turn and lands.
    #[tokio::test]
    async fn a_link_waits_for_another_sqlite_writer_instead_of_failing() {
        let db = TestStore::sqlite("crosswalk.db").await;
        let crosswalk = Crosswalk::new(db.store.clone());
        let other = sqlx::SqlitePool::connect(&db.url).await.unwrap();
        let mut writing = other.begin_with("BEGIN IMMEDIATE").await.unwrap();
        sqlx::query(
            "INSERT INTO identity_links (citizen_id, kind, agency_key, linked_at, linked_by) \
             VALUES ('C0000009', 'tin', 'T-9', '2026-01-01T00:00:00Z', 'other')",
        )
        .execute(&mut *writing)
        .await
        .unwrap();
        let release = tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            writing.commit().await.unwrap();
        });
        let tin = AnyKey::from(Tin::parse("900-00-0001").unwrap());
        let linked = crosswalk.link(&citizen("C0000001"), &tin, "op").await;
        release.await.unwrap();
        assert!(linked.is_ok(), "the link waited for the writer: {linked:?}");
        assert_eq!(
            crosswalk.citizen_of(&tin).await.unwrap(),
            Some(citizen("C0000001"))
        );
    }

    #[tokio::test]
    async fn postgres_links_round_trip() {
        if let Some(db) = TestStore::postgres(&["identity_links"]).await {
            links_round_trip(Crosswalk::new(db.store.clone())).await;
            db.close().await;
        }
    }
}

//! Webhooks and their delivery logs. The queue of a webhook is its owner's
//! change stream: `delivered_through` says how far it got. A lease
//! (`leased_until`) gives a webhook to one instance at a time: taken by one
//! conditional `UPDATE … RETURNING` (on PostgreSQL a second instance's
//! update waits for the first's row lock and then finds the lease taken),
//! and honoured by the settlement, which writes only under the same lease.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use todo_core::{
    ChangeKind, DeliveryAttempt, EventFilter, StoreError, Timestamp, UserId, Webhook, WebhookId,
    WebhookSecret, WebhookSettlement, WebhookStore, WebhookUrl,
};

use crate::SqlStore;
use crate::changes;
use crate::db::AnyConnection;
use crate::error::corrupt;
use crate::schema::{change_streams, webhook_deliveries, webhooks};
use crate::tasks::native;

/// A webhook's row.
#[derive(Queryable, QueryableByName, Selectable, Insertable)]
#[diesel(table_name = webhooks)]
struct WebhookRow {
    id: String,
    owner_id: String,
    url: String,
    events: String,
    secret: String,
    created_at: i64,
    delivered_through: i64,
    attempts: i64,
    next_attempt_at: i64,
    failing_since: Option<i64>,
    disabled_at: Option<i64>,
    leased_until: Option<i64>,
}

impl WebhookRow {
    fn of(webhook: &Webhook) -> Self {
        Self {
            id: webhook.id.to_string(),
            owner_id: webhook.owner.to_string(),
            url: webhook.url.as_str().to_owned(),
            events: webhook
                .events
                .kinds()
                .iter()
                .map(|kind| kind.as_str())
                .collect::<Vec<_>>()
                .join(","),
            secret: webhook.secret.expose().to_owned(),
            created_at: webhook.created_at.unix_micros(),
            delivered_through: changes::stored(webhook.delivered_through),
            attempts: i64::from(webhook.attempts),
            next_attempt_at: webhook.next_attempt_at.unix_micros(),
            failing_since: webhook.failing_since.map(Timestamp::unix_micros),
            disabled_at: webhook.disabled_at.map(Timestamp::unix_micros),
            leased_until: None,
        }
    }

    fn into_webhook(self) -> Result<Webhook, StoreError> {
        let bad = |_| corrupt("webhook");
        let time = |micros| Timestamp::from_unix_micros(micros).map_err(bad);
        Ok(Webhook {
            id: WebhookId::parse(&self.id).map_err(bad)?,
            owner: UserId::parse(&self.owner_id).map_err(bad)?,
            // Stored after parsing under the policy of its day: read back
            // as it is (a later policy's refusal is the deliverer's).
            url: WebhookUrl::parse(&self.url, true).map_err(bad)?,
            events: EventFilter::parse(self.events.split(',')).map_err(bad)?,
            secret: WebhookSecret::parse_stored(self.secret).map_err(bad)?,
            created_at: time(self.created_at)?,
            delivered_through: changes::position(self.delivered_through)?,
            attempts: u32::try_from(self.attempts).unwrap_or(u32::MAX),
            next_attempt_at: time(self.next_attempt_at)?,
            failing_since: self.failing_since.map(time).transpose()?,
            disabled_at: self.disabled_at.map(time).transpose()?,
        })
    }
}

/// An attempt's row.
#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = webhook_deliveries)]
struct AttemptRow {
    webhook_id: String,
    at: i64,
    seq: i64,
    kind: String,
    status: Option<i64>,
    latency_ms: i64,
    error: Option<String>,
}

impl AttemptRow {
    fn of(attempt: &DeliveryAttempt) -> Self {
        Self {
            webhook_id: attempt.webhook_id.to_string(),
            at: attempt.at.unix_micros(),
            seq: changes::stored(attempt.position),
            kind: attempt.kind.as_str().to_owned(),
            status: attempt.status.map(i64::from),
            latency_ms: i64::from(attempt.latency_ms),
            error: attempt.error.clone(),
        }
    }

    fn into_attempt(self) -> Result<DeliveryAttempt, StoreError> {
        let bad = || corrupt("webhook delivery");
        Ok(DeliveryAttempt {
            webhook_id: WebhookId::parse(&self.webhook_id).map_err(|_| bad())?,
            position: changes::position(self.seq).map_err(|_| bad())?,
            kind: ChangeKind::parse(&self.kind).ok_or_else(bad)?,
            at: Timestamp::from_unix_micros(self.at).map_err(|_| bad())?,
            status: self.status.and_then(|s| u16::try_from(s).ok()),
            latency_ms: u32::try_from(self.latency_ms).unwrap_or(u32::MAX),
            error: self.error,
        })
    }
}

impl WebhookStore for SqlStore {
    fn insert_webhook_within(
        &self,
        webhook: &Webhook,
        max: Option<u64>,
    ) -> Result<bool, StoreError> {
        let row = WebhookRow::of(webhook);
        let max = max.map(|max| i64::try_from(max).unwrap_or(i64::MAX));
        self.with_write_conn(|conn| {
            conn.transaction(|conn| {
                // Racing creations of one owner take turns (PostgreSQL;
                // SQLite has one writer): the count below stays true until
                // the insert. (Not `FOR UPDATE`: task writes' key-share
                // locks on the row go on.)
                crate::users::lock_user_for_count(conn, &row.owner_id)?;
                if let Some(max) = max {
                    let owned: i64 = webhooks::table
                        .filter(webhooks::owner_id.eq(&row.owner_id))
                        .count()
                        .get_result(conn)?;
                    if owned >= max {
                        return Ok(false);
                    }
                }
                diesel::insert_into(webhooks::table)
                    .values(&row)
                    .execute(conn)?;
                Ok(true)
            })
        })
    }

    fn webhooks_of(&self, owner: UserId) -> Result<Vec<Webhook>, StoreError> {
        let owner = owner.to_string();
        let rows: Vec<WebhookRow> = self.with_conn(|conn| {
            webhooks::table
                .filter(webhooks::owner_id.eq(&owner))
                .order((webhooks::created_at.asc(), webhooks::id.asc()))
                .select(WebhookRow::as_select())
                .load(conn)
        })?;
        rows.into_iter().map(WebhookRow::into_webhook).collect()
    }

    fn delete_webhook(&self, owner: UserId, id: WebhookId) -> Result<bool, StoreError> {
        let (owner, id) = (owner.to_string(), id.to_string());
        let deleted = self.with_write_conn(|conn| {
            diesel::delete(
                webhooks::table
                    .filter(webhooks::id.eq(&id))
                    .filter(webhooks::owner_id.eq(&owner)),
            )
            .execute(conn)
        })?;
        Ok(deleted == 1)
    }

    fn delivery_log(
        &self,
        owner: UserId,
        id: WebhookId,
        limit: usize,
    ) -> Result<Option<Vec<DeliveryAttempt>>, StoreError> {
        let (owner, id) = (owner.to_string(), id.to_string());
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self.with_conn(|conn| {
            let owned: i64 = webhooks::table
                .filter(webhooks::id.eq(&id))
                .filter(webhooks::owner_id.eq(&owner))
                .count()
                .get_result(conn)?;
            if owned == 0 {
                return Ok(None);
            }
            webhook_deliveries::table
                .filter(webhook_deliveries::webhook_id.eq(&id))
                .order((
                    webhook_deliveries::at.desc(),
                    webhook_deliveries::seq.desc(),
                ))
                .limit(limit)
                .select(AttemptRow::as_select())
                .load::<AttemptRow>(conn)
                .map(Some)
        })?;
        rows.map(|rows| rows.into_iter().map(AttemptRow::into_attempt).collect())
            .transpose()
    }

    fn lease_due_webhooks(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: usize,
        per_owner: usize,
    ) -> Result<Vec<Webhook>, StoreError> {
        // The same statement on both databases: UPDATE … RETURNING, the
        // lease's condition repeated outside the subquery, so that an
        // update that waited for another's row lock re-checks it (not
        // whether anything is due: a webhook delivered meanwhile is leased
        // with nothing to send). An
        // owner's due webhooks are numbered in the order they fell due
        // (`nth`), and taken while that number and the owner's webhooks
        // leased now (`busy`) stay within `per_owner`; owners whose last
        // lease was done longest ago (`served`, on their stream's row: set
        // when a lease begins and when it is done; never, first) are taken
        // first. (SQLite numbers
        // `$n` parameters in the order they first appear: they appear
        // here in the order they are bound.)
        let served = now.unix_micros();
        let rows: Vec<WebhookRow> = self.with_write_conn(|conn| {
            // (PostgreSQL: what committed numbered first, to be seen)
            changes::number_committed(conn)?;
            let lease = diesel::sql_query(lease_sql(conn))
                .bind::<BigInt, _>(lease_until.unix_micros())
                .bind::<BigInt, _>(now.unix_micros())
                .bind::<BigInt, _>(i64::try_from(per_owner).unwrap_or(i64::MAX))
                .bind::<BigInt, _>(i64::try_from(limit).unwrap_or(i64::MAX));
            conn.transaction(|conn| {
                let rows: Vec<WebhookRow> = native!(&mut *conn, |c| lease.load(c))?;
                // Their owners' turns begin now.
                let owners: Vec<&str> = rows.iter().map(|r| r.owner_id.as_str()).collect();
                if !owners.is_empty() {
                    diesel::update(
                        change_streams::table.filter(change_streams::owner_id.eq_any(&owners)),
                    )
                    .set(change_streams::webhooks_served_at.eq(Some(served)))
                    .execute(conn)?;
                }
                Ok(rows)
            })
        })?;
        // A row that does not parse (written by a later version, or
        // damaged) is its own webhook's problem, not the batch's: it stays
        // leased until its lease ends, and the others are delivered.
        Ok(rows
            .into_iter()
            .filter_map(|row| {
                let id = row.id.clone();
                row.into_webhook()
                    .map_err(|error| {
                        tracing::warn!(target: "todo::store", webhook = %id, %error, "a leased webhook's row does not parse; passed over");
                    })
                    .ok()
            })
            .collect())
    }

    fn settle_webhook(&self, settled: &WebhookSettlement) -> Result<bool, StoreError> {
        let id = settled.id.to_string();
        let lease = settled.lease_until.unix_micros();
        let attempts: Vec<AttemptRow> = settled.log.iter().map(AttemptRow::of).collect();
        let kept = i64::try_from(settled.log_kept).unwrap_or(i64::MAX);
        self.with_write_conn(|conn| {
            conn.transaction(|conn| {
                let updated = diesel::update(
                    webhooks::table
                        .filter(webhooks::id.eq(&id))
                        .filter(webhooks::leased_until.eq(lease)),
                )
                .set((
                    webhooks::delivered_through.eq(changes::stored(settled.delivered_through)),
                    webhooks::attempts.eq(i64::from(settled.attempts)),
                    webhooks::next_attempt_at.eq(settled.next_attempt_at.unix_micros()),
                    webhooks::failing_since.eq(settled.failing_since.map(Timestamp::unix_micros)),
                    webhooks::disabled_at.eq(settled.disabled_at.map(Timestamp::unix_micros)),
                    webhooks::leased_until.eq(None::<i64>),
                ))
                .execute(conn)?;
                if updated == 0 {
                    return Ok(false);
                }
                // The owner's turn ends now.
                let owner = webhooks::table
                    .filter(webhooks::id.eq(&id))
                    .select(webhooks::owner_id);
                diesel::update(
                    change_streams::table.filter(change_streams::owner_id.eq_any(owner)),
                )
                .set(change_streams::webhooks_served_at.eq(Some(settled.settled_at.unix_micros())))
                .execute(conn)?;
                if !attempts.is_empty() {
                    // (One by one: a batch insert has no form common to
                    // both databases; a lease makes a few attempts.)
                    for attempt in &attempts {
                        diesel::insert_into(webhook_deliveries::table)
                            .values(attempt)
                            .execute(conn)?;
                    }
                    const TRIM: &str = "DELETE FROM webhook_deliveries WHERE webhook_id = $1 \
                        AND (at, seq) NOT IN (SELECT at, seq FROM webhook_deliveries \
                        WHERE webhook_id = $1 ORDER BY at DESC, seq DESC LIMIT $2)";
                    let trim = diesel::sql_query(TRIM)
                        .bind::<Text, _>(&id)
                        .bind::<BigInt, _>(kept);
                    native!(conn, |c| trim.execute(c))?;
                }
                Ok(true)
            })
        })
    }
}

/// The webhooks' lease (`lease_due_webhooks`: see there).
pub(crate) fn lease_sql(conn: &AnyConnection) -> String {
    format!(
        "UPDATE webhooks SET leased_until = $1 \
    WHERE id IN (SELECT due.id FROM (SELECT w.id, w.next_attempt_at, \
            s.webhooks_served_at AS served, \
            (SELECT COUNT(*) FROM webhooks b \
                WHERE b.owner_id = w.owner_id AND b.leased_until >= $2) AS busy, \
            ROW_NUMBER() OVER ( \
                PARTITION BY w.owner_id ORDER BY w.next_attempt_at, w.id) AS nth \
        FROM webhooks w \
        JOIN change_streams s ON s.owner_id = w.owner_id \
        WHERE w.disabled_at IS NULL AND w.next_attempt_at <= $2 \
        AND (w.leased_until IS NULL OR w.leased_until < $2) \
        AND {behind}) due \
        WHERE due.busy + due.nth <= $3 \
        ORDER BY due.served IS NOT NULL, due.served, due.next_attempt_at, due.id \
        LIMIT $4) \
    AND disabled_at IS NULL AND (leased_until IS NULL OR leased_until < $2) \
    RETURNING id, owner_id, url, events, secret, created_at, delivered_through, \
        attempts, next_attempt_at, failing_since, disabled_at, leased_until",
        behind = changes::stream_past(conn, "w.owner_id", "w.delivered_through")
    )
}

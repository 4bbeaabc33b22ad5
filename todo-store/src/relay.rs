//! The relay's progress through each user's stream: two columns of
//! `change_streams` (`relayed_through`, `relay_leased_until`) that only a
//! running relay writes. A lease gives a stream to one relay at a time, as
//! a webhook's does (`webhooks.rs`): taken by one conditional
//! `UPDATE … RETURNING`, honoured by a settlement that writes only under the
//! same lease.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use todo_core::{LogPosition, RelayStore, RelayedStream, StoreError, Timestamp, UserId};

use crate::SqlStore;
use crate::changes;
use crate::db::AnyConnection;
use crate::error::corrupt;
use crate::tasks::native;

#[derive(QueryableByName)]
struct LeasedRow {
    #[diesel(sql_type = Text)]
    owner_id: String,
    #[diesel(sql_type = BigInt)]
    relayed_through: i64,
}

impl RelayStore for SqlStore {
    fn lease_unrelayed_streams(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: usize,
    ) -> Result<Vec<RelayedStream>, StoreError> {
        let rows: Vec<LeasedRow> = self.with_write_conn(|conn| {
            // (PostgreSQL: what committed numbered first, to be seen)
            changes::number_committed(conn)?;
            let lease = diesel::sql_query(lease_sql(conn))
                .bind::<BigInt, _>(lease_until.unix_micros())
                .bind::<BigInt, _>(now.unix_micros())
                .bind::<BigInt, _>(i64::try_from(limit).unwrap_or(i64::MAX));
            native!(conn, |c| lease.load(c))
        })?;
        rows.into_iter()
            .map(|row| {
                Ok(RelayedStream {
                    owner: UserId::parse(&row.owner_id)
                        .map_err(|_| corrupt("change_streams.owner_id"))?,
                    relayed_through: changes::position(row.relayed_through)?,
                })
            })
            .collect()
    }

    fn any_unrelayed_stream(&self, now: Timestamp) -> Result<bool, StoreError> {
        #[derive(QueryableByName)]
        struct Found {
            #[diesel(sql_type = Text)]
            #[allow(dead_code)] // (read only to be there)
            owner_id: String,
        }
        // (a read where nothing waits to be numbered: an idle relay takes
        // no write lock)
        let found: Option<Found> = self.with_conn(|conn| {
            if changes::any_unnumbered(conn)? {
                return Ok(Some(Found {
                    owner_id: String::new(),
                }));
            }
            let due = diesel::sql_query(due_sql(conn)).bind::<BigInt, _>(now.unix_micros());
            native!(conn, |c| due.get_result(c).optional())
        })?;
        Ok(found.is_some())
    }

    fn settle_relayed_stream(
        &self,
        owner: UserId,
        lease_until: Timestamp,
        relayed_through: LogPosition,
    ) -> Result<bool, StoreError> {
        // Never back: a settlement of fewer changes than one before it
        // (under an older lease) keeps the further point.
        const SETTLE: &str = "UPDATE change_streams SET relayed_through = \
            CASE WHEN relayed_through > $1 THEN relayed_through ELSE $1 END, \
            relay_leased_until = NULL \
            WHERE owner_id = $2 AND relay_leased_until = $3";
        let settle = diesel::sql_query(SETTLE)
            .bind::<BigInt, _>(changes::stored(relayed_through))
            .bind::<Text, _>(owner.to_string())
            .bind::<BigInt, _>(lease_until.unix_micros());
        let updated = self.with_write_conn(|conn| native!(conn, |c| settle.execute(c)))?;
        Ok(updated > 0)
    }
}

/// The relay's lease (`lease_unrelayed_streams`). As webhooks' lease:
/// the lease's condition repeated outside the subquery, so that an update
/// that waited for another's row lock re-checks it (not whether the
/// stream is still behind: one settled meanwhile is leased with nothing
/// to send, and settled again); parameters in the order
/// they are bound (SQLite numbers them as they first appear). With no
/// index on the lag, this reads every user's stream row (each looked up
/// by index in the log: `plans::postgres_the_lags_are_looked_up_by_index`):
/// once a round, and only where a relay runs. The least recently served
/// first: a busy stream, behind again at every round, cannot keep the
/// others waiting.
pub(crate) fn lease_sql(conn: &AnyConnection) -> String {
    format!(
        "UPDATE change_streams SET relay_leased_until = $1, relay_served_at = $2 \
        WHERE owner_id IN (SELECT s.owner_id FROM change_streams s \
            WHERE {behind} \
            AND (s.relay_leased_until IS NULL OR s.relay_leased_until < $2) \
            ORDER BY s.relay_served_at LIMIT $3) \
        AND (relay_leased_until IS NULL OR relay_leased_until < $2) \
        RETURNING owner_id, relayed_through",
        behind = changes::stream_past(conn, "s.owner_id", "s.relayed_through")
    )
}

/// Whether a stream waits for the relay (`any_unrelayed_stream`).
pub(crate) fn due_sql(conn: &AnyConnection) -> String {
    format!(
        "SELECT s.owner_id FROM change_streams s WHERE {behind} \
         AND (s.relay_leased_until IS NULL OR s.relay_leased_until < $1) LIMIT 1",
        behind = changes::stream_past(conn, "s.owner_id", "s.relayed_through")
    )
}

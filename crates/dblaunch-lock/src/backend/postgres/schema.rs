//! The tables dblaunch keeps in the server (`dblaunch_holders`,
//! `dblaunch_fencing`, `dblaunch_journal`), made on first use.

use postgres::Client;

/// The advisory lock space dblaunch uses: `pg_advisory_lock(CLASS,
/// hashtext(key))`, apart from an application's own one-number locks.
pub(super) const CLASS: i32 = 0x6462_6c61; // "dbla"

/// Creates the tables on first use. Two hosts may race to do it, so the
/// creation is serialised by a transaction-scoped advisory lock.
pub(super) fn ensure_schema(client: &mut Client) -> Result<(), postgres::Error> {
    let present: bool = client
        .query_one(
            "SELECT to_regclass('dblaunch_holders') IS NOT NULL AND to_regclass('dblaunch_fencing') IS NOT NULL \
             AND to_regclass('dblaunch_journal') IS NOT NULL",
            &[],
        )?
        .get(0);
    if present {
        return Ok(());
    }
    client.batch_execute(&format!(
        "BEGIN; SELECT pg_advisory_xact_lock({CLASS}, 0); \
         CREATE TABLE IF NOT EXISTS dblaunch_holders ( \
             key text NOT NULL, holder_id text NOT NULL, mode text NOT NULL, \
             granted boolean NOT NULL DEFAULT false, token bigint, \
             host text NOT NULL, pid integer NOT NULL, program text NOT NULL, \
             since timestamptz NOT NULL DEFAULT clock_timestamp(), \
             last_beat timestamptz NOT NULL DEFAULT clock_timestamp(), \
             backend_pid integer NOT NULL, backend_start timestamptz NOT NULL, \
             PRIMARY KEY (key, holder_id)); \
         CREATE SEQUENCE IF NOT EXISTS dblaunch_fencing; \
         CREATE TABLE IF NOT EXISTS dblaunch_journal ( \
             id bigserial PRIMARY KEY, key text NOT NULL, \
             at timestamptz NOT NULL DEFAULT clock_timestamp(), line text NOT NULL); \
         CREATE INDEX IF NOT EXISTS dblaunch_journal_key ON dblaunch_journal (key, id); \
         COMMIT;"
    ))
}

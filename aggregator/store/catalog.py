"""The catalog rows of one contribution replaced (a publish) or removed (a trim), with the lists they feed.

catalog_dates and catalog_filters hold one set of rows per contribution (kind, submission date). catalog_lists
holds, per channel, version and filter, the sorted distinct values of catalog_filters: what /filters/ answers, in
one row however many values there are (walking catalog_filters' distinct values took 9 s for a million metric
names). A change of a contribution's rows updates the lists it touches, in its transaction, so the lists always
equal catalog_filters' values. Values only in the old rows stay listed while another contribution holds them.
"""

from collections import defaultdict
from datetime import date

import asyncpg

from aggregator.store.locks import CATALOG_LOCK
from aggregator.store.schema import rows_of

Entry = tuple[str, int, str, str]  # channel, version, filter, value
Key = tuple[str, int, str]  # channel, version, filter

# Of the entries given, those some contribution holds (an index probe each, through catalog_filters_listing).
HELD = """
SELECT g.channel, g.version, g.filter, g.value
FROM unnest($1::text[], $2::integer[], $3::text[], $4::text[]) AS g(channel, version, filter, value)
WHERE EXISTS (SELECT 1 FROM catalog_filters c WHERE c.channel = g.channel AND c.version = g.version
              AND c.filter = g.filter AND c.value = g.value)"""
LISTS = """
SELECT l.channel, l.version, l.filter, l."values" FROM catalog_lists l
JOIN unnest($1::text[], $2::integer[], $3::text[]) AS k(channel, version, filter)
  ON (l.channel, l.version, l.filter) = (k.channel, k.version, k.filter)"""
UPSERT = (
    'INSERT INTO catalog_lists (channel, version, filter, "values") VALUES ($1, $2, $3, $4) '
    'ON CONFLICT (channel, version, filter) DO UPDATE SET "values" = EXCLUDED."values"'
)
DROP = "DELETE FROM catalog_lists WHERE channel = $1 AND version = $2 AND filter = $3"


def updated_lists(current: dict[Key, list[str]], added: set[Entry], removed: set[Entry]) -> dict[Key, list[str]]:
    """The lists of every key `added` or `removed` touch, sorted (Python's order: code points, as the C collation);
    an empty list is a row to drop. `removed` holds only values no contribution holds any more."""
    changes: dict[Key, tuple[set[str], set[str]]] = defaultdict(lambda: (set(), set()))
    for channel, version, name, value in added:
        changes[(channel, version, name)][0].add(value)
    for channel, version, name, value in removed:
        changes[(channel, version, name)][1].add(value)
    return {key: sorted((set(current.get(key, ())) | plus) - minus) for key, (plus, minus) in sorted(changes.items())}


def _columns(rows: set[tuple]) -> list[list]:
    """Rows (at least one) as one list per column, for unnest."""
    return [list(column) for column in zip(*rows, strict=True)]


async def replace_day(
    conn: asyncpg.Connection, kind: str, day: date, dates: list[tuple], filters: list[tuple]
) -> dict[str, int]:
    """Replace the catalog rows of (kind, day) with `dates` and `filters` (none: a trim) and update the lists;
    the rows changed per table (what ANALYZE looks at). Call inside the contribution's transaction."""
    await conn.execute("SELECT pg_advisory_xact_lock($1, $2)", *CATALOG_LOCK)
    dropped = rows_of(
        await conn.execute("DELETE FROM catalog_dates WHERE kind = $1 AND submission_date = $2", kind, day)
    )
    old = await conn.fetch(
        """DELETE FROM catalog_filters WHERE kind = $1 AND submission_date = $2
           RETURNING channel, version, filter, value""",
        kind,
        day,
    )
    for table, rows in (("catalog_dates", dates), ("catalog_filters", filters)):
        if rows:
            await conn.copy_records_to_table(table, records=rows)
    before = {tuple(r) for r in old}
    after = {tuple(row[2:]) for row in filters}
    await _update_lists(conn, added=after - before, gone=before - after)
    return {"catalog_dates": dropped + len(dates), "catalog_filters": len(old) + len(filters)}


async def _update_lists(conn: asyncpg.Connection, added: set[Entry], gone: set[Entry]) -> None:
    """The lists after `added` entries came and `gone` ones left this contribution (catalog_filters already
    changed); a list left empty is dropped."""
    if gone:
        gone -= {tuple(r) for r in await conn.fetch(HELD, *_columns(gone))}
    keys = {entry[:3] for entry in added | gone}
    if not keys:
        return
    current = {tuple(r[:3]): r["values"] for r in await conn.fetch(LISTS, *_columns(keys))}
    lists = updated_lists(current, added, gone)
    kept = [(*key, values) for key, values in lists.items() if values]
    if kept:
        await conn.executemany(UPSERT, kept)
    emptied = [key for key, values in lists.items() if not values]
    if emptied:
        await conn.executemany(DROP, emptied)

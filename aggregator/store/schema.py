"""The only DDL of the project: versioned migrations, and the statements that stage, swap and drop leaves.

Design and reasons: docs/store.md. Leaf and staging names are built here, only from a validated kind and a
`datetime.date`, so no identifier ever comes from user input.
"""

from datetime import date, timedelta

import asyncpg

KINDS = ("build_id", "submission_date")
TABLES = ("aggregates",)  # the leaf-partitioned tables
ROLLUP = "aggregates_all"  # one plain table: the aggregates with the filter dimensions summed away
MIGRATION_LOCK = (0x7A67, 0)  # the advisory lock key space of aggregator/store/locks.py
# The leaves' index. Without deduplication, chosen when it was maintained during the COPY (rows arriving in
# index order, a deduplicating index merged every page it filled: the COPY was about 25% slower). Now built after
# the COPY, deduplicated it would build as fast and be 4x smaller: a migration for space only (docs/store.md).
LEAF_INDEX = "(channel, version, metric, date) WITH (deduplicate_items = off)"


class SchemaError(RuntimeError):
    """The database's schema is missing, older or newer than this code knows."""


def _partitioned(table: str, columns: str) -> str:
    """A table partitioned by kind, then by submission date (leaves are added by publishing)."""
    subs = "".join(
        f"CREATE TABLE {table}_{kind} PARTITION OF {table} FOR VALUES IN ('{kind}')"
        " PARTITION BY RANGE (submission_date);\n"
        for kind in KINDS
    )
    return (
        f"CREATE TABLE {table} ({columns}) PARTITION BY LIST (kind);\n{subs}"
        f"CREATE INDEX {table}_lookup ON {table} {LEAF_INDEX};\n"
    )


_DIMENSIONS = """
    kind text NOT NULL, submission_date date NOT NULL, channel text NOT NULL, version integer NOT NULL,
    date date NOT NULL"""
_FILTERS = "application text NOT NULL, architecture text NOT NULL, os text NOT NULL, os_version text NOT NULL"
_CELLS = """metric text NOT NULL, label text NOT NULL, process text NOT NULL,
    layout integer NOT NULL, histogram bigint[] NOT NULL, sum bigint NOT NULL, count bigint NOT NULL"""

_V1 = (
    """
CREATE TABLE layouts (
    id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind text NOT NULL, bounds bigint[] NOT NULL, labels text[] NOT NULL,
    digest text NOT NULL UNIQUE
);
CREATE TABLE descriptions (metric text PRIMARY KEY, description text NOT NULL);
CREATE TABLE publishes (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind text NOT NULL, submission_date date NOT NULL,
    snapshot text NOT NULL, run_id text NOT NULL, digest text NOT NULL,
    rows bigint NOT NULL, rollup_rows bigint NOT NULL, skipped bigint NOT NULL DEFAULT 0,
    started_at timestamptz NOT NULL, published_at timestamptz NOT NULL DEFAULT now(),
    action text NOT NULL CHECK (action IN ('published', 'unchanged', 'trimmed'))
);
CREATE INDEX publishes_day ON publishes (kind, submission_date);
CREATE TABLE contributions (
    kind text NOT NULL, submission_date date NOT NULL, publish_id bigint NOT NULL REFERENCES publishes,
    PRIMARY KEY (kind, submission_date)
);
CREATE TABLE catalog_dates (
    kind text NOT NULL, submission_date date NOT NULL, channel text NOT NULL, version integer NOT NULL,
    date date NOT NULL,
    PRIMARY KEY (kind, submission_date, channel, version, date)
);
CREATE INDEX catalog_dates_listing ON catalog_dates (kind, channel, version, date);
CREATE TABLE catalog_filters (
    kind text NOT NULL, submission_date date NOT NULL, channel text NOT NULL, version integer NOT NULL,
    filter text NOT NULL, value text NOT NULL,
    PRIMARY KEY (kind, submission_date, channel, version, filter, value)
);
CREATE INDEX catalog_filters_listing ON catalog_filters (channel, version, filter, value);
"""
    + _partitioned("aggregates", f"{_DIMENSIONS}, {_FILTERS}, {_CELLS}")
    + _partitioned("aggregates_all", f"{_DIMENSIONS}, {_CELLS}")
)

# The rollup as one plain table. Leaves cost the API a probe each (an unfiltered 30-date answer read 30
# partitions, and a generic plan prunes over every leaf the table has); one index finds the same rows in
# one descent. A contribution's rollup rows are few (a tenth of its leaf), so replacing or trimming a day is
# an indexed DELETE, and readers never wait for it.
ROLLUP_INDEXES = {"lookup": "(kind, channel, version, metric, date)", "day": "(kind, submission_date)"}
_V2 = f"""
CREATE TABLE aggregates_rollup ({_DIMENSIONS}, {_CELLS});
INSERT INTO aggregates_rollup SELECT * FROM aggregates_all ORDER BY kind, channel, version, metric, date;
DROP TABLE aggregates_all;
ALTER TABLE aggregates_rollup RENAME TO aggregates_all;
""" + "".join(
    f"CREATE INDEX aggregates_all_{name} ON aggregates_all {index};\n" for name, index in ROLLUP_INDEXES.items()
)

# The filter values of each channel and version, one row per filter holding its sorted distinct values (the
# C collation: Python's order), kept by aggregator/store/catalog.py with catalog_filters: /filters/ reads one row,
# where walking catalog_filters' distinct values took 9 s for a million metric names. The partial index holds the
# count histograms the API looks names up in, which was a scan of every catalog row.
_V3 = """
CREATE TABLE catalog_lists (
    channel text NOT NULL, version integer NOT NULL, filter text NOT NULL, "values" text[] NOT NULL,
    PRIMARY KEY (channel, version, filter)
);
INSERT INTO catalog_lists
SELECT channel, version, filter, array_agg(value ORDER BY value COLLATE "C")
FROM (SELECT DISTINCT channel, version, filter, value FROM catalog_filters) AS distinct_values
GROUP BY channel, version, filter;
CREATE INDEX catalog_filters_counts ON catalog_filters (value) WHERE filter = 'metric' AND value LIKE '[[COUNT]]\\_%';
"""

# The client-level weighting (aggregator/clients.py): distinct clients and the sum of their normalised histograms,
# bucket by bucket as `histogram`. Rows published before have 0 clients and no client histogram (NULL). A constant
# default: no table is rewritten.
_V4 = "".join(
    f"ALTER TABLE {table} ADD COLUMN clients bigint NOT NULL DEFAULT 0,"
    " ADD COLUMN client_histogram double precision[];\n"
    for table in ("aggregates", ROLLUP)
)
# (version, description, SQL). Never edit a released migration: append a new one.
MIGRATIONS: tuple[tuple[int, str, str], ...] = (
    (1, "partitioned aggregates and rollup, layouts, catalog, ledger", _V1),
    (2, "the rollup as one plain table", _V2),
    (3, "the filter values of each channel and version as one row per filter", _V3),
    (4, "client-level weighting: clients and client_histogram", _V4),
)
SCHEMA_VERSION = MIGRATIONS[-1][0]

_LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version integer PRIMARY KEY, description text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now()
)"""


async def _version(conn: asyncpg.Connection) -> int | None:
    """The newest applied migration, or None when the database has no schema_migrations table."""
    if await conn.fetchval("SELECT to_regclass('schema_migrations')") is None:
        return None
    return await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_migrations")


async def migrate(conn: asyncpg.Connection) -> list[int]:
    """Apply the pending migrations, all or none (one transaction); returns the versions applied.

    An advisory lock makes concurrent `db init`s wait for each other instead of failing halfway.
    """
    applied = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1, $2)", *MIGRATION_LOCK)
        await conn.execute(_LEDGER)
        current = await _version(conn) or 0
        if current > SCHEMA_VERSION:
            raise SchemaError(_newer(current))
        for version, description, sql in MIGRATIONS:
            if version > current:
                await conn.execute(sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, description) VALUES ($1, $2)", version, description
                )
                applied.append(version)
    return applied


def _newer(version: int) -> str:
    return (
        f"the database has schema version {version}, newer than this aggregator knows ({SCHEMA_VERSION}): "
        "upgrade the aggregator"
    )


async def check_schema(conn: asyncpg.Connection) -> int:
    """What the server calls at start-up: returns the schema version, or raises SchemaError saying what to do."""
    version = await _version(conn)
    if not version:
        raise SchemaError("the database has no aggregates schema: run `aggregator db init`")
    if version > SCHEMA_VERSION:
        raise SchemaError(_newer(version))
    if version < SCHEMA_VERSION:
        raise SchemaError(
            f"the database has schema version {version}, older than this aggregator's ({SCHEMA_VERSION}): "
            "run `aggregator db init` to migrate it"
        )
    return version


# ---- leaves: staged, swapped in, dropped ----------------------------------------------------------------


def _checked(kind: str, day: date) -> None:
    if kind not in KINDS or not isinstance(day, date):
        raise ValueError(f"not a kind and a date: {kind!r}, {day!r}")


def leaf_name(table: str, kind: str, day: date) -> str:
    """`aggregates_<kind>_<YYYYMMDD>`."""
    _checked(kind, day)
    if table not in TABLES:
        raise ValueError(f"not a leaf-partitioned table: {table!r}")
    return f"{table}_{kind}_{day:%Y%m%d}"


async def create_stage(conn: asyncpg.Connection, table: str, kind: str, day: date) -> str:
    """Inside the publish transaction: a new plain table shaped like the leaf, its partition bounds as a
    CHECK so that ATTACH need not scan it. Its columns are read from the catalog, not copied with LIKE, because
    LIKE would hold a lock on the parent until commit and stall other days' swaps. Its index comes once it is
    filled (`index_stage`)."""
    leaf = leaf_name(table, kind, day)
    stage = f"stage_{leaf}"
    columns = await conn.fetchval(
        """SELECT string_agg(quote_ident(attname) || ' ' || format_type(atttypid, atttypmod)
                             || CASE WHEN attnotnull THEN ' NOT NULL' ELSE '' END, ', ' ORDER BY attnum)
           FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped""",
        f"{table}_{kind}",
    )
    await conn.execute(f"CREATE TABLE {_quote(stage)} ({columns}, CONSTRAINT leaf_bounds CHECK ({_bounds(kind, day)}))")
    return stage


async def index_stage(conn: asyncpg.Connection, stage: str) -> None:
    """The parent's index on the filled staging table, which ATTACH then adopts (without it, ATTACH would build
    one while holding the parent's lock). Built once the rows are in, by one sort of rows already in its order:
    0.2 s on the benchmark's day, where maintaining it row by row made the COPY 0.5 s longer."""
    await conn.execute(f"CREATE INDEX {_quote(stage + '_lookup')} ON {_quote(stage)} {LEAF_INDEX}")


def _bounds(kind: str, day: date) -> str:
    """SQL of the leaf's partition constraint (kind and date are validated, never user text)."""
    _checked(kind, day)
    after = day + timedelta(days=1)
    return f"kind = '{kind}' AND submission_date >= '{day.isoformat()}' AND submission_date < '{after.isoformat()}'"


def _quote(name: str) -> str:
    """Names here are built by this module; quoting them anyway keeps the SQL safe whatever they become."""
    return '"' + name.replace('"', '""') + '"'


async def swap_leaf(conn: asyncpg.Connection, table: str, kind: str, day: date, stage: str) -> None:
    """Drop the served leaf and attach the staged one in its place (the caller's transaction makes it atomic)."""
    leaf = leaf_name(table, kind, day)
    after = day + timedelta(days=1)
    await conn.execute(f"DROP TABLE IF EXISTS {_quote(leaf)}")
    await conn.execute(f"ALTER TABLE {_quote(stage)} RENAME TO {_quote(leaf)}")
    await conn.execute(f"ALTER INDEX {_quote(stage + '_lookup')} RENAME TO {_quote(leaf + '_lookup')}")
    await conn.execute(
        f"ALTER TABLE {table}_{kind} ATTACH PARTITION {_quote(leaf)} "
        f"FOR VALUES FROM ('{day.isoformat()}') TO ('{after.isoformat()}')"
    )


async def drop_leaf(conn: asyncpg.Connection, table: str, kind: str, day: date) -> None:
    await conn.execute(f"DROP TABLE IF EXISTS {_quote(leaf_name(table, kind, day))}")


async def delete_rollup(conn: asyncpg.Connection, kind: str, day: date) -> int:
    """Remove one contribution's rollup rows (row locks only: readers go on reading the committed rows); how many."""
    return rows_of(await conn.execute(f"DELETE FROM {ROLLUP} WHERE kind = $1 AND submission_date = $2", kind, day))


def rows_of(status: str) -> int:
    """The row count of a command's status (`DELETE 12`, `COPY 3`)."""
    return int(status.rsplit(" ", 1)[1])


# ---- planner statistics ---------------------------------------------------------------------------------------

# The columns rows are selected by: what ANALYZE gathers statistics of. A histogram is never a condition and is
# most of a row's bytes; sampling it would cost the most and tell the planner nothing.
_SELECTED_BY = "kind, submission_date, channel, version, date, metric, label, process"
ANALYZED = {"aggregates": f"({_SELECTED_BY}, application, architecture, os, os_version)", ROLLUP: f"({_SELECTED_BY})"}


# A shared table is analyzed when a change touched more than this share of its rows: autovacuum's own threshold
# (autovacuum_analyze_scale_factor), reached at once instead of at its next round, a minute or more later.
STALE_SHARE = 0.1


async def analyze(conn: asyncpg.Connection, table: str) -> None:
    """ANALYZE a table of this schema or a staged leaf (`table` is a name this module made), on the columns rows
    are selected by. Inside a transaction its statistics are seen at the commit, with the rows."""
    columns = ANALYZED.get(table, ANALYZED["aggregates"] if table.startswith("stage_") else "")
    await conn.execute(f"ANALYZE {_quote(table)} {columns}")


async def analyze_changed(conn: asyncpg.Connection, changed: dict[str, int]) -> list[str]:
    """ANALYZE the tables of `changed` (table: rows inserted or deleted) that have no statistics yet or that the
    change made stale (STALE_SHARE); the tables analyzed. Without statistics, the first unknown-metric 404 after
    a publish of a million metric names scanned all 2 million catalog rows: 0.6 s a request, 0.2 ms after."""
    known = await conn.fetch(
        "SELECT relname, reltuples FROM pg_class WHERE relname = ANY($1::text[]) AND pg_table_is_visible(oid)",
        list(changed),
    )
    stale = sorted(
        r["relname"] for r in known if r["reltuples"] < 0 or changed[r["relname"]] > STALE_SHARE * r["reltuples"]
    )
    for table in stale:
        await analyze(conn, table)
    return stale

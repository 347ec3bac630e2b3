"""The Postgres store: schema, publishing of snapshot runs, rebuild, retention and status (docs/store.md)."""

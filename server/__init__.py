"""The aggregates HTTP API: python_mozaggregator's routes on aiohttp and asyncpg (docs in README, "The API")."""

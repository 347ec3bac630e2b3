"""Telemetry Aggregates: aggregate Firefox telemetry main pings into per-dimension histograms."""

__version__ = "0.1.0"

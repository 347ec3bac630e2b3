"""Synthetic Firefox telemetry "main" pings (v4) and the definitions files that describe them.

The demo, the tests and the benchmarks need input shaped like what the original service read: 20-100 KB pings
carrying hundreds of histograms packed the way Firefox packs them, the odd broken line, and the junk real clients
send. Everything is deterministic for a seed, so a corpus is regenerated rather than stored.

Random numbers come from numpy in bulk (a few calls per ping for all its histograms): building the JSON dictionaries
in Python is the expensive part, and must not also pay for numpy calls per histogram.

`probes` is the catalogue and its definitions files, `clients` who sends pings and their environment, `pings`
one ping, `corpus` the files on disk.
"""

from aggregator.generate.corpus import GenerateSummary, generate_corpus
from aggregator.generate.probes import UNDEFINED_HISTOGRAMS

__all__ = ["UNDEFINED_HISTOGRAMS", "GenerateSummary", "generate_corpus"]

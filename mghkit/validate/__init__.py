"""Filter triplets: a bad record becomes a reject with reasons, never a crash.

Checks, in order, for every record (codes as they appear in rejects and the report, see
``REASONS``): schema -> number of negatives and their levels -> text normalisation and lengths ->
a negative identical or near-identical to its own query, positive or another negative -> a
negative equal to another record's positive -> (with an embedder) a negative that outscores the
positive -> an id already kept (``duplicate_id``) -> exact and near-duplicate queries across
the input (the first occurrence is kept).

The modules, in data-flow order (each imports only those above it)::

    dedup      normalisation, near-identity, MinHash-LSH (numpy only)
    checks     the per-record checks, ValidateConfig, Reason, Outcome
    levels     the --check-levels embedder and LevelStats
    crossfile  the checks across records: other positives, the level check, duplicate queries
    parallel   worker processes for large files (same output as one process)
    report     Report and ValidationResult
    run        validate_triplets, validate_file, validate_lines

    >>> neg = lambda t: [{"similarity_level": lv, "text": f"{t} {lv}"} for lv in ("high", "medium", "medium-low", "low")]
    >>> rows = [{"query": "latin name of sodium", "positive_example": "Natrium", "hard_negative_examples": neg("Kalium")},
    ...         {"query": "Latin name of sodium?", "positive_example": "Natrium.", "hard_negative_examples": neg("x")}]
    >>> clean, rejects, report = validate_triplets(rows)
    >>> len(clean), rejects[0].model_dump(include={"stage", "line", "reasons"})
    (1, {'stage': 'validate', 'reasons': [{'code': 'duplicate_query', 'field': 'query', 'detail': 'same query as line 1'}], 'line': 2})
"""

from __future__ import annotations

from mghkit.validate.checks import REASONS, Outcome, Reason, ValidateConfig, canonical_level, check_record
from mghkit.validate.crossfile import collect_positives
from mghkit.validate.levels import Embedder, LevelStats, load_embedder
from mghkit.validate.report import Report, ValidationResult
from mghkit.validate.run import validate_file, validate_lines, validate_triplets

__all__ = [
    "REASONS",
    "Embedder",
    "LevelStats",
    "Outcome",
    "Reason",
    "Report",
    "ValidateConfig",
    "ValidationResult",
    "canonical_level",
    "check_record",
    "collect_positives",
    "load_embedder",
    "validate_file",
    "validate_lines",
    "validate_triplets",
]

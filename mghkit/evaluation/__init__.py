"""Evaluation through mteb: local BEIR/STS data as mteb tasks, MTEB tasks by name, a BM25 baseline,
an embedding cache, and comparisons of several models and poolings in one run.

    data.py             read/check local BEIR dirs and STS JSONL, deterministic subsets (no torch)
    tasks.py            local data as mteb tasks; MTEB tasks by name or benchmark
    models.py           rows: sentence-transformers models, decoders (poolings share one forward pass)
    encoder_adapter.py  the cache in front of an encoder; the mteb AbsEncoder wrapper
    cache.py            the on-disk embedding cache (SQLite)
    bm25.py             the lexical baseline as an mteb search model
    run.py              EvalSpec -> run_eval -> report dict
    report.py           the comparison tables and the JSON file

Nothing heavy is imported here; ``from mghkit.evaluation.run import EvalSpec, run_eval``.
"""

"""Evaluation through mteb: local BEIR/STS data as mteb tasks, MTEB tasks by name, a BM25 baseline,
an embedding cache, and comparisons of several models and poolings in one run.

    run.py              ``evaluate(models, beir=..., sts=..., tasks=...) -> EvalReport`` (``mghkit.evaluate``)
    spec.py             the settings of a run (EvalSpec), the local data and tasks they select
    data.py             read/check local BEIR dirs and STS JSONL, deterministic subsets (no torch)
    tasks.py            local data as mteb tasks; MTEB tasks by name or benchmark
    models.py           rows: names or objects (Encoder, SentenceTransformer); poolings share one forward pass
    encoder_adapter.py  the cache in front of an encoder; the mteb AbsEncoder wrapper
    cache.py            the on-disk embedding cache (SQLite)
    bm25.py             the lexical baseline as an mteb search model
    report.py           EvalReport, the comparison tables (rich renderables) and the JSON file

Nothing heavy is imported here; ``import mghkit; mghkit.evaluate(...)``.
"""

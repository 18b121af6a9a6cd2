"""The evidence behind the ATA default (docs/ata.md): anchors and untrained scores on real data.

    python -m bench.study_ata --model local --queries 200 --max-length 256 --out docs/ata-study.json

One forward pass per text yields every pooling variant (mean, last, weighted-mean and the four
ATA variants: direction received/given x sign positive/literal), once with bidirectional and
once with causal attention. Reports, per variant: man-pages retrieval nDCG@10 (the first N
queries and their relevant documents as the corpus), SimLex-999 Spearman, and how much of the
pooling weight sits on anchor tokens (first token, punctuation, the closing EOS token) compared
with uniform weights.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import unicodedata
from pathlib import Path

import torch

from mghkit.model.encoder import Encoder, load_encoder
from mghkit.model.pooling import ata_raw, pool, pooling_weights
from mghkit.paths import bundled_eval_dir

VARIANTS = [
    ("mean", {}),
    ("last", {}),
    ("weighted-mean", {}),
    ("ata-received-positive", {"direction": "received", "sign": "positive"}),
    ("ata-given-positive", {"direction": "given", "sign": "positive"}),
    ("ata-received-literal", {"direction": "received", "sign": "literal"}),
    ("ata-given-literal", {"direction": "given", "sign": "literal"}),
]
RETRIEVAL_TASK = "Given a one-line summary of a Linux function or file format, retrieve its manual page description"
STS_TASK = "Retrieve semantically similar text"


def is_punct(token: str) -> bool:
    text = token.replace("Ġ", "").replace("Ċ", "\n").strip()
    return bool(text) and all(unicodedata.category(c).startswith("P") for c in text)


def encode_all(enc: Encoder, texts: list[str], instruction: str | None, stats: dict, batch_size: int = 8) -> dict:
    """{variant: [N, D] normalised vectors}; accumulates anchor statistics into ``stats``."""
    feats = [enc.features(t, instruction) for t in texts]
    order = sorted(range(len(feats)), key=lambda i: -len(feats[i][0]))
    out = {name: torch.empty(len(texts), enc.dim) for name, _ in VARIANTS}
    eos = enc.tokenizer.eos_token_id
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            batch = enc.collate([feats[i] for i in idx])
            res = enc.forward(batch, attention=True)
            mask = res["pool_mask"]
            ids = batch["input_ids"]
            first = mask & (torch.cumsum(mask.long(), -1) == 1)
            punct = (
                torch.tensor([[is_punct(t) for t in enc.tokenizer.convert_ids_to_tokens(row)] for row in ids.tolist()])
                & mask
            )
            closing = (ids == eos) & mask
            for name, kw in VARIANTS:
                kind = "ata" if name.startswith("ata") else name
                w = pooling_weights(kind, mask, res["attn"], res["valid"], **kw)
                out[name][idx] = torch.nn.functional.normalize(pool(res["hidden"], w).float(), dim=-1)
                s = stats.setdefault(name, {"first": 0.0, "punct": 0.0, "closing": 0.0, "top_is_anchor": 0, "n": 0})
                s["first"] += float((w * first).sum())
                s["punct"] += float((w * punct).sum())
                s["closing"] += float((w * closing).sum())
                top = w.argmax(-1, keepdim=True)
                anchor = first | punct | closing
                s["top_is_anchor"] += int(anchor.gather(1, top).sum())
                s["n"] += len(idx)
                if kind == "ata":
                    raw = ata_raw(res["attn"], mask, res["valid"], kw["direction"], "literal")
                    s.setdefault("all_negative", 0)
                    s.setdefault("mixed", 0)
                    neg = ((raw < 0) | ~mask).all(-1)
                    mixed = ((raw < 0) & mask).any(-1) & ((raw > 0) & mask).any(-1)
                    s["all_negative"] += int(neg.sum())
                    s["mixed"] += int(mixed.sum())
            print(f"  {start + len(idx)}/{len(texts)}", file=sys.stderr, flush=True)
    return out


def ndcg10(q: torch.Tensor, d: torch.Tensor, qids: list[str], dids: list[str], qrels: dict) -> float:
    import pytrec_eval

    scores = (q @ d.T).tolist()
    run = {
        qid: {did: float(s) for did, s in zip(dids, row, strict=True)} for qid, row in zip(qids, scores, strict=True)
    }
    ev = pytrec_eval.RelevanceEvaluator({k: qrels[k] for k in qids}, {"ndcg_cut.10"})
    res = ev.evaluate(run)
    return sum(r["ndcg_cut_10"] for r in res.values()) / len(res)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="local")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--sts-pairs", type=int, default=999)
    ap.add_argument("--directions", default="bidirectional,causal")
    ap.add_argument("--out", default="docs/ata-study.json")
    args = ap.parse_args()
    root = bundled_eval_dir()
    mp = root / "manpages-retrieval"
    queries = [json.loads(x) for x in (mp / "queries.jsonl").read_text().splitlines()][: args.queries]
    corpus = {r["_id"]: r for r in map(json.loads, (mp / "corpus.jsonl").read_text().splitlines())}
    qrels: dict[str, dict[str, int]] = {}
    for line in (mp / "qrels" / "test.tsv").read_text().splitlines()[1:]:
        qid, did, score = line.split("\t")
        qrels.setdefault(qid, {})[did] = int(score)
    qids = [q["_id"] for q in queries]
    dids = sorted({d for q in qids for d in qrels[q]}, key=lambda x: int(x[1:]))
    docs = [(corpus[d]["title"] + " " + corpus[d]["text"]).strip() for d in dids]
    sts = [json.loads(x) for x in (root / "simlex999-sts" / "test.jsonl").read_text().splitlines()][: args.sts_pairs]
    words = sorted({r["sentence1"] for r in sts} | {r["sentence2"] for r in sts})

    from scipy.stats import spearmanr

    enc = load_encoder(args.model, pooling="ata", max_length=args.max_length)
    results: dict = {"model": args.model, "queries": len(qids), "docs": len(dids), "max_length": args.max_length,
                     "sts_pairs": len(sts), "rows": {}}  # fmt: skip
    for direction in args.directions.split(","):
        e = enc.with_config(bidirectional=direction == "bidirectional")
        stats: dict = {}
        t0 = time.time()
        print(f"{direction}: {len(docs)} docs", file=sys.stderr)
        dv = encode_all(e, docs, None, stats)
        print(f"{direction}: {len(qids)} queries, {len(words)} words", file=sys.stderr)
        qv = encode_all(e, [q["text"] for q in queries], RETRIEVAL_TASK, {})
        wv = encode_all(e, words, STS_TASK, {}, batch_size=32)
        wi = {w: i for i, w in enumerate(words)}
        for name, _ in VARIANTS:
            cos = [float(wv[name][wi[r["sentence1"]]] @ wv[name][wi[r["sentence2"]]]) for r in sts]
            rho = float(spearmanr(cos, [r["score"] for r in sts]).statistic)
            s = stats[name]
            results["rows"][f"{direction}/{name}"] = {
                "ndcg@10": ndcg10(qv[name], dv[name], qids, dids, qrels),
                "simlex_spearman": rho,
                "weight_first": s["first"] / s["n"],
                "weight_punct": s["punct"] / s["n"],
                "weight_closing": s["closing"] / s["n"],
                "top_is_anchor": None if name == "mean" else s["top_is_anchor"] / s["n"],
                "raw_all_negative": s.get("all_negative", 0) / s["n"],
                "raw_mixed_signs": s.get("mixed", 0) / s["n"],
            }
            print(direction, name, json.dumps(results["rows"][f"{direction}/{name}"]), file=sys.stderr, flush=True)
        results[f"{direction}_seconds"] = time.time() - t0
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()

"""The model card (README.md) of an export: base model, data lineage, schedule, steps, eval
figures, licence, citation and a usage snippet, from the files of the run dir."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CITATION = """@inproceedings{pan2025mgh,
  title     = {Negative Matters: Multi-Granularity Hard-Negative Synthesis and Anchor-Token-Aware
               Pooling for Enhanced Text Embeddings},
  author    = {Pan, Tengyu and others},
  booktitle = {Proceedings of ACL 2025},
  year      = {2025},
  eprint    = {2509.00842},
  archivePrefix = {arXiv}
}"""


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``, or {} when the file is missing or not an object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def eval_figures(run: Path) -> list[str]:
    """Markdown table rows from an eval report kept in the run dir (``eval*.json``), if any."""
    rows = []
    for file in sorted(run.glob("eval*.json")):
        for result in read_json(file).get("results", []) if isinstance(read_json(file).get("results"), list) else []:
            if isinstance(result, dict) and "task" in result and "main_score" in result:
                rows.append(f"| {result['task']} | {result.get('metric', 'main score')} | {result['main_score']:.4f} |")
    return rows


def model_card(run: Path, config: dict[str, Any], *, fmt: str, merged: bool, instruction: str) -> str:
    """README.md text for an export of ``run`` (``config``: its mghkit_model.json)."""
    args, lineage = read_json(run / "training_args.json"), read_json(run / "lineage.json")
    trained = config.get("extra", {}).get("trained", {}) if isinstance(config.get("extra"), dict) else {}
    base = args.get("base_model", config.get("base_model", "?"))
    base_text = "SmolLM2-135M-Instruct (mghkit's embedded `local` model)" if base == "local" else f"`{base}`"
    pooling = config.get("pooling", "mean")
    remote = ", trust_remote_code=True" if fmt == "sentence-transformers" else ""
    lines = [
        "---",
        "library_name: sentence-transformers" if fmt == "sentence-transformers" else "library_name: transformers",
        "license: apache-2.0",
        "tags: [sentence-transformers, feature-extraction, sentence-similarity, mghkit]",
        "---",
        "",
        "# Text embedder fine-tuned with mghkit",
        "",
        f"A bidirectional decoder embedder trained by `mghkit train` and exported by `mghkit export --format {fmt}`.",
        "",
        "| | |",
        "|---|---|",
        f"| base model | {base_text} |",
        f"| pooling | {pooling}"
        + (f" ({config.get('ata_direction')}, {config.get('ata_sign')})" if pooling == "ata" else "")
        + " |",
        f"| attention | {'bidirectional (is_causal false)' if config.get('bidirectional', True) else 'causal'} |",
        f"| LoRA | {'merged into the weights' if merged else 'kept as an adapter (adapter/)'} |",
        f"| schedule | {args.get('schedule') or 'the order of the training file'} |",
        f"| steps | {trained.get('steps', args.get('steps', '?'))} |",
        f"| max length | {config.get('max_length')} tokens |",
        f"| query prompt | `{json.dumps(instruction)}` (documents take none) |",
        "",
        "## Data lineage",
        "",
        "```json",
        json.dumps(lineage or {"note": "no lineage.json in the run dir"}, indent=2, sort_keys=True),
        "```",
        "",
        "## Evaluation",
        "",
    ]
    figures = eval_figures(run)
    lines += (
        ["| task | metric | score |", "|---|---|---|", *figures]
        if figures
        else ["No evaluation was kept in the run dir."]
    )
    lines += [
        "",
        "## Usage",
        "",
        "```python",
        "from sentence_transformers import SentenceTransformer"
        if remote
        else "from transformers import AutoModel, AutoTokenizer",
    ]
    if remote:
        lines += [
            f"model = SentenceTransformer(PATH{remote})  # the pooling and token layout ship in mghkit_st.py",
            'queries = model.encode(["sodium latin name"], prompt_name="query")',
            'documents = model.encode(["Sodium is natrium in Latin."])',
            "scores = model.similarity(queries, documents)",
        ]
    else:
        lines += [
            "model, tokenizer = AutoModel.from_pretrained(PATH), AutoTokenizer.from_pretrained(PATH)",
            "# config.is_causal is false: attention is bidirectional; the tokenizer appends EOS.",
            "# mghkit.load_encoder(PATH) gives the exact vectors (pooling and prompt layout).",
        ]
    lines += ["```", "", "## Licence", "",
              "Apache-2.0, as the base model's licence allows; check the base model's own terms.", "",
              "## Citation", "", "```bibtex", CITATION, "```", ""]  # fmt: skip
    return "\n".join(lines)

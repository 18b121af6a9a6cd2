"""One generate job, from prompt to record (docs/method.md section 1): for a task, a query, a
positive and four graded hard negatives.

- :func:`plan` turns tasks into :class:`Job` s (one prompt each, attributes drawn from (seed, id));
- :func:`produce` asks the client, extracts and checks the JSON, re-asks once when it is
  unusable, and returns a triplet record (the :class:`~mghkit.schema.Triplet` file format) or a
  reject record (the :class:`~mghkit.schema.Reject` file format) - never nothing.

    >>> from mghkit.schema import Task
    >>> jobs = list(plan([Task(id="t1", kind="sts", task="Find paraphrases.")], per_task=2, seed=7))
    >>> [j.id for j in jobs]
    ['trip-8bc9c00cb916f807', 'trip-01d0a051da0610c7']
    >>> "Find paraphrases." in jobs[0].messages[0]["content"], jobs[0].attributes["difficulty"]
    (True, 'PhD')

Reject codes (``reasons[0].code`` of a generate reject; the reason of the reply after its
re-ask): ``empty_reply``, ``no_json``, ``invalid_json``, ``max_tokens`` (cut off), ``not_an_object``,
``missing_field``, ``empty_field``, ``wrong_type``, ``too_long``, ``negative_count``.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

from mghkit import __version__
from mghkit.jsonl import dumps
from mghkit.llm.base import LOCAL, Completion, LLMClient, Messages
from mghkit.prompts import Template, load_template
from mghkit.schema import KINDS, LEVELS, Reject, RejectReason, Task, stable_id
from mghkit.synth.attributes import ATTRIBUTE_NAMES, attributes, request_seed
from mghkit.synth.extract import extract_json

MAX_TOKENS = 4096  # remote models: room for 6 texts of up to 500 words
LOCAL_MAX_TOKENS = 1024
TEMPERATURE = 1.0
LOCAL_TEMPERATURE = 0.5
LOCAL_MAX_QUERY, LOCAL_MAX_TEXT = 160, 300  # characters: keeps the 135M model from looping for long
MAX_TEXT_CHARS = 20_000  # a field longer than this is a runaway, not data
# Part of the name under which a finished record is kept in the cache (see mghkit.synth.replay):
# bump it whenever the way a record is built from the model's answers changes.
RECORD_FORMAT = f"mghkit {__version__} generate record 2"


# ----------------------------------------------------------------------------- prompts and jobs
class GeneratePrompt:
    """The generation template plus the per-kind rules, with one sha per kind."""

    def __init__(self) -> None:
        self.main = load_template("generate.txt")
        self.kinds = {kind: load_template(f"generate-{kind}.txt") for kind in KINDS}
        self.reask = load_template("reask.txt")
        self.sha = {
            kind: hashlib.sha256(f"{self.main.sha}+{t.sha}+{self.reask.sha}".encode()).hexdigest()[:16]
            for kind, t in self.kinds.items()
        }
        self.main.render(task="", query_desc="", doc_desc="", kind_rules="", **dict.fromkeys(ATTRIBUTE_NAMES, ""))
        self._format = self.main.text.format  # its variables are checked once, above

    def render(self, task: Task, attrs: dict[str, str]) -> str:
        return self._format(
            task=task.task.strip(),
            query_desc=(task.query_desc or "as the task says").strip().rstrip("."),
            doc_desc=(task.doc_desc or "as the task says").strip().rstrip("."),
            kind_rules=self.kinds[task.kind].text.strip(),
            **attrs,
        )


@dataclass
class Job:
    """One request to make: the triplet id it will produce and its prompt (rendered when first
    needed, so resuming a long run costs one hash per finished job)."""

    id: str
    task: Task
    index: int
    seed: int  # the run's seed (recorded); the request seed is derived from it and the id
    prompt: GeneratePrompt

    @functools.cached_property
    def attributes(self) -> dict[str, str]:
        return attributes(self.task.kind, self.seed, self.id)

    @functools.cached_property
    def messages(self) -> Messages:
        return [{"role": "user", "content": self.prompt.render(self.task, self.attributes)}]

    @property
    def prompt_sha(self) -> str:
        return self.prompt.sha[self.task.kind]

    @property
    def request_seed(self) -> int:
        return request_seed(self.seed, self.id)

    def result_name(self, params: str) -> str:
        """Everything this job's record is built from, apart from the model's answers (which follow
        from these and the model): the cache name of the finished record."""
        t = self.task
        return "\x1f".join((RECORD_FORMAT, self.prompt_sha, str(self.seed), self.id, t.kind, t.task,
                             t.query_desc or "", t.doc_desc or "", params))  # fmt: skip


def triplet_id(task_id: str, index: int, seed: int) -> str:
    """The id of the ``index``-th triplet of a task: stable across reruns, so runs resume by id."""
    return stable_id(task_id, str(index), str(seed), prefix="trip-")


def plan(
    tasks: Iterable[Task], *, per_task: int = 1, seed: int = 0, prompt: GeneratePrompt | None = None
) -> Iterator[Job]:
    """``per_task`` jobs for each task, in task order."""
    prompt = prompt or GeneratePrompt()
    for task in tasks:
        for i in range(per_task):
            yield Job(triplet_id(task.id, i, seed), task, i, seed, prompt)


# ----------------------------------------------------------------------------- checking a reply
def _problem(code: str, detail: str, field: str | None = None) -> RejectReason:
    return RejectReason(code=code, field=field, detail=detail)


def describe(reason: RejectReason) -> str:
    """A reason as one line: ``field: detail`` (what the re-ask prompt tells the model)."""
    return f"{reason.field}: {reason.detail}" if reason.field else reason.detail


def check_triplet(obj: Any) -> tuple[dict[str, Any] | None, RejectReason | None]:
    """The reply's object as a clean payload, or why it cannot be one. Trivial repairs: negatives
    given as plain strings are wrapped; labels are set by position (most similar first).

    >>> p, why = check_triplet({"query": "q", "positive_example": "p", "hard_negative_examples": ["a", "b", "c", "d"]})
    >>> [n["similarity_level"] for n in p["hard_negative_examples"]], why
    (['high', 'medium', 'medium-low', 'low'], None)
    >>> _, why = check_triplet({"query": "q", "positive_example": "p", "hard_negative_examples": ["a"]})
    >>> why.code, describe(why)
    ('negative_count', 'hard_negative_examples: expected 4 negatives, got 1')
    """
    if not isinstance(obj, dict):
        return None, _problem("not_an_object", "expected a JSON object")
    out: dict[str, Any] = {}
    for name in ("query", "positive_example"):
        value = obj.get(name)
        if value is None:
            return None, _problem("missing_field", "missing", name)
        if not isinstance(value, str) or not value.strip():
            return None, _problem("empty_field", "expected a non-empty string", name)
        if len(value) > MAX_TEXT_CHARS:
            return None, _problem("too_long", f"longer than {MAX_TEXT_CHARS:,} characters", name)
        out[name] = value.strip()
    negs = obj.get("hard_negative_examples")
    field = "hard_negative_examples"
    if negs is None:
        return None, _problem("missing_field", "missing", field)
    if not isinstance(negs, list):
        return None, _problem("wrong_type", "expected a list", field)
    if len(negs) != len(LEVELS):
        return None, _problem("negative_count", f"expected {len(LEVELS)} negatives, got {len(negs)}", field)
    clean = []
    for i, neg in enumerate(negs):
        text = neg.get("text") if isinstance(neg, dict) else neg
        if not isinstance(text, str) or not text.strip():
            return None, _problem("empty_field", "expected a non-empty string", f"{field}.{i}.text")
        if len(text) > MAX_TEXT_CHARS:
            return None, _problem("too_long", f"longer than {MAX_TEXT_CHARS:,} characters", f"{field}.{i}.text")
        clean.append({"similarity_level": LEVELS[i], "text": text.strip()})
    out[field] = clean
    return out, None


_EXTRACT_CODES = {"the reply is empty": "empty_reply", "no JSON object in the reply": "no_json"}


def parse_triplet(text: str, finish_reason: str | None = None) -> tuple[dict[str, Any] | None, RejectReason | None]:
    """A reply's text as a clean payload (see :func:`check_triplet`), or why it cannot be one.

    >>> parse_triplet("Sorry, I cannot.")[1].code
    'no_json'
    """
    obj, why = extract_json(text)
    if why is not None:
        if finish_reason == "length":
            return None, _problem("max_tokens", why + " (the reply hit max_tokens)")
        return None, _problem(_EXTRACT_CODES.get(why, "invalid_json"), why)
    return check_triplet(obj)


def triplet_schema(max_query: int | None = LOCAL_MAX_QUERY, max_text: int | None = LOCAL_MAX_TEXT) -> dict[str, Any]:
    """The JSON schema the embedded model is constrained to (bounded, so it cannot loop forever).
    None: no maximum length - what goes to a server, whose grammar compiler may refuse (or crash
    on: llama-cpp-python's server segfaults) a string of thousands of bounded repetitions."""
    text: dict[str, Any] = {"type": "string", "minLength": 20}
    query: dict[str, Any] = {"type": "string", "minLength": 8}
    if max_text is not None:
        text["maxLength"] = max_text
    if max_query is not None:
        query["maxLength"] = max_query
    neg = {
        "type": "object",
        "properties": {"similarity_level": {"type": "string", "enum": list(LEVELS)}, "text": text},
        "required": ["similarity_level", "text"],
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {
            "query": query,
            "positive_example": text,
            "hard_negative_examples": {"type": "array", "items": neg, "minItems": 4, "maxItems": 4},
        },
        "required": ["query", "positive_example", "hard_negative_examples"],
        "additionalProperties": False,
    }


@dataclass(frozen=True)
class RequestParams:
    response_format: dict[str, Any]
    temperature: float
    max_tokens: int

    @classmethod
    def for_model(cls, model: str) -> RequestParams:
        return cls.for_client(model)

    @classmethod
    def for_client(
        cls, client: LLMClient | str, *, max_tokens: int | None = None, temperature: float | None = None
    ) -> RequestParams:
        """The parameters for a client (or a model name): the embedded model and self-hosted
        servers (``client.structured_output``) get the JSON schema, hosted APIs JSON mode;
        ``max_tokens`` / ``temperature`` (None: the defaults) override.

        >>> RequestParams.for_client("gpt-4o", max_tokens=900).max_tokens
        900
        """
        model = client if isinstance(client, str) else client.model
        if model == LOCAL:
            fmt = {"type": "json_schema", "json_schema": {"name": "triplet", "schema": triplet_schema()}}
            params = cls(fmt, LOCAL_TEMPERATURE, LOCAL_MAX_TOKENS)
        elif getattr(client, "structured_output", False):
            schema = triplet_schema(None, None)
            params = cls({"type": "json_schema", "json_schema": {"name": "triplet", "schema": schema}}, TEMPERATURE,
                         MAX_TOKENS)  # fmt: skip
        else:
            params = cls({"type": "json_object"}, TEMPERATURE, MAX_TOKENS)
        return cls(
            params.response_format,
            params.temperature if temperature is None else temperature,
            params.max_tokens if max_tokens is None else max_tokens,
        )

    def key(self) -> str:
        """These parameters as canonical JSON (part of a record's cache name)."""
        return dumps(asdict(self))


# ----------------------------------------------------------------------------- one job
def _add_usage(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    return {k: a.get(k, 0) + b.get(k, 0) for k in ("prompt_tokens", "completion_tokens", "total_tokens")}


async def produce(
    job: Job,
    client: LLMClient,
    params: RequestParams,
    reask: Template | None = None,
    first: Completion | None = None,
) -> tuple[bool, dict[str, Any]]:
    """One job: (True, a triplet record) or (False, a reject record with the raw texts and the
    reason, after one bounded re-ask). Transport failures raise :class:`~mghkit.llm.LLMError` (the
    job stays undone). ``first``: the first answer when already known (from the cache)."""
    kw: dict[str, Any] = {"response_format": params.response_format, "seed": job.request_seed,
                          "temperature": params.temperature, "max_tokens": params.max_tokens}  # fmt: skip
    if first is None:
        first = await client.complete(job.messages, **kw)
    payload, why = parse_triplet(first.text, first.finish_reason)
    usage, cost, reasked, second_text = dict(first.usage), first.cost_usd, False, None
    if why is not None:
        second = await client.complete(reask_messages(job, why, reask), **kw)
        usage, cost, reasked, second_text = _add_usage(usage, second.usage), cost + second.cost_usd, True, second.text
        payload, why2 = parse_triplet(second.text, second.finish_reason)
        if why2 is not None:
            why = RejectReason(code=why2.code, field=why2.field,
                               detail=f"{describe(why)}; after one re-ask: {describe(why2)}")  # fmt: skip
    meta = job_meta(job, client, usage, cost, reasked)
    if payload is None:
        assert why is not None
        return False, make_reject(job, why, raw=first.text, raw_reask=second_text, meta=meta)
    return True, make_triplet(job, payload, meta)


def reask_messages(job: Job, why: RejectReason, reask: Template | None = None) -> Messages:
    """The re-ask: the first prompt again, followed by what was wrong with the first reply - not
    the reply itself (often a long loop or a cut-off text), so the re-ask is barely longer than the
    first prompt and fits wherever that one did (a 2,048-token server context included)."""
    note = (reask or job.prompt.reask).render(reason=describe(why))
    return [{"role": "user", "content": job.messages[0]["content"].rstrip() + "\n\n" + note}]


def job_meta(job: Job, client: LLMClient, usage: dict[str, int], cost: float, reasked: bool) -> dict[str, Any]:
    """The provenance of a record: model, prompt sha, seed, usage, cost, attributes, re-asked."""
    return {"model": client.model, "prompt_sha": job.prompt_sha, "seed": job.seed, "usage": usage,
            "cost_usd": round(cost, 8), "attributes": job.attributes, "reasked": reasked}  # fmt: skip


def make_triplet(job: Job, payload: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
    """The triplet record (the file format; ``Triplet.model_validate`` reads it) for a payload that
    :func:`check_triplet` has already checked - built as a plain dict because this is the hot path
    of a warm-cache rerun."""
    return {"id": job.id, "task_id": job.task.id, "kind": job.task.kind, "instruction": job.task.task.strip(),
            "query": payload["query"], "positive_example": payload["positive_example"],
            "hard_negative_examples": payload["hard_negative_examples"], "meta": meta}  # fmt: skip


def make_reject(
    job: Job, reason: RejectReason, *, raw: str, raw_reask: str | None = None, meta: dict[str, Any]
) -> dict[str, Any]:
    """The reject record (the :class:`~mghkit.schema.Reject` file format, ``stage="generate"``)."""
    return Reject(stage="generate", id=job.id, reasons=[reason], task_id=job.task.id, kind=job.task.kind, raw=raw,
                  raw_reask=raw_reask, meta=meta).to_json()  # fmt: skip


def estimate_completion_tokens(attrs: dict[str, str]) -> int:
    """A rough size of one reply: six texts at the drawn lengths, ~1.4 tokens a word.

    >>> estimate_completion_tokens({"query_length": "less than 5 words long", "doc_length": "about 100 words long"})
    797
    """

    def words(s: str) -> int:
        nums = [int(n) for n in re.findall(r"\d+", s)]
        return max(nums) if nums else 20

    return int((words(attrs["query_length"]) + 5 * words(attrs["doc_length"])) * 1.4) + 90

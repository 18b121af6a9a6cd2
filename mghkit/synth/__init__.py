"""MGH synthesis (docs/method.md section 1): stage 1 ``brainstorm`` (tasks) and stage 2
``generate`` (graded triplets).

Both take the LLM as a model name or as any client object (:class:`mghkit.llm.LLMClient`), so a
notebook or a test can drive them with anything that answers; both return typed records with
the run's stats. The modules: :mod:`~mghkit.synth.brainstorm` and :mod:`~mghkit.synth.tasks`
(stage 1), :mod:`~mghkit.synth.generate`, :mod:`~mghkit.synth.triplets` and
:mod:`~mghkit.synth.replay` (stage 2), :mod:`~mghkit.synth.attributes` (per-request draws),
:mod:`~mghkit.synth.extract` (JSON out of a reply), :mod:`~mghkit.synth.report` (usage,
estimates, progress).
"""

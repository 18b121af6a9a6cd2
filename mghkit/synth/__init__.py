"""MGH synthesis: stage 1 ``brainstorm`` (tasks) and stage 2 ``generate`` (graded triplets).

Both are functions over records with the LLM client passed in (:class:`mghkit.llm.LLMClient`),
so a notebook or a test can drive them with any client that answers.
"""

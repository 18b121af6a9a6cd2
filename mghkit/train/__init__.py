"""Contrastive fine-tuning: the InfoNCE loss, GradCache, cross-process negatives and the loop.

``run.fine_tune`` (``mghkit.fine_tune``) is the public door the CLI calls; ``args`` holds the
arguments and their replay, ``data`` the training file and the plan of steps, ``loop`` the run,
``rundir`` what a run dir holds, ``lora`` the trainable encoder, ``checkpoint`` exact resume.
``loss`` and ``gradcache`` are pure torch helpers (no model code). Heavy libraries are imported
by the submodules, not here.
"""

"""Contrastive fine-tuning: the InfoNCE loss, GradCache, cross-process negatives and the loop.

``loss`` and ``gradcache`` are pure torch helpers (no model code); ``loop.train`` is the one entry
point the CLI calls. Heavy libraries are imported by the submodules, not here.
"""

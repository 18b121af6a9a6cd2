"""The embedding model: loading (ids, ``local``, run dirs), the encoder, pure pooling functions.

Import the submodules (``mghkit.model.encoder`` etc.); this package itself imports nothing heavy.
"""

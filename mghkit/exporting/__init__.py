"""``mghkit.export``: a run dir -> a sentence-transformers or plain transformers model dir.

``run.py`` writes the export, ``card.py`` its model card, ``mghkit_st.py`` is the module file
shipped inside (it must import without mghkit).
"""

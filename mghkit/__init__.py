"""mghkit: multi-granularity hard negatives and anchor-token-aware pooling for LLM embedders."""

__version__ = "0.1.0"

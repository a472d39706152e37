"""Corpus builders, one module per family; each module registers its models on import."""

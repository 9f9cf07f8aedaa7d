"""The EmbeddingService: word vectors, item text vectors, topics and similar items."""

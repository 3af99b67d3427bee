"""Data: pre-training corpora, GLUE and SQuAD."""

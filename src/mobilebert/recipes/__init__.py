"""Recipes: each puts the pieces together for one command and reads top to bottom."""

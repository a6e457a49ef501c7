"""Recipes: countersign's Python client inside agent frameworks' tools (the README shows each file
whole; tests/client/test_recipes.py runs them against a served countersign)."""

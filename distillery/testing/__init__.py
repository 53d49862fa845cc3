"""Test doubles and generated test data, kept out of the services' production packages.

- :mod:`distillery.testing.labelled` — labelled articles whose scores are learnable from the text (tests,
  demos, smoke benchmarks).
- :mod:`distillery.testing.fake_provider` — a strict local stand-in for the paid LLM APIs (OpenAI, Anthropic,
  Gemini wire formats, rate windows, faults, its own bill) for tests, benchmarks and offline demos
  (``python -m distillery.testing.fake_provider``).
"""

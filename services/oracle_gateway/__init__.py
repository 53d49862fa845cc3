"""The oracle gateway: multi-provider LLM labelling with rate limits, retries, cache, costs and budgets."""

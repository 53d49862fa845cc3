"""Run the services as local processes (demo, `distillery up`, integration tests)."""

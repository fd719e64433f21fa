"""The deploy hook: migrations and the first keys, run by a CDK trigger on every deploy (`handler`), and the
bootstrap sequence it shares with the embedded stack and `orchestrator db upgrade` (`bootstrap`)."""

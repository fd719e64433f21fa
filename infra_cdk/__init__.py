"""The CDK app: one construct per concern (network, data, messaging, state, api, consumers, workers, schedules, observability)."""

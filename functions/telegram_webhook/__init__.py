"""The Telegram webhook: checks the secret, drops duplicates, queues the update, answers at once."""

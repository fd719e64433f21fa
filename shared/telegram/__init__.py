"""What several functions share about Telegram: the one Bot API client, its settings, message
texts (split at 4096) and the update intake of the webhook and the long poller. No aiogram here."""

ALLOWED_UPDATES = ["message", "callback_query"]
"""What the bot handles (text and commands; presses of its inline buttons): Telegram sends nothing
else, polling and webhook alike."""

"""The progress notifier: progress:events -> one Telegram status message per task, edited in place,
and one final message with the outcome."""

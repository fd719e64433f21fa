"""The Telegram bot: consumes `telegram:updates` with an aiogram 3 Dispatcher (see handler.py)."""

"""The Product Owner: one conversational agent per person, reached through Telegram."""

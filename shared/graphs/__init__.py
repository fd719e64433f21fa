"""Durable LangGraph graphs driven by queue messages: the driver, the checkpointers and their settings,
shared by the engineering and deploy functions."""

"""One package per Lambda function; each has a thin handler.py over plain logic."""

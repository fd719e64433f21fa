"""Message text every sender shares: plain text (no parse mode), cut to Telegram's limit."""

from __future__ import annotations

MAX_MESSAGE_CHARS = 4096
"""Telegram's limit for one message's text."""


def split_text(text: str, limit: int = MAX_MESSAGE_CHARS) -> list[str]:
    """Pieces of at most `limit` characters, cut at a line break (else a space) where one is near."""
    if limit < 2:
        raise ValueError("limit must be at least 2")
    text = text.strip() or "(empty)"
    pieces: list[str] = []
    while len(text) > limit:
        window = text[:limit]
        cut = window.rfind("\n")
        if cut < limit // 2:
            cut = window.rfind(" ")
        if cut < limit // 2:
            cut = limit
        piece, text = text[:cut].rstrip(), text[cut:].lstrip()
        if piece:
            pieces.append(piece)
    if text:
        pieces.append(text)
    return pieces

"""What an image is, by its bytes: the one place that reads magic numbers."""

from __future__ import annotations

from typing import Literal

ImageFormat = Literal["png", "jpeg", "webp"]
SNIFF_BYTES = 16  # how many leading bytes sniff_image needs


def sniff_image(head: bytes) -> ImageFormat | None:
    """PNG, JPEG or WebP by magic bytes (the formats GPT Image accepts), else None. Never trust
    a file name, a URL or a Content-Type for this."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return None

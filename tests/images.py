"""The one image factory of the tests: real encoded images, as small as a test allows."""

from __future__ import annotations

import io

from PIL import Image

PIL_FORMATS = {"png": "PNG", "jpeg": "JPEG", "jpg": "JPEG", "webp": "WEBP", "gif": "GIF", "bmp": "BMP"}


def image_bytes(
    fmt: str = "png", size: tuple[int, int] = (8, 8), color: tuple[int, int, int] = (200, 30, 30)
) -> bytes:
    """An image of one colour, encoded as `fmt` (png, jpeg, webp; gif and bmp for refusals)."""
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, PIL_FORMATS[fmt.lower()])
    return buffer.getvalue()

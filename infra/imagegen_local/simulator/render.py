"""Fast, deterministic placeholder images that differ visibly per prompt and per image index.

Everything is drawn with whole-image Pillow operations (gradients, shapes, text); a
1536x1024 render plus encode stays around 0.1 s, so the simulator can serve load tests.
"""

from __future__ import annotations

import hashlib
import io
import random
import textwrap
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urlsplit

import httpx
from PIL import Image, ImageDraw, ImageFont, ImageOps

SIZES_BY_ASPECT: dict[str, tuple[int, int]] = {
    "1:1": (1024, 1024),
    "3:2": (1536, 1024),
    "2:3": (1024, 1536),
}
CONTENT_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
_PIL_FORMATS = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}

MAX_INPUT_BYTES = 50 * 1024 * 1024
INPUT_FETCH_TIMEOUT = 10.0


class InputImageError(Exception):
    """An input image could not be fetched or decoded."""


@dataclass(frozen=True)
class RenderSpec:
    prompt: str
    size: tuple[int, int]  # (width, height)
    output_format: str  # png | jpeg | webp
    transparent: bool = False
    quality: str = "auto"
    compression: int | None = None  # 0-100, jpeg/webp only


def render_image(spec: RenderSpec, index: int, source: Image.Image | None = None) -> bytes:
    """Render image number `index` for `spec`; with `source` the result is an edit of it."""
    rng = random.Random(_seed(spec.prompt, index))
    if source is None:
        image = _generated_background(spec.size, rng)
    else:
        image = _edited_background(source, spec.size, rng)
    _draw_caption(image, spec, index, edited=source is not None)
    if spec.transparent:
        image.putalpha(_subject_mask(spec.size))
    return encode(image, spec.output_format, spec.compression)


def encode(image: Image.Image, output_format: str, compression: int | None = None) -> bytes:
    if output_format == "jpeg" and image.mode != "RGB":
        image = image.convert("RGB")  # JPEG has no alpha channel
    buffer = io.BytesIO()
    if output_format == "png":
        # Level 1 is ~3x faster than the default and these images compress well anyway.
        image.save(buffer, "PNG", compress_level=1)
    elif output_format == "jpeg":
        image.save(buffer, "JPEG", quality=compression if compression is not None else 90)
    else:
        # method=2 trades a little size for a much faster encode than the default (4).
        image.save(buffer, "WEBP", quality=compression if compression is not None else 80, method=2)
    return buffer.getvalue()


def decode_image(data: bytes) -> Image.Image:
    """Decode fully now so truncated or bogus files fail here, not halfway through a render."""
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except Exception as error:  # Pillow raises many types for bad input
        raise InputImageError(f"not a decodable image: {error}") from error
    return image


def fetch_input_image(url: str) -> Image.Image:
    """Download an input image (presigned S3 URLs on loopback in practice)."""
    if urlsplit(url).scheme not in ("http", "https"):
        raise InputImageError(f"unsupported URL scheme: {url}")
    try:
        # trust_env=False: proxy variables must not reroute loopback URLs.
        with httpx.Client(timeout=INPUT_FETCH_TIMEOUT, follow_redirects=True, trust_env=False) as client:
            response = client.get(url)
    except httpx.HTTPError as error:
        raise InputImageError(f"fetching {url} failed: {error}") from error
    if response.status_code != 200 or len(response.content) > MAX_INPUT_BYTES:
        raise InputImageError(f"fetching {url} answered {response.status_code}")
    return decode_image(response.content)


def size_for_source(source: Image.Image) -> tuple[int, int]:
    """Pick the supported size closest to the input's aspect ratio (OpenAI's size=auto)."""
    ratio = source.width / source.height
    if ratio > 1.2:
        return SIZES_BY_ASPECT["3:2"]
    if ratio < 1 / 1.2:
        return SIZES_BY_ASPECT["2:3"]
    return SIZES_BY_ASPECT["1:1"]


def _seed(prompt: str, index: int) -> int:
    digest = hashlib.sha256(f"{prompt}\x1f{index}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def _random_color(rng: random.Random) -> tuple[int, int, int]:
    return (rng.randrange(256), rng.randrange(256), rng.randrange(256))


def _generated_background(size: tuple[int, int], rng: random.Random) -> Image.Image:
    gradient = Image.radial_gradient("L") if rng.random() < 0.3 else Image.linear_gradient("L")
    gradient = gradient.transpose(rng.choice(list(Image.Transpose)))  # vary the direction
    gradient = gradient.resize(size, Image.Resampling.BILINEAR)
    image = ImageOps.colorize(gradient, _random_color(rng), _random_color(rng), _random_color(rng))
    draw = ImageDraw.Draw(image, "RGBA")  # RGBA mode blends translucent fills
    width, height = size
    for _ in range(rng.randint(6, 12)):
        x, y = rng.randrange(width), rng.randrange(height)
        extent = rng.randrange(min(size) // 12, min(size) // 3)
        box = (x - extent, y - extent, x + extent, y + extent)
        fill = (*_random_color(rng), rng.randrange(120, 230))
        if rng.random() < 0.5:
            draw.ellipse(box, fill=fill)
        else:
            draw.rectangle(box, fill=fill)
    return image


def _edited_background(source: Image.Image, size: tuple[int, int], rng: random.Random) -> Image.Image:
    """The input cropped to the output size and lightly tinted, so the edit is recognisable."""
    if source.mode in ("RGBA", "LA", "PA") or "transparency" in source.info:
        # Flatten onto white: the colour under fully transparent pixels is arbitrary.
        white = Image.new("RGBA", source.size, (255, 255, 255, 255))
        source = Image.alpha_composite(white, source.convert("RGBA"))
    fitted = ImageOps.fit(source.convert("RGB"), size, Image.Resampling.BILINEAR)
    tint = Image.new("RGB", size, _random_color(rng))
    return Image.blend(fitted, tint, 0.2)


def _subject_mask(size: tuple[int, int]) -> Image.Image:
    """Opaque rounded 'subject' with a fully transparent margin around it."""
    width, height = size
    inset = min(size) // 16
    mask = Image.new("L", size, 0)
    ImageDraw.Draw(mask).rounded_rectangle(
        (inset, inset, width - inset, height - inset), radius=min(size) // 8, fill=255
    )
    return mask


@lru_cache(maxsize=16)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _draw_caption(image: Image.Image, spec: RenderSpec, index: int, edited: bool) -> None:
    width, height = image.size
    margin = min(width, height) // 10  # inside the transparent margin of _subject_mask
    title_size, body_size = max(16, width // 36), max(14, width // 52)
    chars_per_line = max(20, int((width - 2 * margin) / (body_size * 0.55)))
    prompt = " ".join(spec.prompt.split())  # control characters and newlines to spaces
    lines = textwrap.wrap(prompt, width=chars_per_line, max_lines=6, placeholder=" ...")
    footer = f"{'edit' if edited else 'image'} {index + 1} | {width}x{height} | {spec.quality}"

    title_font, body_font = _font(title_size), _font(body_size)
    line_height = int(body_size * 1.3)
    panel_bottom = margin + title_size + 20 + line_height * (len(lines) + 1) + 20
    draw = ImageDraw.Draw(image, "RGBA")
    draw.rectangle((margin - 16, margin - 16, width - margin + 16, panel_bottom), fill=(0, 0, 0, 150))
    draw.text((margin, margin), "imagegen simulator", font=title_font, fill=(255, 255, 255))
    y = margin + title_size + 20
    for line in [*lines, footer]:
        draw.text((margin, y), line, font=body_font, fill=(235, 235, 235))
        y += line_height

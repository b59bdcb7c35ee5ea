"""A small multipart/form-data parser (the stdlib `cgi` module is deprecated and removed in 3.13).

Splits on the boundary by hand instead of using the email package, so binary file parts
come back byte-for-byte.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.message import Message


class MultipartError(ValueError):
    pass


@dataclass(frozen=True)
class FormPart:
    name: str
    filename: str | None
    content_type: str | None
    data: bytes


def parse_form(content_type: str, body: bytes) -> list[FormPart]:
    boundary = _param(content_type, "Content-Type", "boundary")
    if not content_type.lower().startswith("multipart/form-data") or not boundary:
        raise MultipartError("expected multipart/form-data with a boundary")
    delimiter = b"--" + boundary.encode()
    chunks = body.split(delimiter)
    if len(chunks) < 3 or not chunks[-1].startswith(b"--"):
        raise MultipartError("multipart body is not terminated by its closing boundary")
    return [_parse_part(chunk) for chunk in chunks[1:-1]]


def _parse_part(chunk: bytes) -> FormPart:
    # Each part is CRLF, headers, blank line, data, CRLF (the CRLF belongs to the delimiter).
    if not chunk.startswith(b"\r\n") or not chunk.endswith(b"\r\n"):
        raise MultipartError("malformed multipart part")
    head, separator, data = chunk[2:-2].partition(b"\r\n\r\n")
    if not separator:
        raise MultipartError("multipart part without headers")
    headers = dict(
        (key.strip().lower(), value.strip())
        for key, _, value in (line.partition(":") for line in head.decode("utf-8", "replace").split("\r\n"))
    )
    disposition = headers.get("content-disposition", "")
    name = _param(disposition, "Content-Disposition", "name")
    if not name:
        raise MultipartError("multipart part without a name")
    filename = _param(disposition, "Content-Disposition", "filename")
    return FormPart(name, filename, headers.get("content-type"), data)


def _param(header_value: str, header_name: str, param: str) -> str | None:
    message = Message()
    message[header_name] = header_value
    value = message.get_param(param, header=header_name)
    return value if isinstance(value, str) else None

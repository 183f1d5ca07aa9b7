"""Lesson links: a lesson's state as URL query parameters and back, every value checked, and the link's QR code.

A page describes its state as a tuple of fields (:class:`Field`): a parameter name and a parser that
turns the text of the address into a value or raises ``ValueError`` saying what is wrong. :func:`encode`
writes values as parameters; :func:`decode` reads parameters back, keeping the valid ones and turning
every refused or unknown one into a short note, so a tampered link opens the lesson's defaults with a
sentence instead of an exception. Checks that need the image (a region inside it, a slice that exists)
are the page's: the page clamps, as it does for its own widgets.

Examples
--------
>>> fields = (Field("stride", integer(1, 4)), Field("flip", boolean()))
>>> encode(fields, {"stride": 2, "flip": True})
{'stride': '2', 'flip': '1'}
>>> values, notes = decode(fields, {"stride": "9", "flip": "0", "evil": "1"})
>>> values
{'flip': False}
>>> notes
["stride='9' was ignored: must be a whole number from 1 to 4.", "'evil' is not a setting of this lesson and was ignored."]
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import numpy as np

from scans.samples import SAMPLES

MAX_VALUE_LENGTH = 600  # no honest parameter is longer (a 9 x 9 kernel is about 400 characters)
UPLOAD = "upload"  # the ``sample`` of a link made on an uploaded scan, which cannot travel in it
_SHOWN_VALUE_LENGTH = 40  # a refused value is quoted in the note up to this many characters


@dataclass(frozen=True)
class Codec:
    """How one kind of value is read from (``parse``) and written to (``format``) the address."""

    parse: Callable[[str], Any]
    format: Callable[[Any], str]


@dataclass(frozen=True)
class Field:
    """One setting of a lesson: its parameter ``name`` in the address and its :class:`Codec`."""

    name: str
    codec: Codec


def encode(fields: Sequence[Field], values: Mapping[str, Any], defaults: Mapping[str, Any] = None) -> dict[str, str]:
    """The query parameters of ``values`` (field name -> value), in the order of ``fields``.

    None is left out, and so is a value equal to its entry in ``defaults`` (a lesson opens with its
    defaults, so a short link opens the same view and its QR code stays easy to read from afar).
    """
    defaults = defaults or {}
    return {field.name: field.codec.format(values[field.name]) for field in fields
            if values.get(field.name) is not None and not _same(values[field.name], defaults.get(field.name))}


def _same(value, default):
    if default is None:
        return False
    if isinstance(value, np.ndarray) or isinstance(default, np.ndarray):
        return np.shape(value) == np.shape(default) and bool(np.all(np.asarray(value) == np.asarray(default)))
    return value == default


def decode(fields: Sequence[Field], params: Mapping[str, str], *, ignore=()) -> tuple[dict[str, Any], list[str]]:
    """Read ``params`` (name -> text) with ``fields``: the valid values, and one note per refused parameter.

    Parameters named in ``ignore`` (those another part of the page reads) are neither used nor noted.
    Never raises for any text in ``params``.
    """
    by_name = {field.name: field for field in fields}
    values, notes = {}, []
    for name, text in params.items():
        if name in ignore:
            continue
        if name not in by_name:
            notes.append(f"{_shown(name)} is not a setting of this lesson and was ignored.")
            continue
        try:
            if len(text) > MAX_VALUE_LENGTH:
                raise ValueError(f"longer than {MAX_VALUE_LENGTH} characters")
            values[name] = by_name[name].codec.parse(text)
        except (ValueError, TypeError, OverflowError) as error:
            notes.append(f"{name}={_shown(text)} was ignored: {error}.")
    return values, notes


def link(base_url: str, params: Mapping[str, str]) -> str:
    """The address ``base_url`` with ``params`` as its query string."""
    query = urlencode(params, safe=",:;")
    return f"{base_url}?{query}" if query else base_url


def _shown(text):
    text = str(text)
    return repr(text if len(text) <= _SHOWN_VALUE_LENGTH else text[:_SHOWN_VALUE_LENGTH] + "...")


# ---------------------------------------------------------------------------------------------------
# Codecs


def integer(low: int, high: int) -> Codec:
    """A whole number from ``low`` to ``high``."""
    def parse(text):
        if not re.fullmatch(r"-?\d{1,9}", text.strip()):
            raise ValueError(f"must be a whole number from {low} to {high}")
        number = int(text)
        if not low <= number <= high:
            raise ValueError(f"must be a whole number from {low} to {high}")
        return number
    return Codec(parse, lambda number: str(int(number)))


def number(low: float, high: float) -> Codec:
    """A finite number from ``low`` to ``high``, written as the shortest text that reads back the same float."""
    def parse(text):
        value = _finite(text)
        if not low <= value <= high:
            raise ValueError(f"must be a number from {low:g} to {high:g}")
        return value
    return Codec(parse, _float_text)


def boolean() -> Codec:
    """On or off, written 1 or 0."""
    def parse(text):
        if text not in ("0", "1"):
            raise ValueError("must be 0 or 1")
        return text == "1"
    return Codec(parse, lambda value: "1" if value else "0")


def choice(options: Mapping[str, Any] | Sequence[str]) -> Codec:
    """One of ``options``: a sequence of names, or a mapping name in the address -> value in the lesson."""
    table = dict(options) if isinstance(options, Mapping) else {name: name for name in options}
    reverse = {value: name for name, value in table.items()}

    def parse(text):
        if text not in table:
            raise ValueError("must be one of " + ", ".join(table))
        return table[text]
    return Codec(parse, lambda value: reverse[value])


def whole_numbers(count: int, low: int = 0, high: int = 100_000) -> Codec:
    """``count`` whole numbers from ``low`` to ``high``, separated by commas (e.g. a box "row,col,h,w")."""
    def parse(text):
        parts = text.split(",")
        if len(parts) != count or not all(re.fullmatch(r"-?\d{1,9}", part.strip()) for part in parts):
            raise ValueError(f"must be {count} whole numbers separated by commas")
        numbers = tuple(int(part) for part in parts)
        if not all(low <= value <= high for value in numbers):
            raise ValueError(f"each number must be from {low} to {high}")
        return numbers
    return Codec(parse, lambda numbers: ",".join(str(int(value)) for value in numbers))


def whole_number_list(low: int, high: int, *, at_most: int) -> Codec:
    """1 to ``at_most`` different whole numbers from ``low`` to ``high``, separated by commas (e.g. kernel indices)."""
    def parse(text):
        parts = text.split(",")
        if not all(re.fullmatch(r"\d{1,9}", part.strip()) for part in parts):
            raise ValueError("must be whole numbers separated by commas")
        numbers = tuple(int(part) for part in parts)
        if not 1 <= len(numbers) <= at_most or len(set(numbers)) != len(numbers):
            raise ValueError(f"must be 1 to {at_most} different numbers")
        if not all(low <= value <= high for value in numbers):
            raise ValueError(f"each number must be from {low} to {high}")
        return numbers
    return Codec(parse, lambda numbers: ",".join(str(int(value)) for value in numbers))


def grid(max_size: int, limit: float) -> Codec:
    """A grid of numbers (a kernel): rows separated by ";", values by ","; 1 to ``max_size`` on each side.

    Values are float32, as the engine uses them, written exactly (shortest round-trip text).
    """
    def parse(text):
        rows = [row.split(",") for row in text.split(";")]
        if not 1 <= len(rows) <= max_size or not 1 <= len(rows[0]) <= max_size:
            raise ValueError(f"must be a grid of 1 to {max_size} rows and columns")
        if any(len(row) != len(rows[0]) for row in rows):
            raise ValueError("every row must have the same number of values")
        values = np.array([[_finite(value) for value in row] for row in rows], dtype=np.float64)
        if np.any(np.abs(values) > limit):
            raise ValueError(f"every value must be from {-limit:g} to {limit:g}")
        return values.astype(np.float32)

    def format_grid(values):
        return ";".join(",".join(_float32_text(value) for value in row) for row in np.asarray(values, np.float32))
    return Codec(parse, format_grid)


def names(options: Sequence[str], *, at_most: int) -> Codec:
    """1 to ``at_most`` distinct names from ``options``, separated by commas."""
    allowed = set(options)

    def parse(text):
        chosen = [name.strip() for name in text.split(",")]
        unknown = [name for name in chosen if name not in allowed]
        if unknown:
            raise ValueError(f"unknown name {_shown(unknown[0])}")
        if not 1 <= len(chosen) <= at_most or len(set(chosen)) != len(chosen):
            raise ValueError(f"must name 1 to {at_most} different ones")
        return tuple(chosen)
    return Codec(parse, lambda chosen: ",".join(chosen))


def record(parts: Sequence[tuple[str, Codec]], separator: str = ":") -> Codec:
    """Several values in one parameter, ``separator`` between them (e.g. a stage of a stack); a dict of them.

    The parts' own texts must not contain ``separator``.
    """
    def parse(text):
        pieces = text.split(separator)
        if len(pieces) != len(parts):
            raise ValueError(f"must have {len(parts)} parts separated by '{separator}' "
                             f"({separator.join(name for name, _ in parts)})")
        values = {}
        for (name, codec), piece in zip(parts, pieces):
            try:
                values[name] = codec.parse(piece)
            except ValueError as error:
                raise ValueError(f"its {name} {error}") from None
        return values
    return Codec(parse, lambda values: separator.join(codec.format(values[name]) for name, codec in parts))


def _finite(text):
    text = text.strip()
    if not re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d{1,3})?", text):
        raise ValueError(f"{_shown(text)} is not a number")
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


def _float_text(value):
    return repr(float(value))


def _float32_text(value):
    return np.format_float_positional(np.float32(value), unique=True, trim="-")


# ---------------------------------------------------------------------------------------------------
# The image every lesson starts from


SAMPLE_SLUGS = {sample.filename.rsplit(".", 1)[0]: sample.name for sample in SAMPLES}


def image_fields() -> tuple[Field, ...]:
    """The sample, the slice of a volume (1-based, as the slider shows it) and the grey-level window."""
    samples = {**SAMPLE_SLUGS, UPLOAD: UPLOAD}
    return (Field("sample", choice(samples)), Field("slice", integer(1, 100_000)),
            Field("level", number(-1e7, 1e7)), Field("width", number(1e-9, 1e7)))


# ---------------------------------------------------------------------------------------------------
# QR code


def qr_matrix(text: str) -> np.ndarray:
    """The QR code of ``text`` as a bool array (n, n), True for a dark module, without the quiet zone.

    Error correction level M (15 % of the code may be smudged). segno is pure Python: no network.
    """
    import segno  # imported here: only the link panel needs it

    code = segno.make(text, error="m", micro=False, boost_error=False)
    return np.array([list(row) for row in code.matrix], dtype=bool)

"""Numbers typed on the command line ("64,128,128", "10", "20,10,5"): one parser and the named uses of it.

Values are separated by commas or spaces. A bad value is an `InputError` that names the option and
says what it must be, so the CLI reports it as one line. Only the count, integer-ness and sign are
checked here; the library checks what the values mean (a voxel size's range, a point inside a volume).
"""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import InputError

_WORDS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six"}


def _description(counts: Sequence[int], integer: bool, positive: bool, meaning: str) -> str:
    """ "must be three comma-separated positive integers Z,Y,X" and the like."""
    how_many = " or ".join(_WORDS.get(c, str(c)) for c in counts)
    noun = ("integer" if integer else "number") + ("s" if max(counts) > 1 else "")
    kind = f"positive {noun}" if positive else noun
    separated = " comma-separated" if max(counts) > 1 else ""
    return f"must be {how_many}{separated} {kind}" + (f" {meaning}" if meaning else "")


def parse_numbers(text: str, option: str, counts: Sequence[int], integer: bool = False, positive: bool = False,
                  meaning: str = "", expected: str | None = None) -> tuple[float, ...]:
    """Parse comma- or space-separated numbers, e.g. "64,128,128".

    Args:
        text: what the user typed.
        option: the option's name for the error message, e.g. "--shape".
        counts: the accepted numbers of values, e.g. (3,) or (1, 3).
        integer: accept whole numbers written as integers only ("10", not "10.0"); the values are then ints.
        positive: accept values > 0 only.
        meaning: what the values are, ending the error's description, e.g. "z,y,x in voxels".
        expected: the error's whole description after the option name, where the one built from the
            arguments above does not fit (e.g. "needs 3 comma-separated numbers").

    Returns:
        the values in the order typed.

    Raises:
        InputError: "{option} must be ... , got '{text}'".
    """
    convert = int if integer else float
    try:
        values = tuple(convert(v) for v in text.replace(" ", ",").split(",") if v)
    except ValueError:
        values = ()
    if len(values) not in counts or (positive and not all(v > 0 for v in values)):
        description = expected if expected is not None else _description(counts, integer, positive, meaning)
        raise InputError(f"{option} {description}, got {text!r}")
    return values


def parse_voxel_size(text: str, option: str = "--voxel-size") -> float | tuple[float, float, float]:
    """ "10" (isotropic) or "20,10,5" (z, y, x), in Å."""
    values = parse_numbers(text, option, (1, 3), meaning="(z,y,x) in Å")
    return values[0] if len(values) == 1 else (values[0], values[1], values[2])


def parse_point(text: str, option: str = "--point") -> tuple[float, float, float]:
    """ "z,y,x" in voxels."""
    z, y, x = parse_numbers(text, option, (3,), meaning="z,y,x in voxels")
    return z, y, x


def parse_shape(text: str, option: str = "--shape") -> tuple[int, int, int]:
    """ "Z,Y,X": a volume's size in voxels, three positive integers."""
    z, y, x = parse_numbers(text, option, (3,), integer=True, positive=True, meaning="Z,Y,X")
    return int(z), int(y), int(x)

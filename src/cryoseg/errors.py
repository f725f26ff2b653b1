"""Typed exceptions for bad input. The CLI turns them into one line on stderr and a non-zero exit."""

from __future__ import annotations


class CryosegError(Exception):
    """Base class of every error cryoseg raises on purpose."""


class InputError(CryosegError, ValueError):
    """The input (file, array, prompt, option) is not usable as given."""


class CorruptFileError(InputError):
    """A file exists but cannot be read: truncated, corrupt, or not the format its name says."""


class UnsupportedFormatError(InputError):
    """The file extension or format is not one cryoseg reads or writes."""


class OverwriteInputError(CryosegError, FileExistsError):
    """An output path points at one of the inputs; inputs are never overwritten."""


class UnknownModelError(CryosegError, KeyError):
    """A model name is not in the registry."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it one plain line
        return str(self.args[0]) if self.args else ""


class WeightsNotFoundError(CryosegError, FileNotFoundError):
    """A registered model's weights are not on this machine."""


class MissingDependencyError(CryosegError, ImportError):
    """An optional package a feature needs is not installed; the message says which extra to install."""

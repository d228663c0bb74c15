"""Errors of the job image; each maps to one exit code or one failed-item result."""

from __future__ import annotations

from jobcontract.records import ExitCode


class JobImageError(Exception):
    """Base of every error raised by `jobimage`."""

    exit_code = ExitCode.RETRYABLE
    code = "internal_error"


class SetupError(JobImageError):
    """The pod cannot work at all (model folder, manifest, settings); retrying will not help."""

    exit_code = ExitCode.BAD_SETUP
    code = "bad_setup"


class ModelFolderError(SetupError):
    """The model folder is missing or incomplete."""

    code = "model_missing"


class ValidationError(JobImageError):
    """An item's inputs are invalid; its result says which field and value."""

    exit_code = ExitCode.BAD_ITEM
    code = "invalid_input"

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class EncodeError(JobImageError):
    """ffmpeg failed to write the MP4."""

    code = "encode_failed"


class SyncError(JobImageError):
    """`t2v model sync` could not fetch or verify a file."""

    code = "sync_failed"

"""Errors of the job contract and object storage."""


class ContractError(Exception):
    """Base of every error raised by `jobcontract`."""


class StorageError(ContractError):
    """Object storage refused or failed an operation."""


class StorageUnavailable(StorageError):
    """Object storage could not be reached; retrying later may help."""


class ObjectNotFound(StorageError):
    """No object under the given key."""

    def __init__(self, key: str) -> None:
        super().__init__(f"no object at key {key!r}")
        self.key = key


class ManifestError(ContractError):
    """A dispatch manifest or record does not have the expected shape."""

"""The one exception hierarchy of shopseg.

Every error a user can cause derives from :class:`ShopsegError`; the CLI turns it into a one-paragraph
message and exit code 2, the API into one JSON shape. Anything else that escapes is a bug.

::

    ShopsegError
    ├── InputError            the data given to shopseg is unusable
    │   ├── SchemaError       columns missing, unmappable or of the wrong kind
    │   ├── DataError         the values are unusable (empty file, no customer ids, bad encoding …)
    │   └── NotFoundError     an id (customer, segment, product) or run folder that does not exist
    ├── ConfigError           a setting, flag or config file is wrong
    ├── NotFittedError        a model is used before it was fitted, or a saved model does not fit the data
    ├── BackendError          the SQL engine failed or is not installed
    └── IntegrityError        an internal invariant broke (e.g. rows lost between steps): always a bug
"""

from __future__ import annotations


class ShopsegError(Exception):
    """Root of every error shopseg raises on purpose."""


class InputError(ShopsegError):
    """The input data cannot be used as given."""


class SchemaError(InputError):
    """A column is missing, cannot be mapped, or has the wrong kind of values."""


class DataError(InputError):
    """The values in the input are unusable (empty, undecodable, no customers …)."""


class NotFoundError(InputError):
    """An id (customer, segment, product) or a run folder that the given run does not have."""


class ConfigError(ShopsegError):
    """A setting, command-line flag or config file is wrong."""


class NotFittedError(ShopsegError):
    """A model was used before fitting, or a saved model does not match the data."""


class BackendError(ShopsegError):
    """The SQL engine failed, or an optional engine is not installed."""


class IntegrityError(ShopsegError):
    """An invariant that shopseg guarantees was broken: please report it as a bug."""

"""Errors a user can cause. The CLI prints their message on one line and exits 2."""


class UserError(Exception):
    """A mistake in what the user asked for; the message names the input and the fix."""


class TargetError(UserError):
    """An unknown or malformed target."""


class WorkloadError(UserError):
    """An unknown or malformed workload key."""


class RecordsError(UserError):
    """A records directory or file that cannot be used."""


class ConfigError(UserError):
    """A configuration that does not belong to its schedule space."""

"""Errors that name what went wrong in the user's terms."""


class NonFiniteError(FloatingPointError):
    """A model, gradient or projection holds NaN or Inf."""

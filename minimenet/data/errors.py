"""What goes wrong with a dataset: the error and warning every data module raises, and how an
error message lists the files (or arrays) concerned."""

_EXAMPLES_SHOWN = 5


class DatasetError(ValueError):
    """A dataset folder, split or list that cannot be used as it is."""


class DatasetWarning(UserWarning):
    """Something in a dataset was left out or repaired; loading goes on."""


def examples_of(names):
    """The first few names in sorted order, and how many more there are."""
    names = sorted(names)
    shown = ", ".join(names[:_EXAMPLES_SHOWN])
    return shown + (f" and {len(names) - _EXAMPLES_SHOWN} more" if len(names) > _EXAMPLES_SHOWN else "")

"""What goes wrong with a dataset: the error and warning every data module raises, and how
they list the files concerned."""

_EXAMPLES_SHOWN = 5


class DatasetError(ValueError):
    """A dataset folder, split or list that cannot be used as it is."""


class DatasetWarning(UserWarning):
    """Something in a dataset was left out or repaired; loading goes on."""


def examples_of(names):
    names = sorted(names)
    shown = ", ".join(names[:_EXAMPLES_SHOWN])
    return shown + (", ..." if len(names) > _EXAMPLES_SHOWN else "")

"""``python -m claptune ...``: the same as the ``claptune`` console script."""

from claptune.cli import entry_point

if __name__ == "__main__":
    entry_point()

"""The ``latefill`` command: the Rust command line, from the compiled extension."""

import sys

from . import _latefill


def main() -> None:
    sys.exit(_latefill.main(sys.argv))


if __name__ == "__main__":
    main()

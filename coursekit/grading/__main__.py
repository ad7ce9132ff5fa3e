"""Bulk grading from the command line (see coursekit.grading.bulk)::

python -m coursekit.grading PATHS... [--json F] [--csv F] [--timeout S] [--jobs N] [--seed N]
"""

import sys

from coursekit.grading.bulk import main

if __name__ == "__main__":
    sys.exit(main())

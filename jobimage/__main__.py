"""`python -m jobimage`: the job pod's command."""

import sys

from jobimage.entrypoint import main

sys.exit(main())

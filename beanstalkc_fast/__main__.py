"""``python -m beanstalkc_fast``: the operator command line (see ``cli``)."""

import sys

from beanstalkc_fast.cli import main

sys.exit(main())

import sys

from leaky.cli import main

sys.exit(main())

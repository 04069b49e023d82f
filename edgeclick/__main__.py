import sys

from edgeclick.cli import main

sys.exit(main())

import sys

from ticketlab.cli import main

sys.exit(main())

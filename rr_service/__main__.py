import sys

from rr_service.app.cli import main

sys.exit(main())

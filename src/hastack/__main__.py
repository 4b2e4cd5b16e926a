import sys

from hastack.cli.main import main

sys.exit(main())

import sys

from faceid.cli.main import main

sys.exit(main())

import sys

from faceid.cli import main

sys.exit(main())

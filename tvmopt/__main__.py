import sys

from tvmopt.cli.main import main

sys.exit(main())

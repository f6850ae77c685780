import sys

from districtpulse.cli import main

sys.exit(main())

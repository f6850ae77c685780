import sys

from districtpulse.services.cli import main

sys.exit(main())

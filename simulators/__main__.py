import sys

from simulators.cli import main

sys.exit(main(sys.argv[1:]))

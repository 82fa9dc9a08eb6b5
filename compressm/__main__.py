import sys

from compressm.cli import main

sys.exit(main())

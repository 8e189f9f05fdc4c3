import sys

from streamvid.cli import main

sys.exit(main())

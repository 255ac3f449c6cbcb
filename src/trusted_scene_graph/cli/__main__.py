import sys

from trusted_scene_graph.cli import main

sys.exit(main())

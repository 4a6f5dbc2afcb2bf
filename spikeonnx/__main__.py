import sys

from spikeonnx.cli import main

sys.exit(main())

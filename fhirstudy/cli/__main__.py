"""``python -m fhirstudy.cli``: the ``fhirstudy`` command."""
import sys

from fhirstudy.cli.main import main

sys.exit(main())

"""
misc/sample_generator.py: random tuples the TCP port accepts.
"""

import importlib.util
import io
import json
import os
from contextlib import redirect_stdout

from twisted.trial.unittest import SynchronousTestCase

from server.core.model import Limits
from server.receivers.parse_tuple import parse_line

_PATH = os.path.join(os.path.dirname(__file__), "..", "..", "misc", "sample_generator.py")


def _load():
    spec = importlib.util.spec_from_file_location("sample_generator", _PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class SampleGeneratorTests(SynchronousTestCase):
    if not os.path.exists(_PATH):
        skip = "misc/ is not installed with the package: these run from a checkout"

    def test_default_count_and_range(self):
        """It prints 20 valid tuples with timestamps in the last 7 days."""
        generator = _load()
        out = io.StringIO()
        with redirect_stdout(out):
            self.assertEqual(generator.main(["--seed", "1"]), 0)
        lines = out.getvalue().splitlines()
        self.assertEqual(len(lines), 20)
        now = __import__("time").time()
        for line in lines:
            parsed = parse_line(line.encode(), Limits())
            ts = json.loads(line)[1]
            self.assertTrue(now - 7 * 86400 <= ts <= now)
            self.assertEqual(len(parsed.items), 1)

    def test_count_argument(self):
        """The first argument sets how many tuples."""
        self.assertEqual(len(_load().generate(5, seed=2)), 5)

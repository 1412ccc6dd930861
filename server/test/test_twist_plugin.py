"""
The twist plugin (twisted/plugins/simplestats_plugin.py): found by Twisted's
plugin discovery, and its flags checked as the server's own are.
"""

from twisted.application.service import IServiceMaker
from twisted.plugin import getPlugins
from twisted.python.usage import UsageError
from twisted.trial.unittest import SynchronousTestCase

from server.settings import SettingsError, load


def plugin():
    (maker,) = [p for p in getPlugins(IServiceMaker) if p.tapname == "simplestats"]
    return maker


class TwistPluginTests(SynchronousTestCase):
    def test_discovered(self):
        """Twisted's plugin discovery finds exactly one simplestats service maker."""
        self.assertEqual(plugin().tapname, "simplestats")

    def test_bad_value_is_a_usage_error(self):
        """A bad value is a UsageError carrying the server's own message."""
        with self.assertRaises(SettingsError) as own:
            load(["--tcp-port", "abc"])
        with self.assertRaises(UsageError) as error:
            plugin().options().parseOptions(["--tcp-port", "abc"])
        self.assertEqual(str(error.exception), "bad setting: %s" % (own.exception,))

    def test_help_prints_percent_once(self):
        """twist simplestats --help prints a help text's percent sign once, as python -m server.main --help does."""
        text = " ".join(str(plugin().options()).split())
        self.assertIn("within 1.6 % standard error", text)
        self.assertNotIn("%%", text)

    def test_bad_number_says_what_is_expected(self):
        """--tcp-port abc under twist says what the flag takes in plain words, the value once."""
        with self.assertRaises(UsageError) as error:
            plugin().options().parseOptions(["--tcp-port", "abc"])
        self.assertEqual(str(error.exception), "bad setting: --tcp-port: must be a whole number"
                                               " from 0 to 65535, got 'abc'")

    def test_settings_from_flags(self):
        """Values and switches alone (--move-corrupt-aside) become the settings, the rest default."""
        data = self.mktemp()
        options = plugin().options()
        options.parseOptions(["--tcp-port", "0", "--data-dir", data, "--move-corrupt-aside"])
        expected = load(["--tcp-port", "0", "--data-dir", data, "--move-corrupt-aside"])
        self.assertEqual(options.settings, expected)
        self.assertTrue(options.settings.move_corrupt_aside)
        self.assertFalse(options.settings.accept_missing_data)

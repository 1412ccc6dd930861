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

    def test_settings_from_flags(self):
        """Values and switches alone (--move-corrupt-aside) become the settings, the rest default."""
        data = self.mktemp()
        options = plugin().options()
        options.parseOptions(["--tcp-port", "0", "--data-dir", data, "--move-corrupt-aside"])
        expected = load(["--tcp-port", "0", "--data-dir", data, "--move-corrupt-aside"])
        self.assertEqual(options.settings, expected)
        self.assertTrue(options.settings.move_corrupt_aside)
        self.assertFalse(options.settings.accept_missing_data)

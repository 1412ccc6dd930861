"""
Settings: defaults, environment, flags, and the errors for bad values.
"""

from twisted.trial.unittest import SynchronousTestCase

from server.settings import SettingsError, Tier, build_parser, load, parse_retentions


class SettingsTests(SynchronousTestCase):
    def test_defaults(self):
        """Without flags or environment the documented defaults apply."""
        settings = load([], {})
        self.assertEqual((settings.bind, settings.tcp_port, settings.udp_port, settings.http_port),
                         ("127.0.0.1", 8007, 8125, 8080))
        self.assertEqual(settings.retentions,
                         (Tier(5, 21600), Tier(60, 8 * 86400), Tier(3600, None)))

    def test_environment_then_flags(self):
        """SIMPLESTATS_* overrides a default and a flag overrides both."""
        settings = load(["--udp-port", "9000"],
                        {"SIMPLESTATS_UDP_PORT": "8500", "SIMPLESTATS_TCP_PORT": "8100"})
        self.assertEqual((settings.tcp_port, settings.udp_port), (8100, 9000))

    def test_bad_values_name_the_setting(self):
        """A bad value stops start-up with a message naming flag or variable."""
        cases = [
            (["--tcp-port", "abc"], {}, "--tcp-port"),
            (["--udp-port", "70000"], {}, "--udp-port: must be a port number"),
            ([], {"SIMPLESTATS_BIND": "localhost:1"}, "SIMPLESTATS_BIND"),
            (["--retentions", "5s:6h,7s:1d"], {}, "must be a multiple of the previous step"),
            (["--retentions", "5s:forever,1m:1d"], {}, "only the last tier may be kept forever"),
            (["--snapshot-interval", "-1"], {}, "--snapshot-interval: must be a number greater than 0"),
            (["--api-token", "short"], {}, "--api-token: must be at least 16 characters"),
            (["--move-corrupt-aside", "maybe"], {}, "must be true or false"),
        ]
        for argv, environ, expected in cases:
            with self.assertRaises(SettingsError) as raised:
                load(argv, environ)
            self.assertIn(expected, str(raised.exception))

    def test_retentions_syntax(self):
        """Graphite's retentions syntax with forever for the last tier."""
        self.assertEqual(parse_retentions("10s:1h, 1m:2d, 1h:5y"),
                         (Tier(10, 3600), Tier(60, 172800), Tier(3600, 5 * 365 * 86400)))

    def test_help_lists_every_setting(self):
        """--help names every flag with its environment variable."""
        text = build_parser().format_help()
        for flag in ("--tcp-port", "--udp-port", "--http-port", "--bind", "--data-dir",
                     "--retentions", "--snapshot-interval", "--max-line-length", "SIMPLESTATS_DATA_DIR"):
            self.assertIn(flag, text)

    def test_settings_are_immutable(self):
        """The settings object cannot be changed after it is built."""
        settings = load([], {})
        with self.assertRaises(Exception):
            settings.tcp_port = 1

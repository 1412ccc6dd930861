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
            (["--udp-port", "70000"], {}, "--udp-port: must be a whole number from 0 to 65535"),
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

    def test_number_settings_say_what_they_expect(self):
        """A number setting given a word says in plain words what it takes, and shows the value once."""
        cases = [
            ("--tcp-port", "abc", "--tcp-port: must be a whole number from 0 to 65535, got 'abc'"),
            ("--tcp-port", "80.5", "--tcp-port: must be a whole number from 0 to 65535, got '80.5'"),
            ("--max-series", "lots", "--max-series: must be a whole number greater than 0,"
                                     " got 'lots'"),
            ("--max-series", "1e6", "--max-series: must be a whole number greater than 0,"
                                    " got '1e6'"),
            ("--set-exact-limit", "x", "--set-exact-limit: must be a whole number of at least"
                                       " 500, got 'x'"),
            ("--snapshot-journal-bytes", "1MB", "--snapshot-journal-bytes: must be a whole number"
                                                " of 0 or more, got '1MB'"),
            ("--rollup-interval", "soon", "--rollup-interval: must be a number greater than 0,"
                                          " got 'soon'"),
            ("--late-grace", "-", "--late-grace: must be a number of 0 or more, got '-'"),
            ("--late-grace", "nan", "--late-grace: must be a number of 0 or more, got 'nan'"),
            ("--sketch-accuracy", "1%", "--sketch-accuracy: must be a fraction between 0 and 0.5,"
                                        " e.g. 0.01, got '1%'"),
            ("--bind", "localhost:1", "--bind: must be an IP address such as 127.0.0.1, 0.0.0.0"
                                      " or ::1, got 'localhost:1'"),
        ]
        for flag, value, expected in cases:
            with self.assertRaises(SettingsError) as raised:
                load([flag, value], {})
            self.assertEqual(str(raised.exception), expected)

    def test_help_percent_signs(self):
        """The help texts hold single percent signs; argparse's --help prints them once."""
        settings = {f.name: f for f in __import__("dataclasses").fields(load([], {}))}
        text = settings["set_exact_limit"].metadata["help"]
        self.assertIn("1.6 % standard error", text)
        self.assertNotIn("%%", text)
        self.assertIn("1.6 % standard error", " ".join(build_parser().format_help().split()))

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

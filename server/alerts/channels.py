"""
Where notifications go: a webhook (a JSON POST with treq), e-mail over SMTP
(C{twisted.mail}: STARTTLS or TLS, login, several recipients) and every
other service through Apprise, which blocks, so it runs in a small thread
pool of its own and never on the reactor's thread.

L{Channels.deliver} returns a Deferred that fails when the notification did
not get through; the engine (L{server.alerts.engine}) retries with back-off,
counts, and shows the failure on the rule.
"""

import datetime
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from io import BytesIO

import treq
from twisted.internet import defer
from twisted.internet.ssl import Certificate, optionsForClientTLS
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.mail.smtp import ESMTPSenderFactory
from twisted.python.threadpool import ThreadPool
from twisted.web.client import Agent, HTTPConnectionPool
from treq.client import HTTPClient

# What a webhook body holds, at least (the contract).
WEBHOOK_MEMBERS = ("rule", "series", "state", "value", "threshold", "since", "url")


class DeliveryError(Exception):
    """
    A channel did not take the notification; the message says why.
    """


def _when(seconds):
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).strftime(
        "%Y-%m-%d %H:%M:%S UTC")


def _duration(seconds):
    seconds = int(round(seconds))
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            parts.append("%d%s" % (seconds // size, unit))
            seconds %= size
    if seconds or not parts:
        parts.append("%ds" % seconds)
    return " ".join(parts)


def _figure(value):
    if value is None:
        return "none"
    if isinstance(value, list):
        return "%s .. %s" % tuple(_figure(v) for v in value)
    return "%g" % value


def subject(note):
    """
    A readable subject: C{[FIRING] hot: room.temp = 61 (above 50)}.
    """
    state = note["state"].upper()
    if note.get("repeat"):
        state += ", still"
    what = {"above": "above", "below": "below", "stopped": "silent for",
            "anomaly": "outside", "probe": "failures"}.get(note.get("condition"), "threshold")
    condition = ("%s s, limit %s" % (_figure(note["value"]), _figure(note["threshold"]))
                 if note.get("condition") == "stopped"
                 else "%s (%s %s)" % (_figure(note["value"]), what, _figure(note["threshold"])))
    return "[%s] %s: %s = %s" % (state, note["rule"], note["series"], condition)


def text_body(note):
    """
    The figures and the dashboard link, one per line.
    """
    lines = [
        "Rule:       %s" % (note["rule"],),
        "Series:     %s" % (note["series"],),
        "State:      %s%s" % (note["state"], " (reminder)" if note.get("repeat") else ""),
        "Condition:  %s %s" % (note.get("condition", ""), _figure(note["threshold"])),
        "Field:      %s" % (note.get("field", ""),),
        "Value:      %s" % (_figure(note["value"]),),
        "Since:      %s" % (_when(note["since"]),),
    ]
    if note.get("fired_at") is not None:
        lines.append("Fired at:   %s" % (_when(note["fired_at"]),))
    if note.get("fired_for") is not None:
        lines.append("Fired for:  %s" % (_duration(note["fired_for"]),))
    lines += ["", "Dashboard:  %s" % (note["url"],), "", "-- SimpleStats"]
    return "\n".join(lines) + "\n"


def email_message(channel, note):
    message = EmailMessage()
    message["Subject"] = subject(note)
    message["From"] = channel["from"]
    message["To"] = ", ".join(channel["to"])
    message["Date"] = formatdate(note["time"], usegmt=True)
    message["Message-ID"] = make_msgid("alert")
    message.set_content(text_body(note))
    return message.as_bytes()


class Channels:
    """
    Delivers notifications on C{reactor}.

    @param apprise_threads: threads of the pool Apprise runs in.
    """

    log = Logger()

    def __init__(self, reactor, apprise_threads=2, http_client=None, smtp_connect=None):
        self.reactor = reactor
        if http_client is None:
            pool = HTTPConnectionPool(reactor, persistent=False)
            http_client = HTTPClient(Agent(reactor, pool=pool, connectTimeout=10))
        self.http = http_client
        self.smtp_connect = smtp_connect
        self.pool = ThreadPool(1, apprise_threads, "alerts-apprise")
        self.pool_started = False

    def start(self):
        if not self.pool_started:
            self.pool.start()
            self.pool_started = True

    def stop(self):
        if self.pool_started:
            self.pool.stop()
            self.pool_started = False

    def deliver(self, channel, note):
        kind = channel["type"]
        if kind == "webhook":
            return self.webhook(channel, note)
        if kind == "email":
            return self.email(channel, note)
        if kind == "apprise":
            return self.apprise(channel, note)
        return defer.fail(DeliveryError("no channel of type %r" % (kind,)))

    # -- webhook -----------------------------------------------------------

    def webhook(self, channel, note):
        headers = {"Content-Type": ["application/json"], "User-Agent": ["SimpleStats alerts"]}
        for name, value in channel.get("headers", {}).items():
            headers[name] = [value]
        d = self.http.post(channel["url"], json=note, headers=headers,
                           timeout=channel.get("timeout", 10))

        def answered(response):
            # Read the body whatever it is: the connection is then free.
            body = treq.content(response)
            if 200 <= response.code < 300:
                return body.addCallback(lambda _: response.code)

            def refused(content):
                raise DeliveryError("%s answered HTTP %d: %s" % (
                    channel["url"], response.code, content[:200].decode("utf-8", "replace")))
            return body.addCallback(refused)

        return d.addCallback(answered)

    # -- e-mail ------------------------------------------------------------------

    def email(self, channel, note):
        message = email_message(channel, note)
        host = channel["host"]
        context = None
        if channel.get("starttls") or channel.get("tls"):
            trust = None
            if channel.get("ca_file"):
                with open(channel["ca_file"], "rb") as f:
                    trust = Certificate.loadPEM(f.read())
            context = optionsForClientTLS(host, trustRoot=trust)
        username = channel.get("username")
        password = channel.get("password")
        done = defer.Deferred()
        # The envelope takes bare addresses; the headers keep the names.
        sender = parseaddr(channel["from"])[1] or channel["from"]
        recipients = [parseaddr(a)[1] or a for a in channel["to"]]
        factory = ESMTPSenderFactory(
            username.encode() if username else None,
            password.encode() if password else None,
            sender, recipients, BytesIO(message), done, retries=0,
            timeout=channel.get("timeout", 30),
            contextFactory=None if channel.get("tls") else context,
            heloFallback=not username and not channel.get("starttls"),
            requireAuthentication=bool(username),
            requireTransportSecurity=bool(channel.get("starttls")),
            hostname=host)
        if channel.get("tls"):
            # Implicit TLS (port 465): the connection is encrypted from the start.
            self.reactor.connectSSL(host, channel["port"], factory, context,
                                    timeout=channel.get("timeout", 30))
        else:
            self.reactor.connectTCP(host, channel["port"], factory,
                                    timeout=channel.get("timeout", 30))

        def sent(result):
            accepted, addresses = result
            if not accepted:
                raise DeliveryError("%s:%d accepted no recipient: %r"
                                    % (host, channel["port"], addresses))
            return accepted
        return done.addCallback(sent)

    # -- Apprise (every other service), off the reactor's thread -----------------

    def apprise(self, channel, note):
        self.start()
        title = subject(note)
        body = text_body(note)
        urls = list(channel["urls"])
        return deferToThreadPool(self.reactor, self.pool, _apprise_notify, urls, title, body)


def _apprise_notify(urls, title, body):
    """
    Send through Apprise (in a pool thread: it blocks on the network).
    """
    import apprise

    notifier = apprise.Apprise()
    for url in urls:
        if not notifier.add(url):
            raise DeliveryError("Apprise does not understand the URL %s" % (url.split(":", 1)[0]
                                                                             + "://...",))
    if not notifier.notify(title=title, body=body):
        raise DeliveryError("Apprise could not deliver to %s" % (
            ", ".join(u.split(":", 1)[0] + "://..." for u in urls),))
    return True
